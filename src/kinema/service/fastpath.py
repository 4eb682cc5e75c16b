"""The two hottest routes answered straight from ASGI, before FastAPI's routing and per-request machinery.

Clients poll ``GET /v1/videos/{id}`` and batch-submit ``POST /v1/videos`` (JSON). For these two, FastAPI's request
objects, dependency solving, exception middlewares and route matching cost more CPU than the work itself, so this
pure ASGI middleware answers them with the very functions the FastAPI routes call
(:func:`kinema.service.videos.retrieve_response`, :func:`kinema.service.submit.create_response`): the same checks in
the same order, the same bodies, statuses and headers. The routes stay declared in :mod:`kinema.service.videos`, so
``/openapi.json`` is unchanged; everything else (multipart submits, other paths and methods, an app mounted under a
``root_path``) passes through untouched. ``create_app`` adds it inside ``BodyLimitMiddleware``, so body limits still
apply.

>>> FastPaths.video_id("/v1/videos/video_abc"), FastPaths.video_id("/v1/videos/video_abc/content")
('video_abc', None)
>>> FastPaths.video_id("/v1/videos/edits") is None
True
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .auth import authenticate, check_rate
from .edits import RESERVED_IDS
from .errors import ApiError, error_response
from .jsonio import is_json, parse_json_object
from .submit import create_response
from .videos import retrieve_response

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = ["FastPaths"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PREFIX = "/v1/videos/"


class FastPaths:
    """ASGI middleware: ``GET /v1/videos/{id}`` and JSON ``POST /v1/videos`` without the framework's overhead."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: ServiceState) -> None:
        self.app = app
        self.state = state

    @staticmethod
    def video_id(path: str) -> str | None:
        """The id of a ``/v1/videos/{id}`` path (one non-empty segment, like Starlette's ``{video_id}``); None for
        the routes that share the shape (``/v1/videos/edits``, ``/extensions``, ``/characters``)."""
        if path.startswith(_PREFIX):
            rest = path[len(_PREFIX) :]
            if rest and "/" not in rest and rest not in RESERVED_IDS:
                return rest
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            if method == "GET":
                video_id = self.video_id(path)
                if video_id is not None:
                    await self._retrieve(scope, receive, send, video_id)
                    return
            elif method == "POST" and path == "/v1/videos":
                headers = _headers(scope)
                if is_json(headers.get("content-type", "")):
                    await self._create(scope, receive, send, headers)
                    return
        await self.app(scope, receive, send)

    async def _retrieve(self, scope: Scope, receive: Receive, send: Send, video_id: str) -> None:
        authorization = None
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            response = retrieve_response(self.state, video_id, _query_names(scope), authorization)
        except Exception as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        state = self.state
        try:
            owner = authenticate(state, _query_names(scope), headers.get("authorization"))
            check_rate(state.submit_limiter, owner)
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        # read outside the error handling below: BodyLimitMiddleware's "too large" must reach it unchanged
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            data = parse_json_object(b"".join(chunks))
            response = await create_response(state, owner, data, None, headers.get("idempotency-key"))
        except Exception as exc:
            response = error_response(exc)
        await response(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; the first of repeated ones, as Starlette's ``headers.get``."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key not in out:
            out[key] = value.decode("latin-1")
    return out


def _query_names(scope: Scope) -> list[str]:
    query = scope.get("query_string", b"")
    if not query:
        return []
    return [name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
