"""Planning: the one place a request meets its backend, before anything is generated or paid for.

:func:`plan` picks the backend (from ``backend``, or from the model reference: see
:func:`kinema.vocabulary.split_model_ref`), resolves every parameter against the backend's Capabilities (size,
frames, fps, steps, guidance, seed), checks that the backend can run here, and decides the output format and checks
the post-processing chain against it. It is the only caller of a backend's ``resolve()`` and ``availability()``
outside ``kinema.backends``: :func:`kinema.engine.run`, the job service's submit-time validation, batches and
storyboards all plan through it, so a request is refused (or accepted) the same way at every front door.

>>> import kinema
>>> p = kinema.plan(kinema.VideoRequest(prompt="a red ball bouncing", seed=3))
>>> p.backend.name, p.params.num_frames, p.format
('builtin', 16, 'mp4')
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import BaseBackend, GenerationParams, backend_names, get_backend
from .backends.base import MODE_NAMES, keyframe_refusal, mode_refusal
from .errors import BackendUnavailable, InvalidRequest
from .request import VideoRequest
from .video import output_format
from .vocabulary import split_model_ref

__all__ = ["Plan", "plan", "backend_for", "backends_supporting", "json_safe"]


@dataclass
class Plan:
    """A request checked against its backend: what :func:`kinema.engine.run` will do, shown before it is done."""

    #: the request as asked, with ``backend`` and ``model`` as the model reference resolved them
    request: VideoRequest
    #: the backend that will run it
    backend: BaseBackend
    #: every parameter resolved: size, frames, fps, steps, guidance, seed, mode, options
    params: GenerationParams
    #: the output's format (from the output's suffix, else the request's ``format``, else mp4)
    format: str
    #: where the output will be saved (None: kept in memory)
    output: Path | None = None
    #: False when the seed was drawn at random here (the request gave none)
    seed_given: bool = True
    #: the post-processing chain, as validated JSON steps
    postprocess: list[dict[str, Any]] = field(default_factory=list)

    def check_available(self, where: str | None = None) -> None:
        """Raise BackendUnavailable when the backend cannot run here (``where`` names the asker, e.g. a scene)."""
        avail = self.backend.availability()
        if not avail.usable:
            reason = avail.reason or "unknown reason"
            raise BackendUnavailable(self.backend.name, f"{reason} (asked by {where})" if where else reason)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-safe data (``kinema generate --plan --json``)."""
        p = self.params
        asked = self.request.recipe() if p.mode in ("keyframes", "references") else {}
        return {
            "backend": self.backend.name,
            "model": p.model,
            "mode": p.mode,
            "prompt": p.prompt,
            "negative_prompt": p.negative_prompt,
            "width": p.width,
            "height": p.height,
            "num_frames": p.num_frames,
            "fps": p.fps,
            "duration": round(p.duration, 6),
            "num_inference_steps": p.num_inference_steps,
            "guidance_scale": p.guidance_scale,
            "seed": p.seed if self.seed_given else None,
            "seed_random": not self.seed_given,
            "format": self.format,
            "output": str(self.output) if self.output is not None else None,
            "options": json_safe(p.options),
            "postprocess": self.postprocess,
            "image": self.request.image_reference(),
            "video": self.request.video,
            "source_video": self.request.source_video,
            "strength": p.strength,
            "last_image": asked.get("last_image"),
            "references": asked.get("references", []),
            "keyframes": [
                {**k, "frame": p.keyframe_frames[i] if i < len(p.keyframe_frames) else None}
                for i, k in enumerate(asked.get("keyframes", []))
            ],
        }

    def __str__(self) -> str:
        d = self.to_dict()
        steps = ", ".join(s["op"] for s in self.postprocess) or "none"
        lines = [
            f"backend      {d['backend']}" + (f" (model {d['model']})" if d["model"] else ""),
            f"mode         {d['mode']} ({_mode_words(self)})",
            f"size         {d['width']}x{d['height']}, {d['num_frames']} frames at {d['fps']:g} fps "
            f"({_seconds(self.params.duration)} s)",
            f"steps        {d['num_inference_steps'] if d['num_inference_steps'] is not None else 'backend default'}",
            f"guidance     {d['guidance_scale'] if d['guidance_scale'] is not None else 'backend default'}",
            f"seed         {'random' if d['seed_random'] else d['seed']}",
            f"format       {d['format']}" + (f" -> {d['output']}" if d["output"] else ""),
            f"postprocess  {steps}",
        ]
        shown = {k: v for k, v in d["options"].items() if not k.startswith("_")}  # the backend's own notes: --json
        if shown:
            lines.append(f"options      {shown}")
        return "\n".join(lines)


def backend_for(request: VideoRequest) -> tuple[BaseBackend, VideoRequest]:
    """The backend that serves ``request``, and the request with ``backend``/``model`` as the reference resolved
    them (``model="wan2.1-t2v-1.3b"`` alone -> diffusers). Refuses an unknown backend or model, naming the field."""
    backend_name, model = split_model_ref(request.model, request.backend)
    if (backend_name, model) != (request.backend, request.model):
        request = request.model_copy(update={"backend": backend_name, "model": model})
    return get_backend(request.backend), request


def plan(
    request: VideoRequest,
    *,
    output: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    check_available: bool = True,
) -> Plan:
    """Check ``request`` against its backend and resolve every parameter; nothing runs.

    Args:
        request: what the user asked for.
        output: where the clip will be saved; its suffix decides the format (``.mp4``, ``.webm``, ``.gif``, or a
            folder for PNG frames) and must agree with ``request.format``.
        seed: the seed to use when the request has none (default: drawn at random); a request's own seed wins.
        check_available: refuse a backend that cannot run here (an API key or an extra missing). Storyboards turn
            it off to name the scene themselves.

    Raises:
        InvalidRequest: naming the field, what was wrong and what is allowed.
        BackendUnavailable: the backend cannot run here, and why.
    """
    backend, request = backend_for(request)
    out_path = Path(output) if output is not None else None
    fmt = output_format(out_path, request.format)
    chain = list(request.postprocess)
    if chain:
        from .media.enhance import check_chain_output

        check_chain_output(chain, fmt)
    _check_mode(backend, request)
    seed_given = request.seed is not None
    chosen = request.seed if request.seed is not None else (seed if seed is not None else secrets.randbelow(2**32))
    params = backend.resolve(request, chosen)
    the_plan = Plan(
        request=request,
        backend=backend,
        params=params,
        format=fmt,
        output=out_path,
        seed_given=seed_given,
        postprocess=chain,
    )
    if check_available:
        the_plan.check_available()
    return the_plan


def backends_supporting(mode: str, references: int = 0, models_of: str | None = None, keyframes: int = 0) -> list[str]:
    """The registered backends with a model that does ``mode`` (with at least ``references`` reference images and
    ``keyframes`` timed keyframes), as "name" or "name (model, ...)" when only some of its models do; ``models_of``
    (the backend being refused) always has its models named, since its default model is not what the request asked
    for."""
    found = []
    for name in backend_names():
        try:
            backend = get_backend(name)
            models: list[str | None] = [None, *backend.models()]
            fits = []
            for model in models:
                caps = backend.capabilities(model)
                if mode in caps.modes and caps.max_references >= references and caps.max_keyframes >= keyframes:
                    fits.append(model)
        except Exception:  # noqa: S112 - a backend that cannot load or describe itself supports nothing here
            continue
        if None in fits and name != models_of:  # the default model does it
            found.append(name)
        elif shown := [m for m in fits if m is not None]:
            found.append(f"{name} ({', '.join(shown[:4])}{', ...' if len(shown) > 4 else ''})")
    return found


def _check_mode(backend: BaseBackend, request: VideoRequest) -> None:
    """Refuse a mode (or a number of references) the backend does not take, naming the backends that do; the
    backend's own resolve() checks the same, without the registry's view."""
    default_model = getattr(backend, "default_model", None)
    model = request.model or (default_model() if default_model else None)
    try:
        caps = backend.capabilities(model)
    except Exception:  # an unknown model: resolve() refuses it, naming the field
        return
    where = f"backend {backend.name!r}" + (f" with model {model!r}" if model else "")
    mode = request.mode
    count = len(request.keyframes)
    if count and (count > caps.max_keyframes or mode not in caps.modes):
        if request.model is None and _another_model_takes(backend, mode, count):
            return  # the backend picks a model that takes them itself
        raise keyframe_refusal(count, where, caps, backends_supporting(mode, models_of=backend.name, keyframes=count))
    if mode not in caps.modes and request.model is None and _another_model_takes(backend, mode):
        return  # the backend picks a model for the mode itself (ModelsLab's default is text-to-video only)
    if mode not in caps.modes:  # other models of this backend may do it (HunyuanVideo does not edit, Wan does)
        raise mode_refusal(mode, where, caps, backends_supporting(mode, models_of=backend.name))
    if len(request.references) > caps.max_references:
        others = backends_supporting(mode, len(request.references), models_of=backend.name)
        raise InvalidRequest(
            "references",
            f"has {len(request.references)} images; {where} takes at most {caps.max_references}",
            value=len(request.references),
            allowed=f"1 to {caps.max_references} images; "
            + (
                f"backends that take {len(request.references)}: {', '.join(others)}"
                if others
                else f"no other installed backend takes {len(request.references)}"
            ),
        )


def _another_model_takes(backend: BaseBackend, mode: str, keyframes: int = 0) -> bool:
    models = getattr(backend, "models", None)
    for name in models() if models else []:
        try:
            caps = backend.capabilities(name)
            if mode in caps.modes and caps.max_keyframes >= keyframes:
                return True
        except Exception:  # a model the backend lists but cannot describe here: not evidence either way
            continue
    return False


def _mode_words(the_plan: Plan) -> str:
    """The mode's inputs for people: the strength of an edit, which keyframes, how many references."""
    p, r = the_plan.params, the_plan.request
    words = MODE_NAMES.get(p.mode, p.mode).split(" (")[0]
    if p.mode == "edit":  # an engine without a strength setting records none
        return f"{words} of {r.source_video}" + (f", strength {p.strength:g}" if p.strength is not None else "")
    if p.mode == "keyframes":
        timed = ", ".join(f"{t:g}s (frame {f})" for t, f in zip(p.keyframe_times, p.keyframe_frames, strict=False))
        shown = (("first", r.image), (f"at {timed}", timed or None), ("last", r.last_image))
        return f"{'keyframes' if timed else words}: " + " and ".join(k for k, v in shown if v is not None)
    if p.mode == "references":
        return f"{words}: {len(r.references)}"
    return words


def _seconds(value: float) -> str:
    """A length for people: two decimals at most, no trailing zeros (16 frames at 24 fps is "0.67", not
    "0.666667"); the JSON plan keeps the exact number.

    >>> _seconds(16 / 24), _seconds(2.0), _seconds(3.5)
    ('0.67', '2', '3.5')
    """
    return f"{round(value, 2):g}"


def json_safe(value: Any) -> Any:
    """``value`` with anything that is not JSON (a path, an array) as its text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
