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

__all__ = ["json_response", "parse_json_object", "read_json_object", "is_json", "loads_limited", "MAX_JSON_DEPTH"]

#: how deeply arrays and objects may nest in a request body (a deeper one is refused with 400, naming its field);
#: no field Kinema takes comes near it, and Python's JSON decoder would hit its recursion limit near 1,000
MAX_JSON_DEPTH = 32


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json")


def is_json(content_type: str) -> bool:
    """Whether a Content-Type header names JSON (``application/json``, ``application/*+json``)."""
    ctype = content_type.split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def _too_deep(value: Any, depth: int) -> bool:
    if depth > MAX_JSON_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_too_deep(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_too_deep(v, depth + 1) for v in value)
    return False


def _deep_key(raw: bytes | str) -> str | None:
    """The top-level key under which ``raw`` nests too deeply (a scan of the text, for bodies the decoder could not
    even read); None when the top level itself is the culprit."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth, key, in_string, escaped, start = 0, None, False, False, 0
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                if depth == 1 and text[i + 1 :].lstrip().startswith(":"):
                    key = text[start:i]
        elif ch == '"':
            in_string, start = True, i + 1
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH + 1:
                return key
        elif ch in "]}":
            depth -= 1
    return key


def loads_limited(raw: bytes | str, field: str | None = None) -> Any:
    """``json.loads`` that refuses nesting deeper than :data:`MAX_JSON_DEPTH` with a 400 naming the field (``field``,
    or for a body the top-level key where it happens), instead of a RecursionError and a 500."""
    try:
        data = json.loads(raw)
    except RecursionError:
        data = None
    else:
        if not _too_deep(data, 0 if field is None else 1):
            return data
    if field is None and isinstance(data, dict):
        field = next((k for k, v in data.items() if _too_deep(v, 1)), None)
    elif field is None:
        field = _deep_key(raw)
    where = field or "body"
    raise ApiError(
        400,
        f"{where}: nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
        code="invalid_json",
        param=where,
    )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or the 400 that says what it is instead."""
    try:
        data = loads_limited(raw)
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
