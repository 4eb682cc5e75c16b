"""The HTTP API of the job service (FastAPI), in the ``/v1/videos`` shape the official ``openai`` SDK speaks.

Routes: ``POST /v1/videos`` (JSON or multipart with ``input_reference``), ``GET /v1/videos/{id}``,
``GET /v1/videos`` (cursor pages), ``DELETE /v1/videos/{id}``, ``POST /v1/videos/{id}/cancel``,
``GET /v1/videos/{id}/content?variant=video|thumbnail`` (range requests), ``GET /v1/videos/{id}/events`` (SSE),
``GET /v1/models`` (backends with their capabilities), ``GET /healthz``. Errors are OpenAI-shaped:
``{"error": {"message", "type", "param", "code"}}``.

>>> from kinema.service.app import create_app
>>> from kinema.service.config import ServiceConfig
>>> app = create_app(ServiceConfig(data_dir="/tmp/kinema-doc-app", workers=0))
>>> sorted(r.path for r in app.routes if r.path.startswith("/v1/videos"))[:2]
['/v1/videos', '/v1/videos']
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import BackendUnavailable, InvalidRequest, KinemaError
from .config import ServiceConfig, load_extra_backends
from .fastpath import FastPaths
from .safefetch import SafeFetcher, URLRefused
from .schemas import (
    CreateVideoBody,
    ErrorResponse,
    Health,
    ModelList,
    VideoDeleted,
    VideoList,
    VideoObject,
    video_object,
)
from .security import BodyLimitMiddleware, RateLimiter, bearer_token, check_image
from .store import Job, Store
from .webhooks import WebhookSender
from .worker import WorkerPool

__all__ = ["create_app", "ApiError", "ServiceState", "WEB_DIR"]

log = logging.getLogger("kinema.service")

#: the web page (issue 8) lives here; it is mounted at "/" when it has an index.html
WEB_DIR = Path(__file__).parent / "web"
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")


def _parse_size(size: str) -> tuple[int, int]:
    """OpenAI's ``size`` ("WIDTHxHEIGHT") as (width, height), or an error naming the field."""
    m = _SIZE.match(size)
    if not m:
        raise InvalidRequest("size", f"{size!r} is not of the form WIDTHxHEIGHT", value=size,
                             allowed="e.g. 64x64; see GET /v1/models")  # fmt: skip
    return int(m.group(1)), int(m.group(2))


_INT_FIELDS = ("seed", "num_frames", "steps")
_FLOAT_FIELDS = ("fps", "guidance")


class ApiError(Exception):
    """An error answer in the OpenAI shape."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
             415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}  # fmt: skip

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status) or ("invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind,
                          "param": self.param, "code": self.code}}  # fmt: skip

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    @classmethod
    def invalid(cls, exc: InvalidRequest, status: int = 400) -> ApiError:
        return cls(status, exc.message, code="invalid_request", param=exc.field)


class Admission:
    """Queue-depth and per-key counts for admission control, re-counted from the store at most every
    ``ttl`` seconds and advanced locally on each accepted job: a COUNT per submit grows with the queue."""

    def __init__(self, ttl: float = 0.5) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._queued: tuple[int, float] = (0, -1e9)
        self._active: dict[str, tuple[int, float]] = {}

    def queued(self, store: Store) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._queued[1] < self.ttl:
                return self._queued[0]
        value = store.queue_depth()
        with self._lock:
            self._queued = (value, now)
        return value

    def active(self, store: Store, owner: str) -> int:
        now = time.monotonic()
        with self._lock:
            hit = self._active.get(owner)
            if hit is not None and now - hit[1] < self.ttl:
                return hit[0]
        value = store.active_count(owner)
        with self._lock:
            if len(self._active) > 10_000:
                self._active.clear()
            self._active[owner] = (value, now)
        return value

    def accepted(self, owner: str) -> None:
        with self._lock:
            self._queued = (self._queued[0] + 1, self._queued[1])
            if owner in self._active:
                count, at = self._active[owner]
                self._active[owner] = (count + 1, at)


@dataclass
class ServiceState:
    config: ServiceConfig
    store: Store
    pool: WorkerPool
    sender: WebhookSender
    fetcher: SafeFetcher
    submit_limiter: RateLimiter
    read_limiter: RateLimiter
    admission: Admission = field(default_factory=Admission)
    models_cache: tuple[float, list[dict[str, Any]]] | None = None
    #: backends (by the name a create body gave) whose plan has run once: loaded, so planning them is CPU only
    warm_backends: set[str] = field(default_factory=set)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in ((400, "Bad request"), (401, "Missing or invalid API key"), (404, "Not found"),
                       (409, "Conflict"), (413, "Body too large"), (415, "Unsupported media type"),
                       (422, "Unprocessable (idempotency key reused with another body, or a refused image)"),
                       (429, "Rate limited or queue full"), (500, "Server error"))
}  # fmt: skip

#: the hot routes check the key inline (no dependency graph per request) and declare it here for the OpenAPI
_SECURED: dict[str, Any] = {"security": [{"HTTPBearer": []}]}

_CREATE_BODY_SCHEMA = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/CreateVideoBody"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1, "maxLength": 5000},
                    "model": {"type": "string", "maxLength": 200},
                    "seconds": {"type": "string", "maxLength": 16},
                    "size": {"type": "string", "maxLength": 16},
                    "input_reference": {"type": "string", "format": "binary"},
                    "image_url": {"type": "string"},
                    "backend": {"type": "string", "maxLength": 100},
                    "negative_prompt": {"type": "string", "maxLength": 5000},
                    "seed": {"type": "integer", "minimum": -1, "maximum": 2**32 - 1},
                    "num_frames": {"type": "integer", "minimum": 1, "maximum": 10000},
                    "fps": {"type": "number", "minimum": 1, "maximum": 240},
                    "steps": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "guidance": {"type": "number", "minimum": 0, "maximum": 100},
                    "webhook_url": {"type": "string", "maxLength": 2048},
                    "metadata": {"type": "string", "description": "a JSON object"},
                    "track_id": {"type": "string", "maxLength": 200},
                },
            }
        },
    },
}


def create_app(
    config: ServiceConfig | None = None,
    *,
    static_dir: str | Path | None = None,
    fetcher: SafeFetcher | None = None,
    store: Store | None = None,
) -> FastAPI:
    """The service app. ``config.workers`` in-process workers start with the app's lifespan (0: submit only);
    ``static_dir`` (default: ``service/web`` when it has an index.html) is served at "/"."""
    config = config or ServiceConfig()
    config.ensure_dirs()
    load_extra_backends()
    store = store or Store(config.db_path)
    fetcher = fetcher or SafeFetcher(config.allow_hosts, timeout=config.webhook_timeout)
    state = ServiceState(
        config=config, store=store, pool=WorkerPool(store, config, threads=config.workers),
        sender=WebhookSender(store, config, fetcher), fetcher=fetcher,
        submit_limiter=RateLimiter(*config.submit_rate), read_limiter=RateLimiter(*config.read_rate),
    )  # fmt: skip

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
    # added first, so it runs inside the body limit: the two hottest routes skip the framework's per-request work
    app.add_middleware(FastPaths, state=state)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes, max_json_bytes=config.max_json_bytes)
    _install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="an API key made with 'kinema keys create'")

    async def owner_of(request: Request, _cred: Any = Depends(bearer)) -> str:
        return _authenticate(state, request)

    # -- create ---------------------------------------------------------------------------------------------
    @app.post(
        "/v1/videos",
        response_model=VideoObject,
        responses=_ERRORS,
        openapi_extra={"requestBody": _CREATE_BODY_SCHEMA, **_SECURED},
        summary="Create a video job",
        tags=["videos"],
    )
    async def create_video(request: Request) -> Response:
        # JSON bodies are served by FastPaths with the same functions; multipart ones come here
        owner = _authenticate(state, request)
        _rate(state.submit_limiter, owner)
        fields, upload = await _read_create_body(request, config)
        return await create_response(state, owner, fields, upload, request.headers.get("idempotency-key"))

    # -- read -----------------------------------------------------------------------------------------------
    @app.get("/v1/videos", response_model=VideoList, responses=_ERRORS, summary="List video jobs", tags=["videos"],
             openapi_extra=_SECURED)  # fmt: skip
    async def list_videos(
        request: Request,
        after: str | None = Query(None, max_length=100, description="the id of the last job of the previous page"),
        limit: int = Query(20, ge=1, le=100),
        order: str = Query("desc", pattern="^(asc|desc)$"),
    ) -> Response:
        owner = _authenticate(state, request)
        _rate(state.read_limiter, owner)
        try:
            jobs, has_more = state.store.list_jobs(owner, after=after, limit=limit, order=order)
        except KeyError:
            raise ApiError(400, f"after: no video with id {after!r}", code="invalid_cursor", param="after") from None
        data = [video_object(j) for j in jobs]
        return _json({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None, "has_more": has_more})  # fmt: skip

    @app.get("/v1/videos/{video_id}", response_model=VideoObject, responses=_ERRORS, summary="Retrieve a video job",
             tags=["videos"], openapi_extra=_SECURED)  # fmt: skip
    async def retrieve_video(video_id: str, request: Request) -> Response:
        # the hottest route (clients poll it): FastPaths answers it with retrieve_response before routing
        return retrieve_response(state, video_id, request.query_params.keys(), request.headers.get("authorization"))

    @app.delete("/v1/videos/{video_id}", response_model=VideoDeleted, responses=_ERRORS, summary="Delete a video",
                tags=["videos"])  # fmt: skip
    def delete_video(video_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        _rate(state.read_limiter, owner)
        _job(state, video_id, owner)
        state.store.request_cancel(video_id, owner)
        state.pool.cancel_local(video_id)
        job = state.store.delete(video_id, owner)
        if job is None:
            raise _not_found(video_id)
        for p in _files_of(job):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    @app.post("/v1/videos/{video_id}/cancel", response_model=VideoObject, responses=_ERRORS,
              summary="Cancel a queued or running video job", tags=["videos"])  # fmt: skip
    def cancel_video(video_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        _rate(state.read_limiter, owner)
        job = _job(state, video_id, owner)
        if job.status in ("completed", "failed"):
            raise ApiError(409, f"the video is already {job.status}", code="not_cancellable", param="video_id")
        was = job.status
        job = state.store.request_cancel(video_id, owner) or job
        state.pool.cancel_local(video_id)
        if was == "queued" and job.status == "cancelled":  # a running job's worker sends its own event
            state.pool.emit(job.id, "video.cancelled")
        return video_object(job)

    @app.get("/v1/videos/{video_id}/content", responses={**_ERRORS, 200: {"content": {
        "video/mp4": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}}}, "description": "the file"},
        206: {"description": "a byte range of the file", "content": {
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}}}},
        416: {"description": "range not satisfiable"}},
        response_class=Response, summary="Download the video or its thumbnail", tags=["videos"])  # fmt: skip
    def video_content(
        video_id: str,
        owner: str = Depends(owner_of),
        variant: str = Query("video", pattern="^(video|thumbnail|spritesheet)$"),
    ) -> Response:
        _rate(state.read_limiter, owner)
        job = _job(state, video_id, owner)
        if variant == "spritesheet":
            raise ApiError(400, "variant: 'spritesheet' is not offered", code="invalid_variant", param="variant")
        if job.status != "completed":
            raise ApiError(409, f"the video is not ready (status {job.status})", code="not_ready",
                           param="video_id")  # fmt: skip
        path = job.output_path if variant == "video" else job.thumbnail_path
        if not path or not Path(path).is_file():
            raise ApiError(404, "the video's files have expired or were removed", code="expired", param="video_id")
        media = "video/mp4" if variant == "video" else "image/png"
        name = f"{video_id}.mp4" if variant == "video" else f"{video_id}.png"
        return FileResponse(path, media_type=media, filename=name)

    @app.get("/v1/videos/{video_id}/events", responses={**_ERRORS, 200: {"content": {"text/event-stream": {
        "schema": {"type": "string"}}}, "description": "Server-Sent Events: video.progress, then a final "
        "video.completed / video.failed / video.cancelled"}}, response_class=StreamingResponse,
        summary="Stream a job's progress (Server-Sent Events)", tags=["videos"])  # fmt: skip
    def video_events(video_id: str, owner: str = Depends(owner_of),
                     timeout: float = Query(3600.0, ge=0, le=86400)) -> StreamingResponse:  # fmt: skip
        _rate(state.read_limiter, owner)
        _job(state, video_id, owner)
        return StreamingResponse(_sse(state, video_id, owner, timeout), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip

    @app.get("/v1/models", response_model=ModelList, responses=_ERRORS, summary="Backends and what they accept",
             tags=["models"])  # fmt: skip
    def list_models(owner: str = Depends(owner_of)) -> dict[str, Any]:
        _rate(state.read_limiter, owner)
        return {"object": "list", "data": _models(state)}

    @app.get("/healthz", response_model=Health, summary="Liveness and queue depth", tags=["service"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "queued": state.store.queue_depth(),
                "workers": config.workers}  # fmt: skip

    # the storyboard job kind and the prompt builder, for the web page (and any client)
    from . import prompt_routes, storyboards

    storyboards.install_routes(app, state)
    prompt_routes.install_routes(app, state)

    web = Path(static_dir) if static_dir is not None else (WEB_DIR if (WEB_DIR / "index.html").is_file() else None)
    if web is not None:
        from starlette.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=web, html=True), name="web")
    return app


# -- helpers ----------------------------------------------------------------------------------------------------
def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        param = ".".join(loc) or None
        msg = f"{param}: {first.get('msg', 'is invalid')}" if param else str(first.get("msg", "invalid request"))
        return ApiError(400, msg, code="invalid_request", param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ApiError(exc.status_code, str(exc.detail), code=f"http_{exc.status_code}",
                        headers=dict(exc.headers or {})).response()  # fmt: skip

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return ApiError(500, "internal server error", code="server_error").response()


def _authenticate(state: ServiceState, request: Request) -> str:
    return authenticate(state, request.query_params.keys(), request.headers.get("authorization"))


_URL_KEY_NAMES = ("api_key", "key", "token", "access_token")


def authenticate(state: ServiceState, query_names: Iterable[str], authorization: str | None) -> str:
    """The caller's key id ("local" without auth), from the query's parameter names and the Authorization header."""
    for name in query_names:
        if name in _URL_KEY_NAMES:
            raise ApiError(401, "API keys in the URL are refused (URLs are logged); send 'Authorization: Bearer "
                                "<key>'", code="key_in_url", param=name)  # fmt: skip
    token = bearer_token(authorization)
    if not state.config.auth:
        return "local"
    if token is None:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>' (make one with 'kinema keys "
                            "create')", code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    key_id = state.store.authenticate(token)
    if key_id is None:
        raise ApiError(
            401, "invalid or revoked API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )
    return key_id


def retrieve_response(state: ServiceState, video_id: str, query_names: Iterable[str], authorization: str | None
                      ) -> Response:  # fmt: skip
    """``GET /v1/videos/{id}``: one indexed read, serialized once (no response-model validation)."""
    owner = authenticate(state, query_names, authorization)
    _rate(state.read_limiter, owner)
    return _json(video_object(_job(state, video_id, owner)))


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json")


def _rate(limiter: RateLimiter, owner: str) -> None:
    wait = limiter.check(owner)
    if wait is not None:
        raise ApiError(429, f"rate limit exceeded; retry in {wait} s", code="rate_limited",
                       headers={"Retry-After": str(wait)})  # fmt: skip


def _not_found(video_id: str) -> ApiError:
    return ApiError(404, f"no video with id {video_id!r}", code="not_found", param="video_id")


def _job(state: ServiceState, video_id: str, owner: str) -> Job:
    job = state.store.get(video_id, owner)
    if job is None:  # another key's job answers exactly like a missing one
        raise _not_found(video_id)
    return job


def _files_of(job: Job) -> list[Path]:
    paths = [job.output_path, job.thumbnail_path, (job.output_path + ".json") if job.output_path else None]
    image = job.request.get("image")
    if isinstance(image, str) and not image.startswith(("http://", "https://")):
        paths.append(image)
    return [Path(p) for p in paths if p]


async def _read_create_body(request: Request, config: ServiceConfig) -> tuple[dict[str, Any], bytes | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        return data, None
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=40)
        except Exception as exc:
            if type(exc).__name__ == "_BodyTooLarge":
                raise
            raise ApiError(400, f"the form could not be read ({type(exc).__name__})", code="invalid_form") from None
        fields: dict[str, Any] = {}
        upload: bytes | None = None
        for name, value in form.multi_items():
            if hasattr(value, "read"):
                if name != "input_reference":
                    raise ApiError(400, f"{name}: files are accepted only as input_reference", param=name)
                upload = await value.read(config.max_image_bytes + 1)
                if len(upload) > config.max_image_bytes:
                    raise ApiError(413, f"input_reference: the image is larger than {config.max_image_bytes} bytes",
                                   code="request_too_large", param="input_reference")  # fmt: skip
            elif name in fields:
                raise ApiError(400, f"{name}: given more than once", param=name)
            else:
                fields[name] = value
        for name in _INT_FIELDS + _FLOAT_FIELDS:
            if name in fields:
                text = str(fields[name]).strip()
                try:
                    fields[name] = int(text) if name in _INT_FIELDS else float(text)
                except ValueError:
                    kind = "a whole number" if name in _INT_FIELDS else "a number"
                    raise ApiError(400, f"{name}: must be {kind}, got {text!r}", param=name) from None
        if "metadata" in fields:
            try:
                fields["metadata"] = json.loads(fields["metadata"])
            except json.JSONDecodeError:
                raise ApiError(400, "metadata: must be a JSON object", param="metadata") from None
        return fields, upload
    raise ApiError(415, "send application/json or multipart/form-data", code="unsupported_media_type")


def _validate_body(fields: dict[str, Any]) -> CreateVideoBody:
    try:
        return CreateVideoBody(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        msg = str(first.get("msg", "is invalid"))
        if first.get("type") == "extra_forbidden":
            msg = f"is not a known field (allowed: {', '.join(CreateVideoBody.model_fields)})"
        raise ApiError(400, f"{param}: {msg}", code="invalid_request", param=param) from None
    except TypeError:
        raise ApiError(400, "the body's field names must be text", code="invalid_request") from None


def _resolve_model(model: str | None, backend: str | None) -> tuple[str | None, str | None]:
    from ..backends import backend_names

    names = backend_names()
    if backend is not None:
        if backend not in names:
            raise InvalidRequest("backend", f"unknown backend {backend!r}", value=backend, allowed=", ".join(names))
        if model in (None, backend):
            return backend, None
        if model.startswith(backend + "/"):
            return backend, model[len(backend) + 1 :]
        return backend, model
    if model is None:
        return None, None
    if model in names:
        return model, None
    head, sep, tail = model.partition("/")
    if sep and head in names and tail:
        return head, tail
    # a bare model id ("sora-2", "wan2.1-t2v-1.3b"): the backend that lists it
    from ..backends import get_backend

    owners = []
    for name in names:
        with contextlib.suppress(Exception):  # a backend that fails to load cannot own the model
            if model in get_backend(name).models():
                owners.append(name)
    if len(owners) == 1:
        return owners[0], model
    raise InvalidRequest(
        "model",
        f"unknown model {model!r}",
        value=model,
        allowed="a backend name (" + ", ".join(names) + ") or 'backend/model'; see GET /v1/models",
    )


def _plan(body: CreateVideoBody, has_image: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine request (JSON-safe; the image is filled in later) and the summary shown in the video object."""
    import numpy as np

    from ..backends import get_backend
    from ..request import VideoRequest

    backend_name, model = _resolve_model(body.model, body.backend)
    req: dict[str, Any] = {"prompt": body.prompt, "format": "mp4"}
    for src, dst in (
        ("negative_prompt", "negative_prompt"),
        ("seed", "seed"),
        ("num_frames", "num_frames"),
        ("fps", "fps"),
        ("steps", "num_inference_steps"),
        ("guidance", "guidance_scale"),
    ):
        value = getattr(body, src)
        if value is not None:
            req[dst] = value
    if backend_name:
        req["backend"] = backend_name
    if model:
        req["model"] = model
    if body.seconds is not None and body.num_frames is None:
        try:
            req["duration"] = float(body.seconds)
            if len(str(body.seconds)) > 16:
                raise ValueError(body.seconds)
        except ValueError:
            raise InvalidRequest(
                "seconds", f"{body.seconds!r} is not a number of seconds", value=body.seconds
            ) from None
    if body.size is not None:
        req["width"], req["height"] = _parse_size(body.size)
    # validate against the backend now, so a bad job is refused at submit time, not minutes later
    probe = dict(req)
    if has_image:
        probe["image"] = np.zeros((8, 8, 3), dtype=np.uint8)
    request = VideoRequest(**probe)
    backend = get_backend(request.backend)
    params = backend.resolve(request, request.seed or 0)
    avail = backend.availability()
    if not avail.usable:  # refuse now rather than fail minutes later (e.g. a provider's API key is not set)
        raise BackendUnavailable(backend.name, avail.reason or "unknown reason")
    summary = {
        "prompt": request.prompt, "backend": backend.name, "model": body.model or backend.name,
        "seconds": f"{params.duration:g}", "size": f"{params.width}x{params.height}",
        "seed": request.seed, "track_id": body.track_id, "mode": params.mode,
    }  # fmt: skip
    return req, summary


def _fingerprint(fields: dict[str, Any], upload: bytes | None) -> str:
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    if upload is not None:
        h.update(b"\0file\0" + hashlib.sha256(upload).digest())
    return h.hexdigest()


async def create_response(
    state: ServiceState, owner: str, fields: dict[str, Any], upload: bytes | None, idem: str | None
) -> Response:
    """``POST /v1/videos`` once the body is read. A plain job (no image, webhook or idempotency key, a backend
    already planned once) is checked on the event loop, its row committed by the store's group-commit writer, and
    answered after that commit, with no thread hop; anything that may block (fetching an image, resolving a
    webhook host, loading a backend, several idempotency transactions) runs in the thread pool."""
    body = _validate_body(fields)
    if upload is None and idem is None and not _may_block(state, body):
        req, summary = _prepare(state, body, False)
        _admit(state, owner)
        job_id, metadata = _new_job_id(), dict(body.metadata or {})
        config = state.config
        job = await asyncio.wrap_future(state.store.submit_job_future(
            owner=owner, request=req, summary=summary, max_attempts=config.max_attempts,
            webhook_url=body.webhook_url, metadata=metadata, job_id=job_id))  # fmt: skip
        state.admission.accepted(owner)
        state.pool.notify()
        return _json(video_object(job))
    return await run_in_threadpool(_create, state, owner, fields, upload, idem)


def _may_block(state: ServiceState, body: CreateVideoBody) -> bool:
    if body.input_reference is not None or body.image_url is not None or body.webhook_url:
        return True
    return _backend_key(body) not in state.warm_backends


def _backend_key(body: CreateVideoBody) -> str:
    return body.backend or (body.model or "").partition("/")[0]


def _new_job_id() -> str:
    import secrets

    return "video_" + secrets.token_hex(12)


def _prepare(state: ServiceState, body: CreateVideoBody, has_image: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan the job and check its webhook URL, turning what is wrong into a 400 that names the field."""
    try:
        req, summary = _plan(body, has_image)
        if body.webhook_url:
            state.fetcher.check_url(body.webhook_url, field="webhook_url")
    except InvalidRequest as exc:
        if exc.field == "duration" and body.seconds is not None:  # the client said "seconds"; name its field
            message = exc.message.split(": ", 1)[-1]
            raise ApiError(400, f"seconds: {message}", code="invalid_request", param="seconds") from None
        raise ApiError.invalid(exc) from None
    except URLRefused as exc:
        raise ApiError(400, str(exc), code="url_refused", param=exc.field) from None
    except KinemaError as exc:
        raise ApiError(400, exc.message, code=exc.code, param="backend") from None
    from ..backends import backend_names

    key = _backend_key(body)
    if key not in state.warm_backends and (key == "" or key in backend_names()):
        state.warm_backends.add(key)  # a bare model id is resolved by asking every backend: never inline
    return req, summary


def _create(
    state: ServiceState, owner: str, fields: dict[str, Any], upload: bytes | None, idem: str | None
) -> Response:
    config, store = state.config, state.store
    body = _validate_body(fields)
    image_url = body.image_url
    if isinstance(body.input_reference, str):
        image_url = image_url or body.input_reference
    elif body.input_reference is not None:
        if body.input_reference.file_id:
            raise ApiError(400, "input_reference.file_id: file ids are not supported; upload the image",
                           param="input_reference.file_id")  # fmt: skip
        image_url = image_url or body.input_reference.image_url
    has_image = upload is not None or image_url is not None
    req, summary = _prepare(state, body, has_image)

    if idem is not None:
        if not 1 <= len(idem) <= 255:
            raise ApiError(400, "Idempotency-Key: must be 1 to 255 characters", param="Idempotency-Key")
        found = store.idempotency_begin(owner, idem, _fingerprint(fields, upload), config.idempotency_ttl_hours * 3600)
        if found.state == "mismatch":
            raise ApiError(422, "Idempotency-Key was already used with a different request body",
                           code="idempotency_key_reused", param="Idempotency-Key")  # fmt: skip
        if found.state == "in_flight":
            raise ApiError(
                409,
                "a request with this Idempotency-Key is still being processed; retry later",
                code="idempotency_key_in_use",
                param="Idempotency-Key",
                headers={"Retry-After": "1"},
            )
        if found.state == "replay":
            assert found.status is not None and found.body is not None
            return Response(found.body, status_code=found.status, media_type="application/json",
                            headers={"Idempotent-Replayed": "true"})  # fmt: skip
    try:
        response = _execute(state, owner, body, req, summary, upload, image_url, idem)
    except ApiError as exc:
        if idem is not None:
            if exc.status == 429:  # refused before it began: the client may retry with the same key
                store.idempotency_release(owner, idem)
            else:
                store.idempotency_finish(owner, idem, exc.status, bytes(exc.response().body))
        raise
    except Exception:
        if idem is not None:
            error = ApiError(500, "internal server error", code="server_error")
            store.idempotency_finish(owner, idem, 500, bytes(error.response().body))
        raise
    state.pool.notify()
    return response


def _execute(state: ServiceState, owner: str, body: CreateVideoBody, req: dict[str, Any], summary: dict[str, Any],
             upload: bytes | None, image_url: str | None, idem: str | None) -> Response:  # fmt: skip
    config, store = state.config, state.store
    _admit(state, owner)
    job_id = _new_job_id()
    image_path: Path | None = None
    if upload is not None or image_url is not None:
        data = upload if upload is not None else _fetch_image(state, str(image_url))
        try:
            png = check_image(data, max_pixels=config.max_image_pixels, max_bytes=config.max_image_bytes)
        except InvalidRequest as exc:
            raise ApiError(422, exc.message, code="invalid_image", param="input_reference") from None
        image_path = config.inputs_dir / f"{job_id}.png"
        tmp = image_path.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(image_path)
        req["image"] = str(image_path)
    metadata = dict(body.metadata or {})

    def respond(job: Job) -> tuple[int, bytes]:
        return 200, json.dumps(video_object(job)).encode()

    job = store.submit_job(owner=owner, request=req, summary=summary, max_attempts=config.max_attempts,
                           webhook_url=body.webhook_url, metadata=metadata, job_id=job_id,
                           idempotency=(idem, respond) if idem else None)  # fmt: skip
    state.admission.accepted(owner)
    status, payload = respond(job)
    return Response(payload, status_code=status, media_type="application/json")


def _admit(state: ServiceState, owner: str) -> None:
    """429 when the queue is full or the key has too many active jobs."""
    config, store = state.config, state.store
    if state.admission.queued(store) >= config.max_queued:
        raise ApiError(429, f"the queue is full ({config.max_queued} jobs waiting); retry later", code="queue_full",
                       headers={"Retry-After": "5"})  # fmt: skip
    if state.admission.active(store, owner) >= config.max_active_per_key:
        raise ApiError(429, f"this key already has {config.max_active_per_key} jobs queued or running",
                       code="too_many_active_jobs", headers={"Retry-After": "5"})  # fmt: skip


def _fetch_image(state: ServiceState, url: str) -> bytes:
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or ";base64" not in head:
            raise ApiError(400, "input_reference: a data URL must be base64 encoded", param="input_reference")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "input_reference: the data URL is not valid base64", param="input_reference") from None
    try:
        return state.fetcher.get_bytes(url, max_bytes=state.config.max_image_bytes, field="input_reference")
    except URLRefused as exc:
        raise ApiError(400, str(exc), code="url_refused", param="input_reference") from None


async def _sse(state: ServiceState, video_id: str, owner: str, timeout: float) -> AsyncIterator[bytes]:
    last: tuple[Any, ...] | None = None
    deadline = time.monotonic() + timeout
    last_sent = time.monotonic()
    while True:
        job = await run_in_threadpool(state.store.get, video_id, owner)
        if job is None:
            yield b"event: error\ndata: " + json.dumps(_not_found(video_id).body()).encode() + b"\n\n"
            return
        key = (job.status, job.progress, job.stage, json.dumps(job.progress_detail, sort_keys=True))
        if key != last:
            last, last_sent = key, time.monotonic()
            kind = f"video.{job.status}" if job.terminal else "video.progress"
            yield f"event: {kind}\nid: {job.progress}\ndata: {json.dumps(video_object(job))}\n\n".encode()
            if job.terminal:
                return
        elif time.monotonic() - last_sent > 15:
            last_sent = time.monotonic()
            yield b": keep-alive\n\n"
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.25)


def _models(state: ServiceState) -> list[dict[str, Any]]:
    cached = state.models_cache
    if cached is not None and time.monotonic() - cached[0] < 30:
        return cached[1]
    from ..backends import DEFAULT_BACKEND, backend_names, get_backend

    out: list[dict[str, Any]] = []
    for name in backend_names():
        try:
            backend = get_backend(name)
            avail = backend.availability()
            default_model = backend.default_model()
            entry = {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "kinema",
                "backend": name,
                "model": default_model,
                "description": backend.description,
                "usable": avail.usable,
                "reason": avail.reason,
                "default": name == DEFAULT_BACKEND,
                "capabilities": backend.capabilities(default_model).to_dict(),
                "job_kinds": ["video"],
            }
            out.append(entry)
            for model in backend.models():
                if model in (name, default_model) and model == name:
                    continue
                out.append({**entry, "id": f"{name}/{model}", "model": model, "default": False,
                            "capabilities": backend.capabilities(model).to_dict()})  # fmt: skip
        except Exception as exc:  # a broken third-party backend must not break the listing
            out.append({"id": name, "object": "model", "created": 0, "owned_by": "kinema", "backend": name,
                        "usable": False, "reason": f"failed to load: {type(exc).__name__}: {exc}",
                        "default": name == DEFAULT_BACKEND, "capabilities": None})  # fmt: skip
    state.models_cache = (time.monotonic(), out)
    return out
