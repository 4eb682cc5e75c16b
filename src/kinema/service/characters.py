"""Characters: named reference clips of one API key (``POST /v1/videos/characters``, ``GET`` and ``DELETE
/v1/videos/characters/{id}``), in the shape of OpenAI's ``client.videos.create_character`` / ``get_character``.

A later job names them as ``characters=[{"id": ...}]`` on ``POST /v1/videos`` (LiteLLM's field; SDK users pass it
in ``extra_body``), which Kinema runs in its ``references`` mode: each character gives up to
:data:`FRAMES_PER_CHARACTER` frames of its clip as reference images (see :func:`character_frames`).

A character is two files under ``<inputs>/characters/``: the clip as uploaded (``<id>.mp4``) and a small JSON
record (``<id>.json``: owner, name, created_at, sha256, frames, size). The record is written last, so a character
exists exactly when its record does; nothing is kept in the job store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from .auth import SECURED, authenticate_request, check_rate, owner_dependency
from .errors import CREATE_RESPONSES, ERROR_RESPONSES, ApiError, validate_body
from .forms import open_form, put_field, read_upload
from .schemas import CharacterDeleted, CharacterObject, CreateCharacterBody
from .security import ClipTooLarge, check_clip

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = [
    "Character",
    "FRAMES_PER_CHARACTER",
    "character_frames",
    "character_routes",
    "frame_indices",
    "load_character",
    "CHARACTER_BODY_SCHEMA",
    "clip_info",
]

#: the most reference frames one character gives a job (fewer when the backend takes fewer references)
FRAMES_PER_CHARACTER = 3
_ID = re.compile(r"^char_[0-9a-f]{24}$")

#: the create route's body in /openapi.json (multipart only, as OpenAI's)
CHARACTER_BODY_SCHEMA: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["name", "video"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "video": {"type": "string", "format": "binary", "description": "the character's clip"},
                },
            }
        }
    },
}


@dataclass(frozen=True)
class Character:
    """A character's record, and where its clip is."""

    id: str
    name: str
    created_at: int
    owner: str
    path: Path
    num_frames: int

    def api(self) -> dict[str, Any]:
        """The API's view: never the owner or the path."""
        return {"id": self.id, "object": "character", "name": self.name, "created_at": self.created_at}


def _folder(state: ServiceState) -> Path:
    return state.config.inputs_dir / "characters"


def _not_found(char_id: str, param: str) -> ApiError:
    return ApiError(404, f"no character with id {char_id!r}", code="not_found", param=param)


def load_character(state: ServiceState, owner: str, char_id: str, param: str = "character_id") -> Character:
    """The owner's character, or a 404 naming ``param`` (another key's character answers like a missing one)."""
    if not _ID.match(char_id):  # also keeps an id from naming any other file
        raise _not_found(char_id, param)
    folder = _folder(state)
    try:
        record = json.loads((folder / f"{char_id}.json").read_text())
    except (OSError, ValueError):
        raise _not_found(char_id, param) from None
    clip = folder / f"{char_id}.mp4"
    if record.get("owner") != owner or not clip.is_file():
        raise _not_found(char_id, param)
    return Character(
        id=char_id,
        name=str(record["name"]),
        created_at=int(record["created_at"]),
        owner=owner,
        path=clip,
        num_frames=int(record["frames"]),
    )


def frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frames of a clip: the middle frame of each of ``count`` equal parts. The centres, not
    the ends: a clip's first and last frames are the likeliest to be a fade, a cut or motion blur, and the subject
    is seen at ``count`` different moments (poses, angles).

    >>> frame_indices(16, 3), frame_indices(16, 1), frame_indices(2, 3)
    ([2, 8, 13], [8], [0, 1])
    """
    picked = [min(num_frames - 1, int((i + 0.5) * num_frames / count)) for i in range(count)]
    return list(dict.fromkeys(picked))


def character_frames(character: Character, count: int) -> list[bytes]:
    """Up to ``count`` frames of the character's clip (:func:`frame_indices`), as PNG bytes."""
    from PIL import Image

    from ..media.io import load_video_frames

    frames, _fps = load_video_frames(character.path, "characters")
    out = []
    for index in frame_indices(frames.shape[0], count):
        buf = io.BytesIO()
        Image.fromarray(frames[index]).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def clip_info(path: Path, max_pixels: int, param: str) -> dict[str, Any]:
    """:func:`~kinema.service.security.check_clip` as the API answers it: 422 (``invalid_video``) for what is not a
    readable video, 400 for a clip over the limits, both naming ``param``."""
    from ..errors import InvalidRequest

    try:
        return check_clip(path, max_pixels=max_pixels, field=param)
    except ClipTooLarge as exc:
        raise ApiError.from_error(exc, 400, code="video_too_large") from None
    except InvalidRequest as exc:
        raise ApiError.from_error(exc, 422, code="invalid_video") from None


def _create(state: ServiceState, owner: str, fields: dict[str, Any], data: bytes | None) -> dict[str, Any]:
    body = validate_body(CreateCharacterBody, fields)
    if data is None:
        raise ApiError(400, "video: required: upload the character's clip as the file 'video'", param="video")
    config = state.config
    folder = _folder(state)
    folder.mkdir(parents=True, exist_ok=True)
    char_id = "char_" + secrets.token_hex(12)
    clip = folder / f"{char_id}.mp4"
    tmp = folder / f"{char_id}.tmp"
    try:
        tmp.write_bytes(data)
        info = clip_info(tmp, config.max_video_pixels, "video")
        tmp.replace(clip)
        created = int(time.time())
        record = {
            "id": char_id,
            "name": body.name.strip(),
            "created_at": created,
            "owner": owner,
            "sha256": hashlib.sha256(data).hexdigest(),
            "frames": int(info["num_frames"]),
            "width": int(info["width"]),
            "height": int(info["height"]),
            "fps": info["fps"],
        }
        meta_tmp = folder / f"{char_id}.json.tmp"
        meta_tmp.write_text(json.dumps(record))
        os.replace(meta_tmp, folder / f"{char_id}.json")
    except BaseException:
        for p in (tmp, clip, folder / f"{char_id}.json.tmp"):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        raise
    return {"id": char_id, "object": "character", "name": record["name"], "created_at": created}


async def _read_form(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):  # a form without a file: 400
        raise ApiError(
            415, "send multipart/form-data with the fields name and video (a file)", code="unsupported_media_type"
        )
    form = await open_form(request, max_files=2, max_fields=16)
    fields: dict[str, Any] = {}
    data: bytes | None = None
    for name, value in form.multi_items():
        if not isinstance(value, str):
            if name != "video":
                raise ApiError(400, f"{name}: files are accepted only as video", param=name)
            if data is not None:
                raise ApiError(400, "video: given more than once", param="video")
            data = await read_upload(value, max_bytes, "video", "clip")
        elif name == "video":
            raise ApiError(400, "video: must be an uploaded file", param="video")
        else:
            put_field(fields, name, value)
    return fields, data


def character_routes(state: ServiceState) -> APIRouter:
    """The routes, bound to one app's state."""
    router = APIRouter(tags=["characters"])
    owner_of = owner_dependency(state)

    @router.post(
        "/v1/videos/characters",
        response_model=CharacterObject,
        responses=CREATE_RESPONSES,
        summary="Create a character from a clip",
        openapi_extra={"requestBody": CHARACTER_BODY_SCHEMA, **SECURED},
    )
    async def create_character(request: Request) -> dict[str, Any]:
        owner = authenticate_request(state, request)
        check_rate(state.submit_limiter, owner)
        fields, data = await _read_form(request, state.config.max_video_bytes)
        return await run_in_threadpool(_create, state, owner, fields, data)

    @router.get(
        "/v1/videos/characters/{character_id}",
        response_model=CharacterObject,
        responses=ERROR_RESPONSES,
        summary="Retrieve a character",
    )
    def get_character(character_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        check_rate(state.read_limiter, owner)
        return load_character(state, owner, character_id).api()

    @router.delete(
        "/v1/videos/characters/{character_id}",
        response_model=CharacterDeleted,
        responses=ERROR_RESPONSES,
        summary="Delete a character (Kinema's own; jobs already queued keep their frames)",
    )
    def delete_character(character_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        check_rate(state.read_limiter, owner)
        character = load_character(state, owner, character_id)
        folder = _folder(state)
        (folder / f"{character.id}.json").unlink(missing_ok=True)  # first: the character is gone from here on
        character.path.unlink(missing_ok=True)
        return {"id": character.id, "object": "character.deleted", "deleted": True}

    return router
