"""The API's error answers: :class:`ApiError`, built from Kinema's own errors; the one translation of pydantic's
validation errors; the error responses every route declares; the app's exception handlers.

Every error answer has OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``. An error Kinema raises on
purpose is a :class:`~kinema.errors.KinemaError`, and :meth:`ApiError.from_error` answers it with its ``code``, its
``message`` and (an :class:`~kinema.errors.InvalidRequest`'s) ``field`` as ``param``, so the library, the CLI and the
API describe one mistake in the same words.

>>> from kinema.errors import InvalidRequest
>>> error = ApiError.from_error(InvalidRequest("size", "'big' is not of the form WIDTHxHEIGHT"))
>>> error.status, error.body()["error"]["param"], error.body()["error"]["message"]
(400, 'size', "size: 'big' is not of the form WIDTHxHEIGHT")
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import KinemaError
from .schemas import ErrorResponse

__all__ = [
    "ApiError",
    "ERROR_RESPONSES",
    "CREATE_RESPONSES",
    "field_path",
    "validation_error",
    "validate_body",
    "error_response",
    "install_error_handlers",
    "allowed_methods",
    "documented_paths",
    "check_query",
]

log = logging.getLogger("kinema.service")

Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """An error answer in the OpenAI shape."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "invalid_request_error",
        409: "invalid_request_error",
        413: "invalid_request_error",
        415: "invalid_request_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
    }

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    @classmethod
    def from_error(
        cls, exc: KinemaError, status: int = 400, *, code: str | None = None, param: str | None = None
    ) -> ApiError:
        """``exc`` as an answer: its code (or ``code``), its message, and the field it names (or ``param``)."""
        d = exc.to_dict()
        return cls(status, d["message"], code=code or d["code"], param=param or d["field"])

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status) or ("invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


#: the error answers every route may give, for /openapi.json
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in (
        (400, "Bad request"),
        (401, "Missing or invalid API key"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
        (415, "Unsupported media type"),
        (422, "Unprocessable (idempotency key reused with another body, or a refused image)"),
        (429, "Rate limited or queue full"),
        (500, "Server error"),
    )
}
#: a create route's error answers: the above, and 402 when the key's budget is spent (kinema.service.usage)
CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    402: {"model": ErrorResponse, "description": "The API key's budget is spent (paid backends only)"},
}


# -- pydantic's validation errors -------------------------------------------------------------------------------
def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``list[Scene]`` -> Scene, ``Ref | str | None`` -> Ref), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _locate(model: type[BaseModel] | None, loc: Sequence[Any], kind: str) -> tuple[str, type[BaseModel] | None]:
    """pydantic's location as the field the client sent (``scenes[1].prompt``), and the model that owns it.

    pydantic puts the name of each union member it tried into the location (``input_reference.ImageReference``);
    those are not fields, and are left out. A name that is not a field is kept only as the last part of an
    ``extra_forbidden`` error, where it is the unknown field itself.
    """
    path, current, owner, scalar = "", model, model, False
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if scalar:
            continue  # below a plain field only union members' names follow (``seconds.str``): not fields
        if current is not None:
            info = current.model_fields.get(str(part))
            if info is None and not (i == len(loc) - 1 and kind == "extra_forbidden"):
                continue
            owner = current
            current = _model_in(info.annotation) if info is not None else None
            scalar = info is not None and current is None and not _has_container(info.annotation)
        path += ("." if path else "") + str(part)
    return path, owner


def _has_container(annotation: Any) -> bool:
    """True when a field's type holds a dict or list somewhere (its errors' locations go inside it)."""
    origin = typing.get_origin(annotation)
    if origin in (dict, list, tuple, set) or annotation in (dict, list, tuple, set):
        return True
    return any(_has_container(arg) for arg in typing.get_args(annotation))


def field_path(loc: Iterable[Any]) -> str:
    """A pydantic location as a field path: ``("scenes", 1, "prompt")`` -> ``"scenes[1].prompt"``."""
    return _locate(None, tuple(loc), "")[0]


def validation_error(
    errors: Sequence[Mapping[str, Any]], model: type[BaseModel] | None = None, skip: tuple[str, ...] = ()
) -> ApiError:
    """The first of pydantic's errors as a 400 naming the field, what was wrong and, for an unknown field, the
    fields allowed there. ``skip``: location parts that are not fields (FastAPI's ``query``, ``path``...)."""
    first = errors[0] if errors else {}
    kind = str(first.get("type", ""))
    loc = tuple(p for p in first.get("loc", ()) if p not in skip)
    param, owner = _locate(model, loc, kind)
    msg = str(first.get("msg", "is invalid"))
    if kind == "extra_forbidden" and owner is not None:
        msg = f"is not a known field (allowed: {', '.join(owner.model_fields)})"
        if loc and loc[-1] == "":  # a field with an empty name (a JSON key or a form part named ""): say so
            where = param.rstrip(".")  # "" at the top level, else the object that holds it ("scenes[0]")
            return ApiError(
                400,
                f"{where + ': ' if where else ''}a field with an empty name {msg}",
                code="invalid_request",
                param=where,
            )
    if not param:
        return ApiError(400, msg if first else "invalid request", code="invalid_request")
    return ApiError(400, f"{param}: {msg}", code="invalid_request", param=param)


def validate_body(model: type[Model], fields: Mapping[str, Any]) -> Model:
    """``fields`` as ``model``, or the 400 that :func:`validation_error` makes of the first problem."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise validation_error(exc.errors(), model) from None
    except TypeError:  # ``model(**fields)`` with a key that is not text
        raise ApiError(400, "the body's field names must be text", code="invalid_request") from None


def check_query(query_names: Iterable[str], operation: str, allowed: Sequence[str]) -> None:
    """Refuse a query parameter that ``operation`` (e.g. ``GET /v1/videos``) does not take, naming it and the ones it
    does: a misspelt ``limt=5`` would otherwise be ignored without a word and the caller get 20 jobs."""
    for name in query_names:
        if name not in allowed:
            raise ApiError(
                400,
                f"{name}: not a parameter of {operation}; allowed: {', '.join(allowed)}",
                code="unknown_parameter",
                param=name,
            )


# -- the app's handlers ---------------------------------------------------------------------------------------------
def error_response(exc: BaseException) -> JSONResponse:
    """The answer to any error: its own for an ApiError, else a logged 500 that shows the client nothing."""
    if isinstance(exc, ApiError):
        return exc.response()
    log.exception("unexpected error", exc_info=exc)
    return ApiError(500, "internal server error", code="server_error").response()


def documented_paths(app: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each path of the app's /openapi.json as a pattern, with its methods (HEAD where GET is); made once."""
    cached: list[tuple[re.Pattern[str], frozenset[str]]] | None = getattr(app.state, "kinema_paths", None)
    if cached is None:
        cached = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            methods = {m.upper() for m in operations if m.upper() in _HTTP_METHODS}
            cached.append((pattern, frozenset(methods | ({"HEAD"} if "GET" in methods else set()))))
        app.state.kinema_paths = cached
    return cached


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def allowed_methods(app: FastAPI, path: str) -> str:
    """The methods /openapi.json documents for ``path``, for an ``Allow`` header ("GET, HEAD, POST"); "" when it
    documents none."""
    methods: set[str] = set()
    for pattern, found in documented_paths(app):
        if pattern.match(path):
            methods |= found
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the API's shape: ApiError, FastAPI's validation of query and path parameters,
    Starlette's HTTP errors (404 for an unknown path, 405...), and anything unexpected (a logged 500)."""

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc.errors(), skip=("query", "path", "body", "header")).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path; one path has several (GET and POST
            # /v1/videos are two routes), and Allow must list them all
            headers["Allow"] = allowed_methods(req.app, req.url.path) or headers.get("Allow", "")
        return ApiError(exc.status_code, str(exc.detail), code=f"http_{exc.status_code}", headers=headers).response()

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)
