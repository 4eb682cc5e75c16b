"""The one generate path: resolve the backend -> check the request -> run -> save with its recipe.

The library, the CLI, the job service, batches and storyboards all call :func:`generate` (or :func:`run` with a
ready :class:`VideoRequest`), so every output carries the same recipe and every bad input gets the same error.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ._version import __version__
from .backends import get_backend
from .backends.base import BaseBackend, CancelToken, GenerationContext, GenerationParams
from .errors import BackendUnavailable, GenerationFailed, InvalidRequest, KinemaError
from .progress import ProgressCallback, ProgressTracker
from .request import VideoRequest
from .video import FORMAT_BY_SUFFIX, Video

__all__ = ["Result", "generate", "run", "build_recipe", "request_from_recipe", "RECIPE_REQUEST_FIELDS"]

#: the recipe keys that are VideoRequest fields, i.e. what a re-run takes back
RECIPE_REQUEST_FIELDS = (
    "prompt", "negative_prompt", "image", "video", "num_frames", "fps", "width", "height", "num_inference_steps",
    "guidance_scale", "seed", "backend", "model", "format", "options", "postprocess",
)  # fmt: skip


@dataclass
class Result:
    """One generation: where it was saved, the clip, its recipe and how long each stage took (seconds)."""

    path: Path | None
    video: Video
    recipe: dict[str, Any]
    timings: dict[str, float]
    seed: int
    cost: dict[str, Any] | None = None
    provider_task_id: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "seed": self.seed,
            "num_frames": self.video.num_frames,
            "width": self.video.width,
            "height": self.video.height,
            "fps": self.video.fps,
            "duration": self.video.duration,
            "timings": self.timings,
            "cost": self.cost,
            "provider_task_id": self.provider_task_id,
            "warnings": self.warnings,
            "recipe": self.recipe,
        }


def generate(
    prompt: str,
    *,
    output: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    cache: Any = None,
    **params: Any,
) -> Result:
    """Generate a video from a prompt with any backend (the built-in model by default).

    ``params`` are :class:`VideoRequest` fields (``num_frames``, ``seed``, ``backend``, ``image``...). With
    ``output`` the clip is saved there (format from the extension) with its recipe in the file and a sidecar JSON.

    >>> import kinema
    >>> result = kinema.generate("a red ball bouncing on green grass", seed=1, num_inference_steps=2)
    >>> result.video.frames.shape
    (16, 64, 64, 3)
    """
    request = VideoRequest(prompt=prompt, **params)
    return run(request, output=output, on_progress=on_progress, cancel=cancel, cache=cache)


def run(
    request: VideoRequest,
    *,
    output: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_task_id: Callable[[str, dict[str, Any]], None] | None = None,
    resume_task_id: str | None = None,
    resume_info: dict[str, Any] | None = None,
    cache: Any = None,
) -> Result:
    """Run a ready request through its backend. See :func:`generate`.

    ``cache`` (a :class:`kinema.cache.ResultCache` or its folder): a fixed-seed request made before returns the
    earlier output instead of generating again.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out_path = Path(output) if output is not None else None
    fmt = _output_format(request, out_path)
    if request.postprocess:
        from .media.enhance import check_chain_output

        check_chain_output(request.postprocess, fmt)
    store = None
    if cache is not None:
        from .cache import ResultCache

        store = ResultCache.of(cache)
        hit = store.get(request, output=out_path)
        if hit is not None:
            return hit

    backend = get_backend(request.backend)
    seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
    # backends that only implement the Backend protocol get the shared Capabilities checks of BaseBackend
    resolve = getattr(backend, "resolve", None) or partial(BaseBackend.resolve, backend)
    params = resolve(request, seed)
    avail = backend.availability()
    if not avail.usable:
        raise BackendUnavailable(backend.name, avail.reason or "unknown reason")
    _load_inputs(request, params)
    timings["prepare"] = time.perf_counter() - t_start

    tracker = ProgressTracker(on_progress)
    ctx = GenerationContext(
        progress=tracker, cancel=cancel or CancelToken(), on_task_id=on_task_id,
        resume_task_id=resume_task_id, resume_info=dict(resume_info or {}),
    )  # fmt: skip
    ctx.cancel.raise_if_cancelled()
    t_gen = time.perf_counter()
    try:
        output_obj = backend.generate(params, ctx)
    except (KinemaError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise GenerationFailed(f"backend {backend.name!r} failed: {type(exc).__name__}: {exc}") from exc
    timings["generate"] = time.perf_counter() - t_gen
    ctx.cancel.raise_if_cancelled()
    video: Video = output_obj.video
    if request.postprocess:
        from .media.enhance import apply_chain

        tracker("postprocessing", 0, 1)
        t_post = time.perf_counter()
        video = apply_chain(video, request.postprocess)
        timings["postprocess"] = time.perf_counter() - t_post

    recipe = build_recipe(params, request, fmt=fmt, timings=timings, cost=output_obj.cost,
                          provider_task_id=output_obj.provider_task_id, model_revision=output_obj.model_revision,
                          warnings=output_obj.warnings)  # fmt: skip
    video.metadata = recipe
    path: Path | None = None
    if out_path is not None:
        tracker("saving", 0, 1)
        t_save = time.perf_counter()
        path = video.save(out_path, format=fmt)
        if request.postprocess:  # steps on the file itself (a soundtrack)
            from .media.enhance import apply_file_steps

            apply_file_steps(path, request.postprocess)
        timings["save"] = time.perf_counter() - t_save
    timings["total"] = time.perf_counter() - t_start
    recipe["timings"] = {k: round(v, 4) for k, v in timings.items()}
    if path is not None:  # rewrite the sidecar so it carries the final timings too
        video.write_sidecar(path)
    tracker("done", 1, 1)
    result = Result(path=path, video=video, recipe=recipe, timings=timings, seed=seed, cost=output_obj.cost,
                    provider_task_id=output_obj.provider_task_id, warnings=list(output_obj.warnings))  # fmt: skip
    if store is not None:
        store.put(request, result)
    return result


def _output_format(request: VideoRequest, out_path: Path | None) -> str:
    if out_path is None:
        return request.format or "mp4"
    by_suffix = FORMAT_BY_SUFFIX.get(out_path.suffix.lower()) or ("png" if out_path.suffix == "" else None)
    if by_suffix is None:
        raise InvalidRequest("output", f"unknown video extension {out_path.suffix!r}", value=str(out_path),
                             allowed=".mp4, .webm, .gif, or a folder for PNG frames")  # fmt: skip
    if request.format and request.format != by_suffix:
        raise InvalidRequest("format", f"{request.format!r} disagrees with the output file {out_path.name!r}",
                             value=request.format, allowed=by_suffix)  # fmt: skip
    return by_suffix


def _load_inputs(request: VideoRequest, params: GenerationParams) -> None:
    from .media.io import load_image, load_video_frames

    if request.image is not None:
        params.image = load_image(request.image, "image")
    if request.video is not None:
        params.video, params.video_fps = load_video_frames(request.video, "video")


def build_recipe(
    params: GenerationParams,
    request: VideoRequest,
    *,
    fmt: str,
    timings: dict[str, float],
    cost: dict[str, Any] | None = None,
    provider_task_id: str | None = None,
    model_revision: str | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce an output, JSON-safe. Secrets never go here."""
    return {
        "kinema_version": __version__,
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "backend": params.backend,
        "model": params.model,
        "model_revision": model_revision,
        "mode": params.mode,
        "image": request.image_reference(),
        "video": request.video,
        "width": params.width,
        "height": params.height,
        "num_frames": params.num_frames,
        "fps": params.fps,
        "duration": round(params.duration, 6),
        "num_inference_steps": params.num_inference_steps,
        "guidance_scale": params.guidance_scale,
        "format": fmt,
        "options": _json_safe(params.options),
        "postprocess": list(getattr(request, "postprocess", None) or []),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "cost": cost,
        "provider_task_id": provider_task_id,
        "warnings": list(warnings or []),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def request_from_recipe(recipe: dict[str, Any], **overrides: Any) -> VideoRequest:
    """A request that reproduces a stored recipe (``kinema generate --from``); ``overrides`` replace fields."""
    data = {k: recipe.get(k) for k in RECIPE_REQUEST_FIELDS if recipe.get(k) is not None}
    image = data.get("image")
    if isinstance(image, str) and image.startswith("sha256:"):
        raise InvalidRequest("image", "the recipe's input image was given as bytes and is not stored; "
                                      "pass the image again with --image")  # fmt: skip
    if "prompt" not in data:
        raise InvalidRequest("prompt", "the recipe has no prompt; is it a Kinema recipe?")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return VideoRequest(**data)
