"""The two hottest routes answered straight from ASGI, before FastAPI's routing and per-request machinery.

Clients poll ``GET /v1/videos/{id}`` and batch-submit ``POST /v1/videos`` (JSON). For these two, FastAPI's request
objects, dependency solving, exception middlewares and route matching cost more CPU than the work itself, so this
pure ASGI middleware answers them with the very functions the FastAPI routes call (``retrieve_response``,
``create_response``): the same checks in the same order, the same bodies, statuses and headers. The routes stay
declared in FastAPI, so ``/openapi.json`` is unchanged; everything else (multipart submits, other paths and
methods) passes through untouched. It runs inside ``BodyLimitMiddleware``, so body limits still apply.

>>> FastPaths.video_id("/v1/videos/video_abc"), FastPaths.video_id("/v1/videos/video_abc/content")
('video_abc', None)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from .app import ServiceState

__all__ = ["FastPaths"]

log = logging.getLogger("kinema.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PREFIX = "/v1/videos/"


class FastPaths:
    """ASGI middleware: ``GET /v1/videos/{id}`` and JSON ``POST /v1/videos`` without the framework's overhead."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: ServiceState) -> None:
        from . import app as api  # imported here: app.py imports this module

        self.app = app
        self.state = state
        self.api = api

    @staticmethod
    def video_id(path: str) -> str | None:
        """The id of a ``/v1/videos/{id}`` path (one non-empty segment, like Starlette's ``{video_id}``)."""
        if path.startswith(_PREFIX):
            rest = path[len(_PREFIX) :]
            if rest and "/" not in rest:
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
                ctype = headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype == "application/json" or ctype.endswith("+json"):
                    await self._create(scope, receive, send, headers)
                    return
        await self.app(scope, receive, send)

    def _error_response(self, exc: Exception) -> Any:
        """The API's answer to an error: its own for an ``ApiError``, else a logged 500."""
        if isinstance(exc, self.api.ApiError):
            return exc.response()
        log.exception("unexpected error")
        return self.api.ApiError(500, "internal server error", code="server_error").response()

    async def _retrieve(self, scope: Scope, receive: Receive, send: Send, video_id: str) -> None:
        authorization = None
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            response = self.api.retrieve_response(self.state, video_id, _query_names(scope), authorization)
        except Exception as exc:
            response = self._error_response(exc)
        await response(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        api, state = self.api, self.state
        ApiError = api.ApiError  # noqa: N806
        try:
            owner = api.authenticate(state, _query_names(scope), headers.get("authorization"))
            api._rate(state.submit_limiter, owner)
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
            try:
                data = json.loads(b"".join(chunks))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
            if not isinstance(data, dict):
                raise ApiError(400, "the body must be a JSON object", code="invalid_json")
            response = await api.create_response(state, owner, data, None, headers.get("idempotency-key"))
        except Exception as exc:
            response = self._error_response(exc)
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
