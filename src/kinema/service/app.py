"""The HTTP API of the job service (FastAPI), in the ``/v1/videos`` shape the official ``openai`` SDK speaks.

:func:`create_app` only wires: it builds the :class:`~kinema.service.state.ServiceState`, the middlewares (the body
limit, and the JSON fast path of :mod:`kinema.service.fastpath`), the error handlers, and includes the routers:

* :mod:`kinema.service.videos`: ``POST /v1/videos`` (JSON or multipart with ``input_reference``; the submit itself
  is :mod:`kinema.service.submit`), ``GET /v1/videos/{id}``, ``GET /v1/videos`` (cursor pages),
  ``DELETE /v1/videos/{id}``, ``POST /v1/videos/{id}/cancel``, ``GET /v1/videos/{id}/content`` (range requests),
  ``GET /v1/videos/{id}/events`` (SSE);
* :mod:`kinema.service.edits`: ``POST /v1/videos/{id}/remix``, ``POST /v1/videos/edits``,
  ``POST /v1/videos/extensions``; :mod:`kinema.service.characters`: ``POST /v1/videos/characters``,
  ``GET`` and ``DELETE /v1/videos/characters/{id}``;
* :mod:`kinema.service.storyboards`: ``POST /v1/storyboards``;
* :mod:`kinema.service.prompt_routes`: ``GET /v1/prompt-library``, ``POST /v1/prompts``;
* :mod:`kinema.service.models`: ``GET /v1/models``; :mod:`kinema.service.health`: ``GET /healthz``;
* :mod:`kinema.service.usage`: ``GET /v1/usage`` (the caller's totals and budget);
* :mod:`kinema.service.provider_callbacks`: ``POST /v1/provider-callbacks/{provider}/{job_id}`` (a provider's
  callback: a hint that makes the job poll now).

Errors are OpenAI-shaped, ``{"error": {"message", "type", "param", "code"}}`` (:mod:`kinema.service.errors`).

>>> from kinema.service.app import create_app
>>> from kinema.service.config import ServiceConfig
>>> app = create_app(ServiceConfig(data_dir="/tmp/kinema-doc-app", workers=0))
>>> sorted(app.openapi()["paths"]["/v1/videos"])
['get', 'post']
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Scope

from .._version import __version__
from . import (
    characters,
    edits,
    health,
    metrics,
    models,
    prompt_routes,
    provider_callbacks,
    storyboards,
    submit,
    usage,
    videos,
)
from .config import ServiceConfig, load_extra_backends
from .errors import ApiError, allowed_methods, install_error_handlers
from .fastpath import FastPaths
from .job_kinds import JobRunner, default_job_kinds
from .openapi import add_body_schemas
from .redact import install_access_log_redaction
from .safefetch import SafeFetcher
from .security import BodyLimitMiddleware, RateLimiter
from .state import ServiceState
from .stores import Store, open_store
from .webhooks import WebhookSender
from .worker import WorkerPool

# ApiError and ServiceState are re-exported: they lived here before the routes moved into their own modules
__all__ = ["create_app", "ApiError", "ServiceState", "WEB_DIR"]

#: the web page lives here; it is mounted at "/" when it has an index.html
WEB_DIR = Path(__file__).parent / "web"


def create_app(
    config: ServiceConfig | None = None,
    *,
    static_dir: str | Path | None = None,
    fetcher: SafeFetcher | None = None,
    store: Store | None = None,
    job_kinds: Mapping[str, JobRunner] | None = None,
) -> FastAPI:
    """The service app. ``config.workers`` in-process workers start with the app's lifespan (0: submit only) and
    run ``job_kinds`` (default: :func:`~kinema.service.job_kinds.default_job_kinds`, video and storyboard);
    ``static_dir`` (default: ``service/web`` when it has an index.html) is served at "/"."""
    config = config or ServiceConfig()
    config.ensure_dirs()
    load_extra_backends()
    store = store or open_store(config.store_location)
    fetcher = fetcher or SafeFetcher(config.allow_hosts, timeout=config.webhook_timeout)
    kinds = dict(job_kinds) if job_kinds is not None else default_job_kinds()
    state = ServiceState(
        config=config,
        store=store,
        pool=WorkerPool(store, config, threads=config.workers, kinds=kinds),
        sender=WebhookSender(store, config, fetcher),
        fetcher=fetcher,
        submit_limiter=RateLimiter(*config.submit_rate),
        read_limiter=RateLimiter(*config.read_rate),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool.start()
        state.sender.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.pool.stop, True, config.shutdown_grace)
            state.sender.stop()

    app = FastAPI(
        title="Kinema job service",
        version=__version__,
        description="Text (and image) to video jobs, in the /v1/videos shape of OpenAI-compatible video servers.",
        lifespan=lifespan,
        responses={},
    )
    app.state.kinema = state
    install_access_log_redaction()  # a key sent in a query string must not reach the access log
    # added first, so it runs inside the body limit: JSON POST /v1/videos and GET /v1/videos/{id} are answered
    # there, before routing (the routes in videos.py say so)
    app.add_middleware(FastPaths, state=state)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.max_body_bytes,
        max_json_bytes=config.max_json_bytes,
        body_timeout=config.body_timeout,
    )
    install_error_handlers(app)
    # edits and characters first: their literal paths (/v1/videos/edits...) must not reach a /v1/videos/{id} route
    for router in (
        edits.edit_routes(state),
        characters.character_routes(state),
        videos.video_routes(state),
        models.model_routes(state),
        health.health_routes(state),
        storyboards.storyboard_routes(state),
        prompt_routes.prompt_routes(state),
        provider_callbacks.provider_callback_routes(state),
        usage.usage_routes(state),
    ):
        app.include_router(router)
    # GET /metrics and the request counter (the outermost middleware: the fast path's answers count too)
    metrics.install_metrics(app, state)
    add_body_schemas(app, [*submit.BODY_MODELS, *storyboards.BODY_MODELS, *prompt_routes.BODY_MODELS])

    web = Path(static_dir) if static_dir is not None else (WEB_DIR if (WEB_DIR / "index.html").is_file() else None)
    if web is not None:
        from starlette.staticfiles import StaticFiles

        app.router.routes.append(_WebMount(app, StaticFiles(directory=web, html=True)))
    return app


class _WebMount(Mount):
    """The web page at "/", for the paths the API does not own. A mount at "/" matches every path, so without this
    an API path asked with another method (OPTIONS /v1/videos) got the static files' 405 with ``Allow: GET, HEAD``
    instead of the API's 405 listing the route's methods, and an unknown /v1 path their HTML 404."""

    def __init__(self, api: FastAPI, files: ASGIApp) -> None:
        super().__init__("/", app=files, name="web")
        self._api = api

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if path == "/v1" or path.startswith("/v1/") or allowed_methods(self._api, path):
            return Match.NONE, {}
        return super().matches(scope)
