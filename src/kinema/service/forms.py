"""Multipart forms in the routes: opening one, reading a file field under its size limit, and a text field given
once. The create routes (:mod:`kinema.service.submit`) and the character route (:mod:`kinema.service.characters`)
read their forms through these, so a bad form gets the same answer everywhere."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from .errors import ApiError
from .security import RequestRefused

__all__ = ["open_form", "read_upload", "put_field"]


async def open_form(request: Request, *, max_files: int, max_fields: int) -> FormData:
    """The request's form; 400 ``invalid_form`` when it cannot be parsed (the body limits answer 413/408 themselves).

    ``max_files``, ``max_fields``: the most file and text parts the form may have."""
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except Exception as exc:
        if isinstance(exc, RequestRefused):  # BodyLimitMiddleware's: it answers 413 or 408 itself
            raise
        raise ApiError(400, f"the form could not be read ({type(exc).__name__})", code="invalid_form") from None


async def read_upload(value: Any, limit: int, param: str, what: str) -> bytes:
    """A file part's bytes, reading at most one byte past ``limit``; 413 naming ``param`` when it is larger.

    ``value``: the form's upload; ``what``: the file's kind in the message ("image", "clip")."""
    data: bytes = await value.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"{param}: the {what} is larger than {limit} bytes", code="request_too_large", param=param)
    return data


def put_field(fields: dict[str, Any], name: str, value: Any) -> None:
    """``fields[name] = value``; 400 naming ``name`` when the form gave it already."""
    if name in fields:
        raise ApiError(400, f"{name}: given more than once", param=name)
    fields[name] = value
