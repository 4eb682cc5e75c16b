"""Storyboard jobs over HTTP: several scenes cut into one film, submitted as one job (``POST /v1/storyboards``).

The job (kind ``storyboard``, run by :mod:`kinema.service.storyboard_job`) is stored, claimed, leased, retried,
cancelled, listed, streamed and downloaded exactly like a video job, through the same ``/v1/videos/{id}`` routes;
the video object carries the scenes under ``storyboard`` and, once finished, each scene's seed and time in
``recipe``.

Only what is safe from a network client is accepted: prompts, durations, transitions, continuity, seeds and the
shared generation settings. Server-side paths (scene images, audio tracks, post-processing files) are refused, and
so are a scene's input images and clips (``image``, ``last_image``, ``keyframes``, ``references``, ``source_video``
with ``strength``), named ``scenes[i].<field>``: a job would have to fetch them on the worker, where no URL is
checked against the service's fetch rules. One shot from such inputs is ``POST /v1/videos`` (or
``/v1/videos/edits``); a storyboard with them is ``kinema storyboard`` on local files. The
whole storyboard is checked at submit time by :func:`kinema.storyboard.plan_storyboard` (what
``kinema storyboard --check`` runs), and an error names the body's field (``steps``, ``size``, ``scenes[1].prompt``).

>>> body = CreateStoryboardBody(title="Valley", model="builtin", scenes=[
...     {"prompt": "sunrise over mountains", "duration": 2, "transition": "fade:0.5"},
...     {"prompt": "clouds over mountains", "duration": 2, "continuity": True}])
>>> board, _ = storyboard_of(body)
>>> [s["transition"] for s in board["scenes"]], board["defaults"]["backend"]
(['fade:0.5', 'cut'], 'builtin')
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidRequest, KinemaError
from ..vocabulary import rename_field, request_fields, split_model_ref, spoken_field
from .admission import admit, limits, refusal
from .auth import SECURED, authenticate_request, check_rate
from .errors import CREATE_RESPONSES, ApiError, validate_body
from .jsonio import json_response, read_json_object
from .modelref import check_model_ref
from .safefetch import URLRefused
from .schemas import PROMPT_SCHEMA, TEXT_SCHEMA, VideoObject, video_object
from .store import AdmissionRefused
from .storyboard_job import KIND
from .submit import model_param, new_job_id
from .usage import check_budget

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = [
    "CreateStoryboardBody",
    "StoryboardScene",
    "BODY_MODELS",
    "storyboard_of",
    "create_storyboard_job",
    "storyboard_routes",
]

#: the body's shared settings, by their HTTP names (:func:`request_fields` makes the storyboard's defaults of them)
_SHARED = ("seed", "steps", "guidance", "negative_prompt", "fps", "size")
#: a scene's or the defaults' field in a planning error: ``scenes[0].num_inference_steps``, ``defaults.width``
_SETTING = re.compile(r"^(scenes\[\d+\]|defaults)\.([^.\[]+)")
#: a file storyboard's scene fields that carry input images or clips; refused here (the module's docstring says why)
_SCENE_INPUTS = ("image", "last_image", "keyframes", "references", "source_video", "strength")


class StoryboardScene(BaseModel):
    """One shot of a storyboard job (input images and clips, which a storyboard file takes, are refused here)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=5000, json_schema_extra=PROMPT_SCHEMA)
    duration: StrictFloat | None = Field(default=None, gt=0, le=600, description="seconds of this shot in the film")
    transition: str = Field(default="cut", max_length=40, description="into the next shot: cut, fade:0.5, ...")
    continuity: StrictBool = Field(default=False, description="start from the previous shot's last frame")
    seed: StrictInt | None = Field(default=None, ge=-1, le=2**32 - 1)
    negative_prompt: str | None = Field(default=None, max_length=5000, json_schema_extra=TEXT_SCHEMA)
    name: str | None = Field(default=None, max_length=200)


class CreateStoryboardBody(BaseModel):
    """The fields of ``POST /v1/storyboards``: scenes plus the settings every scene shares."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="Storyboard", min_length=1, max_length=200)
    scenes: list[StoryboardScene] = Field(min_length=1, max_length=50)
    title_card: str | None = Field(default=None, max_length=500, description="text shown before the first scene")
    model: str | None = Field(default=None, max_length=200, description="a backend name or 'backend/model'")
    backend: str | None = Field(default=None, max_length=100)
    size: str | None = Field(default=None, max_length=16, description="WIDTHxHEIGHT, e.g. '128x128'")
    seed: StrictInt | None = Field(default=None, ge=-1, le=2**32 - 1)
    steps: StrictInt | None = Field(default=None, ge=1, le=1000)
    guidance: StrictFloat | None = Field(default=None, ge=0, le=100)
    negative_prompt: str | None = Field(default=None, max_length=5000, json_schema_extra=TEXT_SCHEMA)
    fps: StrictFloat | None = Field(default=None, ge=1, le=240)
    webhook_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] | None = None
    track_id: str | None = Field(default=None, max_length=200)


#: the request bodies this module's routes read raw, for /openapi.json
BODY_MODELS: tuple[type[BaseModel], ...] = (CreateStoryboardBody,)


def storyboard_of(body: CreateStoryboardBody) -> tuple[dict[str, Any], dict[str, Any]]:
    """The storyboard mapping the runner reads, and the settings summary; raises InvalidRequest naming the field."""
    backend, model = split_model_ref(body.model, body.backend)
    defaults: dict[str, Any] = request_fields({name: getattr(body, name) for name in _SHARED})
    if backend:
        defaults["backend"] = backend
    if model:
        defaults["model"] = model
    scenes = [s.model_dump(exclude_none=True) for s in body.scenes]
    board: dict[str, Any] = {"title": body.title, "defaults": defaults, "scenes": scenes}
    if body.title_card:
        board["title_card"] = body.title_card
    return board, {"backend": backend, "model": body.model or backend}


def _plan(body: CreateStoryboardBody) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the whole storyboard as ``kinema storyboard --check`` does; the job's request and summary."""
    from ..planner import plan
    from ..storyboard import load_storyboard, plan_storyboard

    board, settings = storyboard_of(body)
    board_plan = plan_storyboard(load_storyboard(board))  # plans every scene (kinema.planner.plan)
    # the film is made at the first scene's size (render_storyboard), shown with its backend
    params = plan(board_plan.scenes[0].request, check_available=False, seed=0).params
    scenes = [
        {
            "prompt": p.request.prompt,
            "duration": round(p.duration, 6),
            "transition": str(p.transition),
            "continuity": p.scene.continuity,
            "name": p.scene.name,
        }
        for p in board_plan.scenes
    ]
    summary = {
        "prompt": body.title,
        "backend": params.backend,
        "model": settings["model"] or params.backend,
        "seconds": f"{board_plan.duration:g}",
        "size": f"{params.width}x{params.height}",
        "seed": body.seed,
        "track_id": body.track_id,
        "mode": KIND,
        "storyboard": {"title": body.title, "title_card": body.title_card, "scenes": scenes},
    }
    return {"storyboard": board, "body": body.model_dump(exclude_none=True)}, summary


def _api_param(field: str, body: CreateStoryboardBody) -> str:
    """The body's field to blame for a storyboard error. A scene's own field stays (``scenes[1].prompt``); a shared
    setting refused for a scene or in the defaults (``scenes[0].num_inference_steps``, ``defaults.width``) is the
    body's field that set it, as the API names it (``steps``, ``size``); the backend is chosen by ``model``."""
    m = _SETTING.match(field)
    name = field
    if m is not None:
        if m.group(1) != "defaults" and m.group(2) in StoryboardScene.model_fields:
            return field
        name = m.group(2)
    if name in ("backend", "model"):
        return model_param(body.model, body.backend)
    if m is not None and name in ("duration", "num_frames"):  # a scene's length sets these
        return "scenes"
    return spoken_field(name, CreateStoryboardBody.model_fields)


def _refuse_scene_inputs(fields: dict[str, Any]) -> None:
    """A 400 naming ``scenes[i].<field>`` for an input image or clip, which a storyboard job does not take; clearer
    than the schema's "not a known field" for fields that a storyboard file does take."""
    scenes = fields.get("scenes")
    if not isinstance(scenes, list):
        return  # the schema says what is wrong
    for i, scene in enumerate(scenes):
        key = next((k for k in _SCENE_INPUTS if isinstance(scene, dict) and k in scene), None)
        if key is not None:
            raise ApiError(
                400,
                f"scenes[{i}].{key}: input images and clips are not taken by POST /v1/storyboards "
                "(a storyboard job fetches none); make such a shot with POST /v1/videos, or the whole "
                "storyboard with `kinema storyboard` on local files",
                code="invalid_request",
                param=f"scenes[{i}].{key}",
            )


def create_storyboard_job(state: ServiceState, owner: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate, check against the backend, admit and store one storyboard job; its video object."""
    config, store = state.config, state.store
    _refuse_scene_inputs(fields)
    body = validate_body(CreateStoryboardBody, fields)
    check_model_ref(body.model, body.backend, config.model_dir)
    try:
        request, summary = _plan(body)
        if body.webhook_url:
            state.fetcher.check_url(body.webhook_url, field="webhook_url")
    except URLRefused as exc:
        raise ApiError.from_error(exc) from None
    except InvalidRequest as exc:
        raise ApiError.from_error(rename_field(exc, lambda name: _api_param(name, body))) from None
    except KinemaError as exc:  # a scene's backend cannot run here (a key or an extra missing)
        raise ApiError.from_error(exc, param=model_param(body.model, body.backend)) from None
    check_budget(state, owner, str(summary["backend"]))
    admit(state, owner)
    try:
        job = store.submit_job(
            owner=owner,
            request=request,
            summary=summary,
            max_attempts=config.max_attempts,
            webhook_url=body.webhook_url,
            metadata=dict(body.metadata or {}),
            kind=KIND,
            job_id=new_job_id(),
            limits=limits(config),
        )
    except AdmissionRefused as exc:
        raise refusal(exc) from None
    state.admission.accepted(owner)
    state.pool.notify()
    return video_object(job)


def storyboard_routes(state: ServiceState) -> APIRouter:
    """``POST /v1/storyboards``, bound to one app's state."""
    router = APIRouter(tags=["storyboards"])

    @router.post(
        "/v1/storyboards",
        response_model=VideoObject,
        responses=CREATE_RESPONSES,
        summary="Create a storyboard job",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateStoryboardBody"}}},
            },
            **SECURED,
        },
    )
    async def create_storyboard(request: Request) -> Response:
        # the raw body is read (not a pydantic parameter) so that errors are answered in the API's shape
        owner = authenticate_request(state, request)
        check_rate(state.submit_limiter, owner)
        data = await read_json_object(request, require_type=True)
        return json_response(await run_in_threadpool(create_storyboard_job, state, owner, data))

    return router
