"""Storyboard jobs: several scenes cut into one film, submitted as one job (``POST /v1/storyboards``).

The job kind ``storyboard`` runs :func:`kinema.storyboard.render_storyboard` (the same runner as
``kinema storyboard``) inside a worker, so it is stored, claimed, leased, retried, cancelled, listed, streamed and
downloaded exactly like a video job, through the same ``/v1/videos/{id}`` routes. Its progress ``stage`` is
``"scene K/N"`` while scene K of N is being made, then ``"assembling"``; the video object carries the scenes under
``storyboard`` and, once finished, each scene's seed and time in ``recipe``.

Only what is safe from a network client is accepted: prompts, durations, transitions, continuity, seeds and the
shared generation settings. Server-side paths (scene images, audio tracks, post-processing files) are refused.

>>> body = CreateStoryboardBody(title="Valley", model="builtin", scenes=[
...     {"prompt": "sunrise over mountains", "duration": 2, "transition": "fade:0.5"},
...     {"prompt": "clouds over mountains", "duration": 2, "continuity": True}])
>>> board, _ = storyboard_of(body)
>>> [s["transition"] for s in board["scenes"]], board["defaults"]["backend"]
(['fade:0.5', 'cut'], 'builtin')
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BackendUnavailable, InvalidRequest, KinemaError
from ..progress import ProgressEvent
from .worker import AttemptContext, register_job_kind

try:  # the route needs FastAPI (the server extra); the job kind, run by any worker, does not
    from fastapi import Request
    from fastapi.responses import Response
except ImportError:  # pragma: no cover
    Request = Response = Any  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .app import ServiceState

__all__ = ["CreateStoryboardBody", "StoryboardScene", "storyboard_of", "run_storyboard_job", "install_routes"]

KIND = "storyboard"
_SCENE_EVENT = re.compile(r"^scene (\d+)/(\d+):")
#: the API's names of the shared settings -> the storyboard's ``defaults`` keys (a request field each)
_DEFAULT_FIELDS = {"seed": "seed", "steps": "num_inference_steps", "guidance": "guidance_scale",
                   "negative_prompt": "negative_prompt", "fps": "fps"}  # fmt: skip
#: a storyboard field named in an error -> the API field the client sent
_PARAM_OF = {"defaults.num_inference_steps": "steps", "defaults.guidance_scale": "guidance", "defaults.seed": "seed",
             "defaults.negative_prompt": "negative_prompt", "defaults.fps": "fps", "defaults.width": "size",
             "defaults.height": "size", "defaults.backend": "model", "defaults.model": "model",
             "defaults.duration": "scenes", "num_inference_steps": "steps", "guidance_scale": "guidance",
             "width": "size", "height": "size", "backend": "model", "num_frames": "scenes"}  # fmt: skip


class StoryboardScene(BaseModel):
    """One shot of a storyboard job."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=5000)
    duration: float | None = Field(default=None, gt=0, le=600, description="seconds of this shot in the film")
    transition: str = Field(default="cut", max_length=40, description="into the next shot: cut, fade:0.5, ...")
    continuity: bool = Field(default=False, description="start from the previous shot's last frame")
    seed: int | None = Field(default=None, ge=-1, le=2**32 - 1)
    negative_prompt: str | None = Field(default=None, max_length=5000)
    name: str | None = Field(default=None, max_length=200)


class CreateStoryboardBody(BaseModel):
    """The fields of ``POST /v1/storyboards``: scenes plus the settings every scene shares."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="Storyboard", min_length=1, max_length=200)
    scenes: list[StoryboardScene] = Field(min_length=1, max_length=50)
    title_card: str | None = Field(default=None, max_length=500, description="text shown before the first scene")
    model: str | None = Field(default=None, max_length=200, description="a backend name or 'backend/model'")
    backend: str | None = Field(default=None, max_length=100)
    size: str | None = Field(default=None, max_length=16, description="WIDTHxHEIGHT, e.g. '64x64'")
    seed: int | None = Field(default=None, ge=-1, le=2**32 - 1)
    steps: int | None = Field(default=None, ge=1, le=1000)
    guidance: float | None = Field(default=None, ge=0, le=100)
    negative_prompt: str | None = Field(default=None, max_length=5000)
    fps: float | None = Field(default=None, ge=1, le=240)
    webhook_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] | None = None
    track_id: str | None = Field(default=None, max_length=200)


def _param(loc: tuple[Any, ...]) -> str:
    """pydantic's ('scenes', 1, 'prompt') -> 'scenes[1].prompt', the storyboard's own spelling."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "body"


def _api_param(field: str) -> str:
    """The API field to blame: a shared setting refused for a scene ('scenes[0].size') is the form's 'size'."""
    m = re.match(r"^scenes\[\d+\]\.(.+)$", field)
    if m and m.group(1) not in StoryboardScene.model_fields:
        tail = m.group(1).split(".")[0]
        return _PARAM_OF.get(tail, tail)
    return _PARAM_OF.get(field, field)


def storyboard_of(body: CreateStoryboardBody) -> tuple[dict[str, Any], dict[str, Any]]:
    """The storyboard mapping the runner reads, and the settings summary; raises InvalidRequest naming the field."""
    from .app import _parse_size, _resolve_model

    backend, model = _resolve_model(body.model, body.backend)
    defaults: dict[str, Any] = {}
    if backend:
        defaults["backend"] = backend
    if model:
        defaults["model"] = model
    for api_name, field in _DEFAULT_FIELDS.items():
        value = getattr(body, api_name)
        if value is not None:
            defaults[field] = value
    if body.size is not None:
        defaults["width"], defaults["height"] = _parse_size(body.size)
    scenes = [s.model_dump(exclude_none=True) for s in body.scenes]
    board: dict[str, Any] = {"title": body.title, "defaults": defaults, "scenes": scenes}
    if body.title_card:
        board["title_card"] = body.title_card
    return board, {"backend": backend, "model": body.model or backend}


def _plan(body: CreateStoryboardBody) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the whole storyboard as ``kinema storyboard --check`` does; the job's request and summary."""
    from ..backends import get_backend
    from ..storyboard import load_storyboard, plan_storyboard

    board, settings = storyboard_of(body)
    plan = plan_storyboard(load_storyboard(board))
    first = plan.scenes[0].request
    params = get_backend(first.backend).resolve(first, 0)
    scenes = [{"prompt": p.request.prompt, "duration": round(p.duration, 6), "transition": str(p.transition),
               "continuity": p.scene.continuity, "name": p.scene.name} for p in plan.scenes]  # fmt: skip
    summary = {
        "prompt": body.title, "backend": params.backend, "model": settings["model"] or params.backend,
        "seconds": f"{plan.duration:g}", "size": f"{params.width}x{params.height}", "seed": body.seed,
        "track_id": body.track_id, "mode": KIND,
        "storyboard": {"title": body.title, "title_card": body.title_card, "scenes": scenes},
    }  # fmt: skip
    return {"storyboard": board, "body": body.model_dump(exclude_none=True)}, summary


def _validate(fields: dict[str, Any]) -> CreateStoryboardBody:
    from .app import ApiError

    try:
        return CreateStoryboardBody(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "is invalid"))
        if first.get("type") == "extra_forbidden":
            model = StoryboardScene if param.startswith("scenes[") else CreateStoryboardBody
            msg = f"is not a known field (allowed: {', '.join(model.model_fields)})"
        raise ApiError(400, f"{param}: {msg}", code="invalid_request", param=param) from None
    except TypeError:
        raise ApiError(400, "the body's field names must be text", code="invalid_request") from None


def create_storyboard_job(state: ServiceState, owner: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate, check against the backend, admit and store one storyboard job; its video object."""
    import secrets

    from .app import ApiError, _admit
    from .safefetch import URLRefused
    from .schemas import video_object

    config, store = state.config, state.store
    body = _validate(fields)
    try:
        request, summary = _plan(body)
        if body.webhook_url:
            state.fetcher.check_url(body.webhook_url, field="webhook_url")
    except InvalidRequest as exc:
        param = _api_param(exc.field)
        message = exc.message
        if param != exc.field and message.startswith(exc.field + ": "):
            message = f"{param}: {message[len(exc.field) + 2 :]}"
        raise ApiError(400, message, code="invalid_request", param=param) from None
    except URLRefused as exc:
        raise ApiError(400, str(exc), code="url_refused", param=exc.field) from None
    except (BackendUnavailable, KinemaError) as exc:
        raise ApiError(400, exc.message, code=exc.code, param="model") from None
    _admit(state, owner)
    job = store.submit_job(owner=owner, request=request, summary=summary, max_attempts=config.max_attempts,
                           webhook_url=body.webhook_url, metadata=dict(body.metadata or {}), kind=KIND,
                           job_id="video_" + secrets.token_hex(12))  # fmt: skip
    state.admission.accepted(owner)
    state.pool.notify()
    return video_object(job)


def install_routes(app: FastAPI, state: ServiceState) -> None:
    """Add ``POST /v1/storyboards`` to the service app (``create_app`` calls this)."""
    import json

    from starlette.concurrency import run_in_threadpool

    from .app import _ERRORS, _SECURED, ApiError, _authenticate, _json, _rate
    from .schemas import VideoObject

    @app.post("/v1/storyboards", response_model=VideoObject, responses=_ERRORS, summary="Create a storyboard job",
              tags=["storyboards"], openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/CreateStoryboardBody"}}}},
                  **_SECURED})  # fmt: skip
    async def create_storyboard(request: Request) -> Response:
        owner = _authenticate(state, request)
        _rate(state.submit_limiter, owner)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise ApiError(415, "send application/json", code="unsupported_media_type")
        try:
            data = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        return _json(await run_in_threadpool(create_storyboard_job, state, owner, data))

    # the body's schema for /openapi.json (the route reads the raw body to answer errors in the API's shape)
    original = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "CreateStoryboardBody" not in components:
            defs = CreateStoryboardBody.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(defs.pop("$defs", {}))
            components["CreateStoryboardBody"] = defs
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# -- the job kind -------------------------------------------------------------------------------------------------
def run_storyboard_job(ctx: AttemptContext) -> None:
    """Render the film in the work dir, then publish it (with a thumbnail and the manifest) on completion."""
    from ..storyboard import load_storyboard, manifest_path, render_storyboard, scenes_dir
    from ..video import Video
    from .worker import _write_thumbnail

    pool, job = ctx.pool, ctx.job
    cfg = pool.config
    board = load_storyboard(job.request["storyboard"], base=cfg.work_dir)
    total = len(board.scenes)
    work = cfg.work_dir / f"{job.id}.a{ctx.attempt}.{pool.name_slug}.mp4"
    thumb_work = work.with_suffix(".png")
    sidecar_work = manifest_path(work)

    def on_event(message: str) -> None:
        m = _SCENE_EVENT.match(message)
        if m:  # "scene K/N: generating (...)": scenes before K are done
            k = int(m.group(1))
            event = ProgressEvent(stage=f"scene {k}/{total}", step=k, total=total, fraction=0.95 * (k - 1) / total,
                                  message=message)  # fmt: skip
            ctx.progress(event, scene=k, scenes=total)
        elif message.startswith("assembling"):
            ctx.progress(ProgressEvent(stage="assembling", step=total, total=total, fraction=0.95, message=message))

    def on_progress(index: int, event: ProgressEvent) -> None:
        # a scene's own events (denoising step k of n...) become the job's, inside that scene's share of the bar
        k = index + 1
        ctx.progress(ProgressEvent(stage=f"scene {k}/{total}: {event.stage}", step=event.step, total=event.total,
                                   fraction=0.95 * (index + event.fraction) / total, eta=event.eta,
                                   message=event.message), scene=k, scenes=total)  # fmt: skip

    try:
        manifest = render_storyboard(board, work, cancel=ctx.token, on_event=on_event, on_progress=on_progress)
        film = Video.open(work)
        _write_thumbnail(film.frames[len(film.frames) // 2], thumb_work)
        final = cfg.outputs_dir / f"{job.id}.mp4"
        thumb = cfg.outputs_dir / f"{job.id}.png"
        sidecar = Path(str(final) + ".json")  # deleted with the job, like a video's recipe sidecar

        def publish() -> None:
            os.replace(work, final)
            os.replace(thumb_work, thumb)
            if sidecar_work.exists():
                os.replace(sidecar_work, sidecar)

        scenes = [{"index": r["index"], "prompt": r["prompt"], "seed": r["seed"], "duration": r["duration"],
                   "transition": r["transition"], "continuity": r["continuity"], "seconds": r["seconds"],
                   "backend": r["recipe"].get("backend"), "model": r["recipe"].get("model")}
                  for r in manifest["scenes"]]  # fmt: skip
        # the body as submitted, with every scene's seed pinned: sending it again makes the same film
        body = dict(job.request.get("body") or {})
        body["scenes"] = [dict(s, seed=r["seed"]) for s, r in zip(body.get("scenes", []), scenes, strict=False)]
        recipe = {"kind": "kinema.storyboard", "title": manifest["title"], "duration": manifest["duration"],
                  "fps": manifest["fps"], "width": manifest["width"], "height": manifest["height"],
                  "scenes": scenes, "storyboard": body}  # fmt: skip
        timings = {f"scene {s['index'] + 1}": float(s["seconds"]) for s in scenes}
        timings["total"] = float(manifest["seconds"] or 0.0)
        summary: dict[str, Any] = {"seed": scenes[0]["seed"] if scenes else None, "recipe": recipe, "cost": None,
                   "timings": timings, "warnings": []}  # fmt: skip
        ok = pool.store.complete(job.id, pool.name, ctx.attempt, result=summary, output_path=str(final),
                                 thumbnail_path=str(thumb), expires_at=time.time() + cfg.retention_hours * 3600,
                                 publish=publish)  # fmt: skip
        if not ok:
            ctx.lost = True
    finally:
        shutil.rmtree(scenes_dir(work), ignore_errors=True)
        for p in (work, thumb_work, sidecar_work):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)


register_job_kind(KIND, run_storyboard_job)
