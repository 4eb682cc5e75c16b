"""JSON in and out of the routes: the one reader of a JSON-object body and the one serializer of answers.

Answers are serialized once, compactly, and sent without a response model's validation (the models still describe
them in ``/openapi.json``): on the hot routes that validation cost more than the work itself.

>>> parse_json_object(b'{"prompt": "a red ball"}')
{'prompt': 'a red ball'}
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .errors import ApiError

__all__ = ["json_response", "parse_json_object", "read_json_object", "is_json"]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json")


def is_json(content_type: str) -> bool:
    """Whether a Content-Type header names JSON (``application/json``, ``application/*+json``)."""
    ctype = content_type.split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or the 400 that says what it is instead."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return data


async def read_json_object(request: Request, *, require_type: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object; with ``require_type``, a 415 unless it is sent as JSON."""
    if require_type and not is_json(request.headers.get("content-type", "")):
        raise ApiError(415, "send application/json", code="unsupported_media_type")
    return parse_json_object(await request.body())
