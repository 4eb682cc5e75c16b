"""Editing over HTTP: the routes the official ``openai`` SDK calls for ``client.videos.remix``, ``.edit`` and
``.extend``, mapped onto Kinema's ``edit`` and ``extend`` modes (docs/editing.md).

* ``POST /v1/videos/{video_id}/remix`` (JSON ``{"prompt"}``): an edit of a completed video of the same key;
* ``POST /v1/videos/edits`` (multipart, or JSON): an edit of ``video``, an uploaded clip or ``{"id": ...}`` (in a
  form: the field ``video[id]``, as the SDK's serializer writes it);
* ``POST /v1/videos/extensions`` (the same body): an extension of ``video`` (Kinema's ``video`` field).

The submit itself is :func:`kinema.service.submit.create_response`, as for ``POST /v1/videos``: the Idempotency-Key,
budget, admission, webhook and metadata rules are the same. This module only finds the source clip and copies it
into the inputs dir under the new job's id, so that deleting the source job does not break the queued one.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .auth import SECURED, authenticate_request, check_rate
from .characters import clip_info
from .errors import CREATE_RESPONSES, ApiError
from .schemas import CreateVideoBody, EditVideoBody, VideoObject
from .submit import CREATE_BODY_SCHEMA, EDIT_BODY_SCHEMA, Operation, Source, Uploads, create_response, read_create_body

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = ["edit_routes", "EDIT", "EXTEND", "remix_operation", "RESERVED_IDS", "OTHER_METHODS"]

#: the segments after /v1/videos/ that are routes, not video ids (the JSON fast path leaves them to the router)
RESERVED_IDS = frozenset({"edits", "extensions", "characters"})
#: the methods those POST-only routes refuse
OTHER_METHODS = ("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")

#: what each mode does to its source, for messages
_VERBS = {"source_video": "edited", "video": "extended"}


def _stage(state: ServiceState, job_id: str, write: Any, param: str) -> tuple[Path, dict[str, Any]]:
    """Write the source clip as ``inputs/<job>.source.mp4`` (``write(path)`` fills it) and decode it; removed again
    when it is refused."""
    path = state.config.inputs_dir / f"{job_id}.source.mp4"
    tmp = path.with_suffix(".tmp")
    try:
        write(tmp)
        tmp.replace(path)
        return path, clip_info(path, state.config.max_video_pixels, param)
    except BaseException:
        for p in (tmp, path):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        raise


def _by_id(state: ServiceState, owner: str, video_id: str, param: str, field: str, job_id: str) -> Source:
    """A completed job of ``owner`` as the source: its output (found as the content route finds it), copied."""
    from .videos import output_file

    job = state.store.get(video_id, owner)
    if job is None:  # another key's job answers exactly like a missing one, as retrieve does
        raise ApiError(404, f"no video with id {video_id!r}", code="not_found", param=param)
    if job.status != "completed":
        raise ApiError(
            409,
            f"{param}: the video is {job.status}; only a completed video can be {_VERBS[field]}",
            code="video_not_completed",
            param=param,
        )
    output = output_file(state, job)
    if output is None:
        raise ApiError(404, f"{param}: the video's files have expired or were removed", code="expired", param=param)
    path, info = _stage(state, job_id, lambda tmp: shutil.copyfile(output, tmp), param)
    backend = job.request.get("backend") or job.summary.get("backend")
    model = job.request.get("model")
    return Source(
        field=field,
        param=param,
        path=path,
        num_frames=int(info["num_frames"]),
        from_id=job.id,
        backend=backend if isinstance(backend, str) else None,
        model=model if isinstance(model, str) else None,
    )


def _uploaded(state: ServiceState, data: bytes, field: str, job_id: str) -> Source:
    path, info = _stage(state, job_id, lambda tmp: tmp.write_bytes(data), "video")
    return Source(field=field, param="video", path=path, num_frames=int(info["num_frames"]))


def _video_source(field: str) -> Any:
    """The source maker of the edit (``source_video``) or extension (``video``) route: ``video`` as an id or a
    file, exactly one."""

    def make(state: ServiceState, owner: str, body: CreateVideoBody, uploads: Uploads, job_id: str) -> Source:
        ref = body.video if isinstance(body, EditVideoBody) else None
        if ref is not None and uploads.video is not None:
            raise ApiError(400, "video: give an uploaded clip or a completed video's id, not both", param="video")
        if ref is not None:
            return _by_id(state, owner, ref.id, "video.id", field, job_id)
        if uploads.video is not None:
            return _uploaded(state, uploads.video, field, job_id)
        raise ApiError(
            400,
            'video: required: upload the clip as the file "video", or give a completed video\'s id '
            '({"id": ...}; in a form, the field "video[id]")',
            param="video",
        )

    return make


#: ``POST /v1/videos/edits``
EDIT = Operation(body_model=EditVideoBody, source=_video_source("source_video"), key="edit")
#: ``POST /v1/videos/extensions``
EXTEND = Operation(body_model=EditVideoBody, source=_video_source("video"), key="extend")


def remix_operation(video_id: str) -> Operation:
    """``POST /v1/videos/{video_id}/remix``: an edit of that video (the id is part of the idempotency fingerprint)."""

    def make(state: ServiceState, owner: str, body: CreateVideoBody, uploads: Uploads, job_id: str) -> Source:
        return _by_id(state, owner, video_id, "video_id", "source_video", job_id)

    return Operation(body_model=CreateVideoBody, source=make, key=f"remix:{video_id}")


def edit_routes(state: ServiceState) -> APIRouter:
    """The routes, bound to one app's state."""
    router = APIRouter(tags=["videos"])
    config = state.config

    async def submit(request: Request, operation: Operation, video: bool) -> Response:
        owner = authenticate_request(state, request)
        check_rate(state.submit_limiter, owner)
        fields, uploads = await read_create_body(request, config, video=video)
        return await create_response(state, owner, fields, uploads, request.headers.get("idempotency-key"), operation)

    @router.post(
        "/v1/videos/{video_id}/remix",
        response_model=VideoObject,
        responses=CREATE_RESPONSES,
        summary="Remix a completed video: edit it after a new prompt",
        openapi_extra={"requestBody": CREATE_BODY_SCHEMA, **SECURED},
    )
    async def remix_video(video_id: str, request: Request) -> Response:
        return await submit(request, remix_operation(video_id), False)

    @router.post(
        "/v1/videos/edits",
        response_model=VideoObject,
        responses=CREATE_RESPONSES,
        summary="Edit a clip (uploaded, or a completed video by id) after a prompt",
        openapi_extra={"requestBody": EDIT_BODY_SCHEMA, **SECURED},
    )
    async def edit_video(request: Request) -> Response:
        return await submit(request, EDIT, True)

    @router.post(
        "/v1/videos/extensions",
        response_model=VideoObject,
        responses=CREATE_RESPONSES,
        summary="Extend a clip (uploaded, or a completed video by id)",
        openapi_extra={"requestBody": EDIT_BODY_SCHEMA, **SECURED},
    )
    async def extend_video(request: Request) -> Response:
        return await submit(request, EXTEND, True)

    async def post_only(request: Request) -> Response:
        raise ApiError(
            405, "Method Not Allowed: this path takes POST only", code="http_405", headers={"Allow": "POST"}
        )

    # these literal paths would otherwise reach the /v1/videos/{video_id} routes (GET, DELETE) and be answered as
    # a video named "edits": a 405 that lists exactly the documented method instead
    for path in ("/v1/videos/edits", "/v1/videos/extensions", "/v1/videos/characters"):
        router.add_api_route(path, post_only, methods=list(OTHER_METHODS), include_in_schema=False)
    return router
