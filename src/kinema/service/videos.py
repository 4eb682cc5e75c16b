"""The ``/v1/videos`` routes, in the shape the official ``openai`` SDK speaks: create, list, retrieve, delete,
cancel, download (``/content``, with ranges) and progress events (``/events``, Server-Sent Events).

The JSON fast path: :class:`kinema.service.fastpath.FastPaths`, an ASGI middleware, answers JSON
``POST /v1/videos`` and ``GET /v1/videos/{id}`` before FastAPI routes them, by calling the same functions these
routes call (:func:`kinema.service.submit.create_response` and :func:`retrieve_response`). The two routes below stay
declared (they make ``/openapi.json`` and serve multipart submits), but change those functions, not the route
bodies, or the fast path and the route will disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .auth import SECURED, authenticate, authenticate_request, check_rate, owner_dependency
from .errors import CREATE_RESPONSES, ERROR_RESPONSES, ApiError, check_query
from .jsonio import json_response
from .schemas import VideoDeleted, VideoList, VideoObject, video_object
from .submit import CREATE_BODY_SCHEMA, create_response, read_create_body

if TYPE_CHECKING:
    from .state import ServiceState
    from .store import Job

__all__ = ["video_routes", "retrieve_response", "job_of", "not_found", "input_image", "input_files", "output_file"]

_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {
        "content": {
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "the file",
    },
    206: {
        "description": "a byte range of the file",
        "content": {
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    416: {"description": "range not satisfiable"},
}
_EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    # OpenAPI 3.1 has an event stream's schema describe one event (3.2's itemSchema): its name, id and data
    200: {
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {
                            "type": "string",
                            "enum": ["video.progress", "video.completed", "video.failed", "video.cancelled", "error"],
                        },
                        "id": {"type": "string", "description": "the job's progress when the event was sent"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "description": "the video object as JSON (an error event: an error object)",
                        },
                    },
                }
            }
        },
        "description": "Server-Sent Events: video.progress, then a final video.completed / video.failed / "
        "video.cancelled",
    },
}


def video_routes(state: ServiceState) -> APIRouter:
    """The routes, bound to one app's state."""
    router = APIRouter(tags=["videos"])
    owner_of = owner_dependency(state)
    config = state.config

    # -- create ---------------------------------------------------------------------------------------------
    @router.post(
        "/v1/videos",
        response_model=VideoObject,
        responses=CREATE_RESPONSES,
        summary="Create a video job",
        openapi_extra={"requestBody": CREATE_BODY_SCHEMA, **SECURED},
    )
    async def create_video(request: Request) -> Response:
        # JSON bodies never get here: FastPaths (fastpath.py) answers them with create_response; multipart ones come
        owner = authenticate_request(state, request)
        check_rate(state.submit_limiter, owner)
        fields, upload = await read_create_body(request, config)
        return await create_response(state, owner, fields, upload, request.headers.get("idempotency-key"))

    # -- read -----------------------------------------------------------------------------------------------
    @router.get(
        "/v1/videos",
        response_model=VideoList,
        responses=ERROR_RESPONSES,
        summary="List video jobs",
        openapi_extra=SECURED,
    )
    async def list_videos(
        request: Request,
        after: str | None = Query(None, max_length=100, description="the id of the last job of the previous page"),
        limit: int = Query(20, ge=1, le=100),
        order: str = Query("desc", pattern="^(asc|desc)$"),
    ) -> Response:
        owner = authenticate_request(state, request)
        check_rate(state.read_limiter, owner)
        check_query(request.query_params, "GET /v1/videos", ("after", "limit", "order"))
        try:
            jobs, has_more = state.store.list_jobs(owner, after=after, limit=limit, order=order)
        except KeyError:
            raise ApiError(400, f"after: no video with id {after!r}", code="invalid_cursor", param="after") from None
        data = [video_object(j) for j in jobs]
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )

    @router.get(
        "/v1/videos/{video_id}",
        response_model=VideoObject,
        responses=ERROR_RESPONSES,
        summary="Retrieve a video job",
        openapi_extra=SECURED,
    )
    async def retrieve_video(video_id: str, request: Request) -> Response:
        # the hottest route (clients poll it): FastPaths (fastpath.py) answers it with retrieve_response before
        # routing; this declaration makes /openapi.json and serves a mounted app (a root_path), which FastPaths skips
        return retrieve_response(state, video_id, request.query_params.keys(), request.headers.get("authorization"))

    @router.delete(
        "/v1/videos/{video_id}", response_model=VideoDeleted, responses=ERROR_RESPONSES, summary="Delete a video"
    )
    def delete_video(video_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        check_rate(state.read_limiter, owner)
        job_of(state, video_id, owner)
        state.store.request_cancel(video_id, owner)
        state.pool.cancel_local(video_id)
        job = state.store.delete(video_id, owner)
        if job is None:
            raise not_found(video_id)
        for p in _files_of(state, job):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    @router.post(
        "/v1/videos/{video_id}/cancel",
        response_model=VideoObject,
        responses=ERROR_RESPONSES,
        summary="Cancel a queued or running video job",
    )
    def cancel_video(video_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        check_rate(state.read_limiter, owner)
        job = job_of(state, video_id, owner)
        if job.status in ("completed", "failed"):
            raise ApiError(409, f"the video is already {job.status}", code="not_cancellable", param="video_id")
        was = job.status
        job = state.store.request_cancel(video_id, owner) or job
        state.pool.cancel_local(video_id)
        if was == "queued" and job.status == "cancelled":  # a running job's worker sends its own event
            state.pool.emit(job.id, "video.cancelled")
        return video_object(job)

    @router.post(
        "/v1/videos/{video_id}/retry",
        response_model=VideoObject,
        responses=ERROR_RESPONSES,
        summary="Queue a failed video job again (its attempt and crash budgets renewed)",
    )
    def retry_video(video_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        check_rate(state.read_limiter, owner)
        job = job_of(state, video_id, owner)
        if job.status != "failed":
            raise ApiError(
                409,
                f"the video is {job.status}; only a failed one can be retried",
                code="not_retryable",
                param="video_id",
            )
        again = state.store.requeue(video_id, owner)
        if again is None:  # it changed under us (deleted, or retried by another request)
            raise ApiError(409, "the video is no longer failed", code="not_retryable", param="video_id")
        state.pool.notify()
        return video_object(again)

    @router.get(
        "/v1/videos/{video_id}/content",
        responses=_FILE_RESPONSES,
        response_class=Response,
        summary="Download the video, its thumbnail or one of its input images",
    )
    def video_content(
        video_id: str,
        request: Request,
        owner: str = Depends(owner_of),
        variant: str = Query(
            "video",
            pattern="^(video|thumbnail|spritesheet|input_reference|last_image|reference)$",
            description="video (MP4), thumbnail (PNG), or an image the job was submitted with (PNG, whatever the "
            "job's status): input_reference (the start image), last_image, or reference (with index)",
        ),
        index: int = Query(0, ge=0, le=63, description="with variant=reference: which reference image, from 0"),
    ) -> Response:
        check_rate(state.read_limiter, owner)
        check_query(request.query_params, "GET /v1/videos/{video_id}/content", ("variant", "index"))
        job = job_of(state, video_id, owner)
        if variant in _INPUT_VARIANTS:  # so a client (the web page) can run the job again with the same images
            image = input_image(state, job, variant, index)
            if image is None:
                what = f"reference {index}" if variant == "reference" else variant
                raise ApiError(
                    404,
                    f"variant: this video was not made with an uploaded or fetched {what}, so there "
                    "is none to download",
                    code=f"no_{variant}",
                    param="variant",
                )
            suffix = f"{variant}{index}" if variant == "reference" else variant
            return FileResponse(image, media_type="image/png", filename=f"{video_id}.{suffix}.png")
        if variant == "spritesheet":
            raise ApiError(400, "variant: 'spritesheet' is not offered", code="invalid_variant", param="variant")
        if job.status != "completed":
            raise ApiError(409, f"the video is not ready (status {job.status})", code="not_ready", param="video_id")
        # the file the completing transaction recorded (an attempt's own name, or an older store's {id}.mp4), as
        # this replica sees the outputs dir (docs/cluster.md, "Outputs")
        from .video_job import published_file

        path = published_file(config, job.output_path if variant == "video" else job.thumbnail_path)
        if path is None:
            raise ApiError(404, "the video's files have expired or were removed", code="expired", param="video_id")
        media = "video/mp4" if variant == "video" else "image/png"
        name = f"{video_id}.mp4" if variant == "video" else f"{video_id}.png"
        return FileResponse(path, media_type=media, filename=name)

    @router.get(
        "/v1/videos/{video_id}/events",
        responses=_EVENT_RESPONSES,
        response_class=StreamingResponse,
        summary="Stream a job's progress (Server-Sent Events)",
    )
    def video_events(
        video_id: str,
        request: Request,
        owner: str = Depends(owner_of),
        timeout: float = Query(3600.0, ge=0, le=86400),
    ) -> StreamingResponse:
        check_rate(state.read_limiter, owner)
        check_query(request.query_params, "GET /v1/videos/{video_id}/events", ("timeout",))
        job_of(state, video_id, owner)
        return StreamingResponse(
            _sse(state, video_id, owner, timeout),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


def retrieve_response(
    state: ServiceState, video_id: str, query_names: Iterable[str], authorization: str | None
) -> Response:
    """``GET /v1/videos/{id}``: one indexed read, serialized once (no response-model validation). The fast path
    calls this too."""
    owner = authenticate(state, query_names, authorization)
    check_rate(state.read_limiter, owner)
    return json_response(video_object(job_of(state, video_id, owner)))


def not_found(video_id: str) -> ApiError:
    return ApiError(404, f"no video with id {video_id!r}", code="not_found", param="video_id")


def job_of(state: ServiceState, video_id: str, owner: str) -> Job:
    """The owner's job, or a 404 (another key's job answers exactly like a missing one)."""
    job = state.store.get(video_id, owner)
    if job is None:
        raise not_found(video_id)
    return job


def output_file(state: ServiceState, job: Job) -> Path | None:
    """A completed job's video file as ``/content`` finds it (:func:`~kinema.service.video_job.published_file`), for
    an edit or extension by id to copy; None when it has expired or was removed."""
    from .video_job import published_file

    return published_file(state.config, job.output_path)


#: The /content variants that hand back an input image, and the request field each reads.
_INPUT_VARIANTS = {"input_reference": "image", "last_image": "last_image", "reference": "references"}


def input_image(state: ServiceState, job: Job, variant: str = "input_reference", index: int = 0) -> Path | None:
    """One of the job's input images as the service stored it (``inputs/<id>...png``), or None: the start image
    (``input_reference``), the ``last_image``, or reference ``index``."""
    from .video_job import service_input

    value = job.request.get(_INPUT_VARIANTS[variant])
    if variant == "reference":
        value = value[index] if isinstance(value, list) and index < len(value) else None
    return service_input(state.config, value)


def input_files(state: ServiceState, job: Job) -> list[Path]:
    """Every input the service stored for the job (:func:`~kinema.service.video_job.service_inputs`)."""
    from .video_job import service_inputs

    return service_inputs(state.config, job.request)


def _files_of(state: ServiceState, job: Job) -> list[Path]:
    paths = [job.output_path, job.thumbnail_path, (job.output_path + ".json") if job.output_path else None]
    return [Path(p) for p in paths if p] + input_files(state, job)


async def _sse(state: ServiceState, video_id: str, owner: str, timeout: float) -> AsyncIterator[bytes]:
    last: tuple[Any, ...] | None = None
    deadline = time.monotonic() + timeout
    last_sent = time.monotonic()
    while True:
        job = await run_in_threadpool(state.store.get, video_id, owner)
        if job is None:
            yield b"event: error\ndata: " + json.dumps(not_found(video_id).body()).encode() + b"\n\n"
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
