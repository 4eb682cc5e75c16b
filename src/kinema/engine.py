"""The one generate path: plan -> run -> finish.

1. :func:`kinema.plan` checks the request against its backend and resolves every parameter (nothing runs);
2. the backend generates the frames (:func:`run`);
3. :func:`finish` post-processes, writes the recipe, saves the file and its sidecar.

The library, the CLI, the job service, batches and storyboards all call :func:`generate` or :func:`run`, so every
output carries the same recipe and every bad input gets the same error.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._version import __version__
from .backends.base import BackendOutput, CancelToken, GenerationContext, GenerationParams
from .cache import ResultCache
from .errors import GenerationFailed, InvalidRequest, KinemaError
from .planner import Plan, json_safe, plan
from .progress import ProgressCallback, ProgressTracker
from .request import VideoRequest
from .result import Result
from .video import Video

__all__ = [
    "Result",
    "generate",
    "run",
    "finish",
    "build_recipe",
    "request_from_recipe",
    "input_digest",
    "RECIPE_REQUEST_FIELDS",
]

#: the recipe keys that are VideoRequest fields, i.e. what a re-run takes back
RECIPE_REQUEST_FIELDS = (
    "prompt",
    "negative_prompt",
    "image",
    "video",
    "source_video",
    "strength",
    "last_image",
    "references",
    "keyframes",
    "num_frames",
    "fps",
    "width",
    "height",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "backend",
    "model",
    "format",
    "options",
    "postprocess",
)
#: the inputs a recipe names by digest, with the CLI flag that gives each again
_INPUT_FLAGS = {
    "image": "--image",
    "video": "--video",
    "source_video": "--edit",
    "last_image": "--last-image",
    "references": "--reference",
    "keyframes": "--keyframe TIME=IMAGE",
}


def generate(
    prompt: str,
    *,
    negative_prompt: str | None = None,
    image: Any = None,
    video: str | os.PathLike[str] | None = None,
    source_video: str | os.PathLike[str] | None = None,
    strength: float | None = None,
    last_image: Any = None,
    references: list[Any] | None = None,
    keyframes: list[Any] | None = None,
    num_frames: int | None = None,
    duration: float | None = None,
    fps: float | None = None,
    width: int | None = None,
    height: int | None = None,
    aspect_ratio: str | None = None,
    resolution: str | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int | None = None,
    backend: str | None = None,
    model: str | None = None,
    format: str | None = None,
    options: dict[str, Any] | None = None,
    postprocess: list[Any] | None = None,
    output: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    cache: ResultCache | str | os.PathLike[str] | None = None,
) -> Result:
    """Generate a video from a prompt with any backend (the built-in model by default).

    Args:
        prompt: what the video shows, 1 to 5000 characters.
        negative_prompt: what it should not show (backends with classifier-free guidance).
        image: the first frame, for image-to-video: a path, an http(s) URL, bytes, a PIL image or an (H, W, 3)
            uint8 array.
        video: the path of a clip to continue (video extension).
        source_video: the path of a clip to edit: redrawn after the prompt, keeping its layout (docs/editing.md).
        strength: with ``source_video``: 0 keeps the source, 1 ignores it (text-to-video); default: the backend's.
        last_image: the frame the clip ends on (keyframes; with ``image`` the first one too), as ``image`` takes it.
        references: images whose subject or style the clip keeps (reference-to-video), as ``image`` takes each.
        keyframes: images the clip shows at given times: ``[{"time": 1.5, "image": "mid.png"}]`` (or
            ``(time, image)`` pairs, or :class:`kinema.request.Keyframe`), time in seconds from the clip's start (0
            up to its length, increasing), each image as ``image`` takes it; placed on the frame nearest its time
            at the clip's fps. With ``image`` and/or ``last_image`` for the ends (docs/editing.md, "Timed
            keyframes"); only backends whose Capabilities have ``max_keyframes`` take them.
        num_frames: the number of frames; the backend's rule applies (e.g. 16 + 12k for the built-in model).
        duration: the length in seconds, instead of ``num_frames``.
        fps: frames per second (default: the backend's).
        width: the width in pixels, with ``height``.
        height: the height in pixels, with ``width``.
        aspect_ratio: e.g. ``"16:9"``, instead of ``width``/``height``.
        resolution: e.g. ``"480p"`` (the short side), instead of ``width``/``height``.
        num_inference_steps: denoising steps (default: the backend's).
        guidance_scale: classifier-free guidance scale (default: the backend's).
        seed: the seed; None or -1 for random. The seed used is always recorded.
        backend: the engine (see :func:`kinema.list_backends`); default: the built-in model, or the backend that
            serves ``model``.
        model: a model id of the backend, ``"backend/model"``, or a model id that one backend lists
            (``"wan2.1-t2v-1.3b"`` picks diffusers); a ``.safetensors`` file is a built-in checkpoint.
        format: ``"mp4"``, ``"webm"``, ``"gif"`` or ``"png"`` (default: from ``output``'s suffix, else mp4).
        options: backend-specific options, checked by the backend (e.g. diffusers' ``offload``).
        postprocess: steps applied after generation, in order (see :mod:`kinema.media.enhance`).
        output: where to save the clip, with its recipe in the file and a sidecar JSON (default: not saved).
        on_progress: called with a :class:`kinema.ProgressEvent` at every stage and step.
        cancel: a :class:`kinema.CancelToken`; cancelling it stops the generation at the next step.
        cache: a :class:`kinema.cache.ResultCache` (or its folder): a fixed-seed request made before returns the
            earlier output instead of generating (and paying) again.

    >>> import kinema
    >>> result = kinema.generate("a red ball bouncing on green grass", seed=1, num_inference_steps=2)
    >>> result.video.frames.shape
    (16, 128, 128, 3)
    """
    fields = {
        "negative_prompt": negative_prompt,
        "image": image,
        "video": video,
        "source_video": source_video,
        "strength": strength,
        "last_image": last_image,
        "references": references,
        "keyframes": keyframes,
        "num_frames": num_frames,
        "duration": duration,
        "fps": fps,
        "width": width,
        "height": height,
        "aspect_ratio": aspect_ratio,
        "resolution": resolution,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "seed": seed,
        "backend": backend,
        "model": model,
        "format": format,
        "options": options,
        "postprocess": postprocess,
    }
    request = VideoRequest(prompt=prompt, **{k: v for k, v in fields.items() if v is not None})
    return run(request, output=output, on_progress=on_progress, cancel=cancel, cache=cache)


def run(
    request: VideoRequest | Plan,
    *,
    output: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_task_id: Callable[[str, dict[str, Any]], None] | None = None,
    resume_task_id: str | None = None,
    resume_info: dict[str, Any] | None = None,
    cache: ResultCache | str | os.PathLike[str] | None = None,
    recipe_extra: dict[str, Any] | None = None,
) -> Result:
    """Run a request (planned here) or a ready :class:`Plan` through its backend, then :func:`finish` it.

    ``on_task_id`` is called by remote backends with the provider's task id before polling starts;
    ``resume_task_id``/``resume_info`` hand it back to resume the same paid generation. See :func:`generate` for
    the rest. ``recipe_extra`` is merged into the recipe (a storyboard scene's place in its film).
    """
    t_start = time.perf_counter()
    if isinstance(request, Plan):
        the_plan = request
        if output is not None and Path(output) != the_plan.output:
            raise InvalidRequest(
                "output", "give the output to plan(), not to run(), when running a plan", value=str(output)
            )
    else:
        # with a cache, a hit needs no usable backend (a key unset since): availability is checked on a miss
        the_plan = plan(request, output=output, check_available=cache is None)
    store = ResultCache.of(cache) if cache is not None else None
    if store is not None:
        hit = store.get(the_plan.request, output=the_plan.output)
        if hit is not None:
            return hit
        the_plan.check_available()
    params = the_plan.params
    _load_inputs(the_plan.request, params)
    timings = {"prepare": time.perf_counter() - t_start}

    tracker = ProgressTracker(on_progress)
    ctx = GenerationContext(
        progress=tracker,
        cancel=cancel or CancelToken(),
        on_task_id=on_task_id,
        resume_task_id=resume_task_id,
        resume_info=dict(resume_info or {}),
    )
    ctx.cancel.raise_if_cancelled()
    t_gen = time.perf_counter()
    backend = the_plan.backend
    try:
        output_obj = backend.generate(params, ctx)
    except (KinemaError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise GenerationFailed(f"backend {backend.name!r} failed: {type(exc).__name__}: {exc}") from exc
    timings["generate"] = time.perf_counter() - t_gen
    ctx.cancel.raise_if_cancelled()
    result = finish(the_plan, output_obj, timings=timings, progress=tracker, started=t_start, extra=recipe_extra)
    if store is not None:
        store.put(the_plan.request, result)
    return result


def finish(
    the_plan: Plan,
    output: BackendOutput,
    *,
    timings: dict[str, float] | None = None,
    progress: ProgressTracker | None = None,
    started: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Result:
    """The one finish: post-process -> recipe -> save -> sidecar.

    ``extra`` is merged into the recipe (a storyboard scene's place in the film). Every front door ends here, so
    every output carries the same recipe.
    """
    t_start = started if started is not None else time.perf_counter()
    timings = dict(timings or {})
    tracker = progress or ProgressTracker(None)
    request = the_plan.request
    video: Video = output.video
    if the_plan.postprocess:
        from .media.enhance import apply_chain

        tracker("postprocessing", 0, 1)
        t_post = time.perf_counter()
        video = apply_chain(video, the_plan.postprocess)
        timings["postprocess"] = time.perf_counter() - t_post

    # what planning changed (a duration rounded to the frame rule) is said with what the backend said, so Python,
    # batches and the service see it too, not only the CLI that prints the plan
    warnings = list(dict.fromkeys([*the_plan.params.warnings, *output.warnings]))
    recipe = build_recipe(
        the_plan.params,
        request,
        fmt=the_plan.format,
        timings=timings,
        cost=output.cost,
        provider_task_id=output.provider_task_id,
        model_revision=output.model_revision,
        warnings=warnings,
    )
    # how it ran (the pipeline class, dtype and device; a provider's raw status): not needed to reproduce the
    # output, but what a user comparing two runs looks for first
    recipe["engine"] = json_safe(output.extra)
    recipe.update(extra or {})
    video.metadata = recipe
    path: Path | None = None
    if the_plan.output is not None:
        tracker("saving", 0, 1)
        t_save = time.perf_counter()
        path = video.save(the_plan.output, format=the_plan.format)
        if the_plan.postprocess:  # steps on the file itself (a soundtrack)
            from .media.enhance import apply_file_steps

            apply_file_steps(path, the_plan.postprocess)
        timings["save"] = time.perf_counter() - t_save
    timings["total"] = time.perf_counter() - t_start
    recipe["timings"] = {k: round(v, 4) for k, v in timings.items()}
    if path is not None:  # rewrite the sidecar so it carries the final timings too
        video.write_sidecar(path)
    tracker("done", 1, 1)
    return Result(
        path=path,
        video=video,
        recipe=recipe,
        timings=timings,
        seed=the_plan.params.seed,
        cost=output.cost,
        provider_task_id=output.provider_task_id,
        warnings=warnings,
    )


def _load_inputs(request: VideoRequest, params: GenerationParams) -> None:
    from .media.io import load_image, load_video_frames

    if request.image is not None:
        params.image = load_image(request.image, "image")
    if request.video is not None:
        params.video, params.video_fps = load_video_frames(request.video, "video")
    if request.source_video is not None:
        params.source_video, params.source_fps = load_video_frames(request.source_video, "source_video")
    if request.last_image is not None:
        params.last_image = load_image(request.last_image, "last_image")
    params.references = [load_image(r, f"references[{i}]") for i, r in enumerate(request.references)]
    params.keyframes = [load_image(k.image, f"keyframes[{i}].image") for i, k in enumerate(request.keyframes)]


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
    # each timed keyframe with the frame it landed on: a user reading the recipe sees where it went
    # (None where a backend's own resolve() did not say)
    frames = [*params.keyframe_frames, *[None] * (len(request.keyframes) - len(params.keyframe_frames))]
    keyframes = [
        {"time": k.time, "frame": f, "image": input_digest(k.image)}
        for k, f in zip(request.keyframes, frames, strict=False)
    ]
    return {
        "kinema_version": __version__,
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "backend": params.backend,
        "model": params.model,
        "model_revision": model_revision,
        "mode": params.mode,
        "image": input_digest(request.image),
        "video": input_digest(request.video),
        "source_video": input_digest(request.source_video),
        "strength": params.strength,
        "last_image": input_digest(request.last_image),
        "references": [input_digest(r) for r in request.references] or None,
        "keyframes": keyframes or None,
        "width": params.width,
        "height": params.height,
        "num_frames": params.num_frames,
        "fps": params.fps,
        "duration": round(params.duration, 6),
        "num_inference_steps": params.num_inference_steps,
        "guidance_scale": params.guidance_scale,
        "format": fmt,
        "options": json_safe(params.options),
        "postprocess": list(getattr(request, "postprocess", None) or []),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "cost": cost,
        "provider_task_id": provider_task_id,
        "warnings": list(warnings or []),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def request_from_recipe(recipe: dict[str, Any], **overrides: Any) -> VideoRequest:
    """A request that reproduces a stored recipe (``kinema generate --from``); ``overrides`` replace fields."""
    data = {k: recipe.get(k) for k in RECIPE_REQUEST_FIELDS if recipe.get(k) is not None}
    for name, flag in _INPUT_FLAGS.items():
        given = data.get(name)
        if overrides.get(name) is not None or given is None:
            continue
        if name == "keyframes" and isinstance(given, list):  # [{"time", "frame", "image"}]: the images are inputs
            times = ", ".join(f"{k.get('time'):g}" for k in given if isinstance(k, dict))
            given = [k.get("image") if isinstance(k, dict) else k for k in given]
            flag = f"{flag} for each (times {times})"
        # a digest identifies the input but is not the input: the file must be given again
        for item in given if isinstance(given, list) else [given]:
            if isinstance(item, dict) or (isinstance(item, str) and item.startswith("sha256:")):
                digest = item.get("sha256") if isinstance(item, dict) else item.removeprefix("sha256:")
                raise InvalidRequest(
                    name,
                    f"the recipe records its input {name} by digest (sha256 {digest}), not "
                    f"as a file; pass that {name} again with {flag}",
                )
    for name, what in (("references", "reference images"), ("keyframes", "keyframes")):
        recorded, again = data.get(name), overrides.get(name)
        if isinstance(recorded, list) and isinstance(again, list | tuple) and len(again) != len(recorded):
            raise InvalidRequest(
                name, f"the recipe has {len(recorded)} {what}; {len(again)} were given again", value=len(again)
            )
    recorded_keyframes = data.get("keyframes")
    if isinstance(recorded_keyframes, list):  # the frame each landed on is the backend's, not the request's
        data["keyframes"] = [
            {k: v for k, v in item.items() if k != "frame"} if isinstance(item, dict) else item
            for item in recorded_keyframes
        ]
    if "prompt" not in data:
        raise InvalidRequest("prompt", "the recipe has no prompt; is it a Kinema recipe?")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return VideoRequest(**data)


def input_digest(source: Any) -> dict[str, Any] | str | None:
    """How a recipe names an input image or clip: its sha256 and size in bytes (and a file's name), never a path.

    A path on the machine that ran the job (a service's stored upload) means nothing to whoever reads the recipe,
    and tells them about that machine; the digest still identifies the input exactly. An http(s) URL is kept as
    given: it is what the user typed and anyone can fetch it. Arrays and PIL images are digested as their pixels.

    >>> input_digest(b"png bytes")["bytes"]
    9
    """
    if source is None:
        return None
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        return source
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        digest, size = hashlib.sha256(), 0
        try:
            with path.open("rb") as f:  # in chunks: a clip to extend can be large
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError:  # the input was refused before this point if it was missing; say what was asked anyway
            return {"sha256": None, "bytes": None, "name": path.name}
        return {"sha256": digest.hexdigest(), "bytes": size, "name": path.name}
    if isinstance(source, bytes | bytearray):
        return {"sha256": hashlib.sha256(source).hexdigest(), "bytes": len(source)}
    try:
        import numpy as np

        if type(source).__module__.startswith("PIL."):
            source = source.convert("RGB")
        arr = np.ascontiguousarray(np.asarray(source))
    except Exception:  # pragma: no cover - exotic image objects
        return {"sha256": None, "bytes": None, "type": type(source).__name__}
    return {
        "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
        "bytes": arr.nbytes,
        "pixels": "x".join(map(str, arr.shape)),
    }
