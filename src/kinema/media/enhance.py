"""Cleaning up and enlarging what a model produced: upscale, interpolate, denoise, sharpen, trim, loop, soundtrack.

Every operation takes and returns a :class:`~kinema.Video` and runs on the ffmpeg binary that imageio-ffmpeg ships
(frames travel over pipes, so nothing is re-encoded between steps):

- upscale: Lanczos (``scale=...:flags=lanczos``); with ``model=`` a local super-resolution checkpoint (ESRGAN family
  and the other architectures spandrel loads) runs instead; spandrel is an optional install.
- interpolate / fps: motion-compensated interpolation (``minterpolate=mi_mode=mci``); the duration is kept.
- denoise: non-local means (``nlmeans``) or the faster ``hqdn3d``; sharpen: ``unsharp``.

The same operations form a *post-processing chain*: a list of steps (``{"op": "upscale", "factor": 2}``...),
validated by :func:`validate_chain` with errors that name ``postprocess[i].<field>``, applied in order by
:func:`apply_chain`; the ``audio`` step needs the saved file and is applied by :func:`apply_file_steps`.

>>> import numpy as np
>>> from kinema import Video
>>> clip = Video(np.zeros((16, 32, 32, 3), np.uint8), fps=8)
>>> apply_chain(clip, [{"op": "upscale", "factor": 2}, {"op": "interpolate", "factor": 2}])
Video(frames=32, size=64x64, fps=16)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import InvalidRequest, MissingExtra
from ..video import Video
from . import edit
from .ffmpeg import filter_frames

__all__ = [
    "OPS",
    "PostStep",
    "validate_chain",
    "check_chain_output",
    "chain_to_json",
    "apply_chain",
    "apply_file_steps",
    "process_file",
    "upscale",
    "interpolate",
    "change_fps",
    "denoise",
    "sharpen",
]

OPS = ("upscale", "interpolate", "fps", "denoise", "sharpen", "audio", "loop", "trim")
_MAX_SIDE = 8192
_MAX_FPS = 240.0
_MI_MODES = ("mci", "blend", "dup")
_DENOISERS = ("nlmeans", "hqdn3d")


# -- the operations ------------------------------------------------------------------------------------------------
def upscale(video: Video, factor: float = 2.0, *, model: str | os.PathLike[str] | None = None) -> Video:
    """Enlarge by ``factor`` with Lanczos, or with a local super-resolution model file (``model=``, via spandrel)."""
    if not (math.isfinite(factor) and 1 <= factor <= 8):
        raise InvalidRequest("upscale.factor", f"must be between 1 and 8, got {factor:g}", value=factor)
    width, height = round(video.width * factor), round(video.height * factor)
    if max(width, height) > _MAX_SIDE:
        raise InvalidRequest(
            "upscale.factor",
            f"{factor:g}x makes {width}x{height}, larger than {_MAX_SIDE} pixels per side",
            value=factor,
        )
    if model is not None:
        frames = _upscale_model(video.frames, Path(model))
        # the network's own scale may differ from the one asked: Lanczos the rest of the way
        if frames.shape[1:3] != (height, width):
            frames = filter_frames(
                frames, video.fps, f"scale={width}:{height}:flags=lanczos", out_size=(width, height)
            )
    elif (width, height) == (video.width, video.height):
        return Video(video.frames.copy(), fps=video.fps, metadata=dict(video.metadata))
    else:
        frames = filter_frames(
            video.frames, video.fps, f"scale={width}:{height}:flags=lanczos", out_size=(width, height)
        )
    return Video(frames, fps=video.fps, metadata=dict(video.metadata))


def _require_spandrel() -> Any:
    try:
        import spandrel  # noqa: F401 - spandrel imports torchvision, which is what is usually missing

        return spandrel
    except ImportError as exc:
        error = MissingExtra("workflows", "spandrel", feature="AI upscaling (--upscale with a model file)")
        missing = getattr(exc, "name", None) or "spandrel"
        # spandrel is not in an extra on purpose: it pulls torchvision, which must match the installed torch build
        error.message = (
            f"AI upscaling (an upscale model file) needs the optional packages 'spandrel' and "
            f"'torchvision' ({missing!r} is not installed); install them with: pip install spandrel "
            "torchvision (torchvision must match your torch build), or leave out the model file to "
            "upscale with Lanczos"
        )
        error.args = (error.message,)
        raise error from None


def _upscale_model(frames: np.ndarray, path: Path) -> np.ndarray:
    if not path.is_file():
        raise InvalidRequest(
            "upscale.model",
            f"file not found: {path}",
            value=str(path),
            allowed="a local .pth or .safetensors super-resolution checkpoint",
        )
    spandrel = _require_spandrel()
    import torch

    try:
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
    except Exception as exc:  # spandrel raises its own types for unknown architectures
        raise InvalidRequest(
            "upscale.model", f"{path} is not a model spandrel can load ({exc})", value=str(path)
        ) from None
    descriptor.model.eval()
    out = []
    with torch.inference_mode():
        for frame in frames:
            x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0
            y = descriptor(x)[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            out.append(y)
    return np.stack(out)


def change_fps(video: Video, fps: float, *, mode: str = "mci") -> Video:
    """The clip at ``fps`` frames per second with motion-compensated interpolation; its duration stays the same."""
    if not (math.isfinite(fps) and 1 <= fps <= _MAX_FPS):
        raise InvalidRequest("fps", f"must be between 1 and {_MAX_FPS:g}, got {fps:g}", value=fps)
    if mode not in _MI_MODES:
        raise InvalidRequest(
            "interpolate.mode", f"{mode!r} is not an interpolation mode", allowed=", ".join(_MI_MODES)
        )
    if abs(fps - video.fps) < 1e-6:
        return video
    target = max(1, round(video.num_frames * fps / video.fps))
    if video.num_frames < 2:
        frames = np.repeat(video.frames, target, axis=0)
    else:
        vf = f"minterpolate=fps={fps:g}:mi_mode={mode}" + (":mc_mode=aobmc:vsbmc=1" if mode == "mci" else "")
        frames = filter_frames(video.frames, video.fps, vf)
    # minterpolate ends on the last input frame; hold it so frames / fps equals the input's duration exactly
    if frames.shape[0] < target:
        frames = np.concatenate([frames, np.repeat(frames[-1:], target - frames.shape[0], axis=0)])
    return Video(np.ascontiguousarray(frames[:target]), fps=fps, metadata=dict(video.metadata))


def interpolate(video: Video, factor: float = 2.0, *, mode: str = "mci") -> Video:
    """``factor`` times as many frames per second (motion-compensated), same duration."""
    if not (math.isfinite(factor) and 1 <= factor <= 16):
        raise InvalidRequest("interpolate.factor", f"must be between 1 and 16, got {factor:g}", value=factor)
    if video.fps * factor > _MAX_FPS:
        raise InvalidRequest(
            "interpolate.factor", f"{factor:g}x of {video.fps:g} fps is more than {_MAX_FPS:g} fps", value=factor
        )
    return change_fps(video, video.fps * factor, mode=mode)


def denoise(video: Video, strength: float = 1.0, *, method: str = "nlmeans") -> Video:
    """Remove noise. ``nlmeans`` (default): non-local means, the better result; ``hqdn3d``: a fast spatio-temporal
    filter for large clips. ``strength`` 1 is a moderate setting, 0 a no-op, up to 10."""
    if not (math.isfinite(strength) and 0 <= strength <= 10):
        raise InvalidRequest("denoise.strength", f"must be between 0 and 10, got {strength:g}", value=strength)
    if method not in _DENOISERS:
        raise InvalidRequest(
            "denoise.method", f"{method!r} is not a denoiser", value=method, allowed=", ".join(_DENOISERS)
        )
    if strength == 0:
        return video
    s = strength
    if method == "nlmeans":
        vf = f"nlmeans=s={min(30.0, max(1.0, 10 * s)):.3f}:p=7:r=15"
    else:
        vf = f"hqdn3d={4 * s:.3f}:{3 * s:.3f}:{6 * s:.3f}:{4.5 * s:.3f}"
    return Video(filter_frames(video.frames, video.fps, vf), fps=video.fps, metadata=dict(video.metadata))


def sharpen(video: Video, amount: float = 1.0) -> Video:
    """Unsharp-mask sharpening of the luma and chroma (5x5 kernel); ``amount`` 0 is a no-op, 1 is moderate."""
    if not (math.isfinite(amount) and 0 <= amount <= 5):
        raise InvalidRequest("sharpen.amount", f"must be between 0 and 5, got {amount:g}", value=amount)
    if amount == 0:
        return video
    vf = f"unsharp=5:5:{amount:.3f}:5:5:{amount / 2:.3f}"
    return Video(filter_frames(video.frames, video.fps, vf), fps=video.fps, metadata=dict(video.metadata))


# -- the chain -------------------------------------------------------------------------------------------------------
class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools(cls, value: Any, info: Any) -> Any:
        numeric = {
            "factor",
            "fps",
            "strength",
            "amount",
            "count",
            "overlap",
            "start",
            "end",
            "volume",
            "fade_in",
            "fade_out",
        }
        if info.field_name in numeric and isinstance(value, bool):
            raise ValueError(f"must be a number, not {value!r}")
        return value


class UpscaleStep(_Step):
    op: Literal["upscale"] = "upscale"
    factor: float = 2.0
    #: a local super-resolution checkpoint (runs through spandrel); None: Lanczos
    model: str | None = None

    @field_validator("factor")
    @classmethod
    def _factor(cls, v: float) -> float:
        if not (math.isfinite(v) and 1 <= v <= 8):
            raise ValueError(f"must be between 1 and 8, got {v:g}")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"file not found: {v}")
        return v


class InterpolateStep(_Step):
    op: Literal["interpolate"] = "interpolate"
    factor: float = 2.0
    mode: Literal["mci", "blend", "dup"] = "mci"

    @field_validator("factor")
    @classmethod
    def _factor(cls, v: float) -> float:
        if not (math.isfinite(v) and 1 <= v <= 16):
            raise ValueError(f"must be between 1 and 16, got {v:g}")
        return v


class FpsStep(_Step):
    op: Literal["fps"] = "fps"
    fps: float
    mode: Literal["mci", "blend", "dup"] = "mci"

    @field_validator("fps")
    @classmethod
    def _fps(cls, v: float) -> float:
        if not (math.isfinite(v) and 1 <= v <= _MAX_FPS):
            raise ValueError(f"must be between 1 and {_MAX_FPS:g}, got {v:g}")
        return v


class DenoiseStep(_Step):
    op: Literal["denoise"] = "denoise"
    strength: float = 1.0
    method: Literal["nlmeans", "hqdn3d"] = "nlmeans"

    @field_validator("strength")
    @classmethod
    def _strength(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 <= v <= 10):
            raise ValueError(f"must be between 0 and 10, got {v:g}")
        return v


class SharpenStep(_Step):
    op: Literal["sharpen"] = "sharpen"
    amount: float = 1.0

    @field_validator("amount")
    @classmethod
    def _amount(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 <= v <= 5):
            raise ValueError(f"must be between 0 and 5, got {v:g}")
        return v


class SoundtrackFields(BaseModel):
    """Where a soundtrack starts, how loud it is and how it fades: shared by the ``audio`` step and storyboards."""

    start: float = 0.0
    volume: float = 1.0
    fade_in: float = 0.0
    fade_out: float = 0.0

    @field_validator("start", "fade_in", "fade_out")
    @classmethod
    def _seconds(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 <= v <= 3600):
            raise ValueError(f"must be between 0 and 3600 seconds, got {v:g}")
        return v

    @field_validator("volume")
    @classmethod
    def _volume(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 <= v <= 10):
            raise ValueError(f"must be between 0 and 10, got {v:g}")
        return v


class AudioStep(_Step, SoundtrackFields):
    op: Literal["audio"] = "audio"
    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not Path(v).is_file():
            raise ValueError(f"file not found: {v}")
        return v


class LoopStep(_Step):
    op: Literal["loop"] = "loop"
    mode: Literal["crossfade", "pingpong", "repeat"] = "crossfade"
    count: int = 2
    overlap: float | None = None

    @field_validator("count")
    @classmethod
    def _count(cls, v: int) -> int:
        if not 1 <= v <= 100:
            raise ValueError(f"must be between 1 and 100, got {v}")
        return v


class TrimStep(_Step):
    op: Literal["trim"] = "trim"
    start: float = 0.0
    end: float | None = None

    @field_validator("start")
    @classmethod
    def _start(cls, v: float) -> float:
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"must be 0 or more seconds, got {v:g}")
        return v


PostStep = UpscaleStep | InterpolateStep | FpsStep | DenoiseStep | SharpenStep | AudioStep | LoopStep | TrimStep
_STEP_TYPES: dict[str, type[_Step]] = {
    "upscale": UpscaleStep,
    "interpolate": InterpolateStep,
    "fps": FpsStep,
    "denoise": DenoiseStep,
    "sharpen": SharpenStep,
    "audio": AudioStep,
    "loop": LoopStep,
    "trim": TrimStep,
}
#: the parameter a shorthand "op:value" sets
_SHORTHAND = {
    "upscale": "factor",
    "interpolate": "factor",
    "fps": "fps",
    "denoise": "strength",
    "sharpen": "amount",
    "audio": "path",
    "loop": "mode",
    "trim": None,
}


def _step_from_text(text: str, where: str) -> dict[str, Any]:
    op, _, value = text.partition(":")
    op = op.strip()
    if op not in _STEP_TYPES:
        raise InvalidRequest(
            f"{where}.op", f"{op!r} is not a post-processing operation", value=op, allowed=", ".join(OPS)
        )
    if not value:
        return {"op": op}
    if op == "trim":
        start, end = edit.parse_trim(value)
        return {"op": op, "start": start, "end": end}
    key = _SHORTHAND[op]
    parsed: Any = value
    if key not in ("path", "mode"):
        try:
            parsed = float(value)
        except ValueError:
            raise InvalidRequest(f"{where}.{key}", f"{value!r} is not a number", value=value) from None
    return {"op": op, str(key): parsed}


def validate_chain(steps: Any, field: str = "postprocess") -> list[PostStep]:
    """Check a post-processing chain before anything runs; errors name ``postprocess[i].<field>``.

    Each step is a mapping ``{"op": ..., <params>}`` (or ``{"op": ..., "params": {...}}``), a validated step, or a
    short text ``"op"`` / ``"op:value"`` (``"upscale:2"``, ``"fps:24"``, ``"trim:0.5:2"``, ``"audio:music.wav"``).
    """
    if steps is None:
        return []
    if isinstance(steps, str | dict) or not isinstance(steps, Sequence):
        raise InvalidRequest(
            field,
            f"must be a list of steps, not {type(steps).__name__}",
            allowed=f"a list of {{'op': ...}} with op one of {', '.join(OPS)}",
        )
    out: list[PostStep] = []
    for i, raw in enumerate(steps):
        where = f"{field}[{i}]"
        if isinstance(raw, _Step):
            out.append(raw)  # type: ignore[arg-type]
            continue
        if isinstance(raw, str):
            raw = _step_from_text(raw, where)
        if not isinstance(raw, dict):
            raise InvalidRequest(where, f"must be a mapping with an 'op', not {type(raw).__name__}")
        data = dict(raw)
        if "params" in data:
            params = data.pop("params")
            if not isinstance(params, dict):
                raise InvalidRequest(f"{where}.params", f"must be a mapping, not {type(params).__name__}")
            data.update(params)
        op = data.get("op")
        if op is None:
            raise InvalidRequest(f"{where}.op", "is required", allowed=", ".join(OPS))
        if op not in _STEP_TYPES:
            raise InvalidRequest(
                f"{where}.op", f"{op!r} is not a post-processing operation", value=op, allowed=", ".join(OPS)
            )
        model = _STEP_TYPES[op]
        try:
            out.append(model(**data))  # type: ignore[arg-type]
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first.get("loc", ())) or "op"
            msg = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
            if first.get("type") == "extra_forbidden":
                msg = (
                    f"is not a parameter of {op!r} (allowed: {', '.join(k for k in model.model_fields if k != 'op')})"
                )
            elif first.get("type") == "missing":
                msg = "is required"
            elif first.get("type") == "literal_error":  # pydantic's "Input should be 'a' or 'b'" reads as a bug
                field_info = model.model_fields.get(str(first.get("loc", ("",))[0]))
                choices = get_args(field_info.annotation) if field_info is not None else ()
                raise InvalidRequest(
                    f"{where}.{name}",
                    f"{first.get('input')!r} is not one of the choices",
                    value=first.get("input"),
                    allowed=", ".join(map(str, choices)),
                ) from None
            elif first.get("type") not in ("value_error",):
                msg = f"{msg} (got {first.get('input')!r})"
            raise InvalidRequest(f"{where}.{name}", msg, value=first.get("input")) from None
    return out


def check_chain_output(steps: Any, fmt: str) -> None:
    """Refuse, before anything is generated, a chain the output cannot hold (a soundtrack on a GIF or PNG frames)."""
    for i, step in enumerate(validate_chain(steps)):
        if isinstance(step, AudioStep) and fmt not in ("mp4", "webm"):
            raise InvalidRequest(
                f"postprocess[{i}].path",
                f"a {fmt} output cannot carry sound",
                value=step.path,
                allowed="an .mp4 or .webm output",
            )


def chain_to_json(steps: Sequence[PostStep]) -> list[dict[str, Any]]:
    """The chain as plain JSON (what a recipe stores)."""
    return [s.model_dump() for s in steps]


def apply_chain(video: Video, steps: Any) -> Video:
    """Apply every frame step of a chain in order and return the new clip; ``audio`` steps are left for
    :func:`apply_file_steps` (sound lives in the file). The chain is recorded in ``metadata["postprocess"]``."""
    chain = validate_chain(steps)
    out = video
    for i, step in enumerate(chain):
        try:
            out = _apply_one(out, step)
        except InvalidRequest as exc:  # e.g. a trim outside this clip: name the step
            sub = exc.field.split(".", 1)[1] if "." in exc.field else exc.field
            raise InvalidRequest(f"postprocess[{i}].{sub}", exc.message.split(": ", 1)[-1], value=exc.value) from None
    if chain:
        out.metadata = {
            **video.metadata,
            "postprocess": list(video.metadata.get("postprocess") or []) + chain_to_json(chain),
        }
    return out


def _apply_one(video: Video, step: PostStep) -> Video:
    if isinstance(step, UpscaleStep):
        return upscale(video, step.factor, model=step.model)
    if isinstance(step, InterpolateStep):
        return interpolate(video, step.factor, mode=step.mode)
    if isinstance(step, FpsStep):
        return change_fps(video, step.fps, mode=step.mode)
    if isinstance(step, DenoiseStep):
        return denoise(video, step.strength, method=step.method)
    if isinstance(step, SharpenStep):
        return sharpen(video, step.amount)
    if isinstance(step, LoopStep):
        return edit.loop(video, step.mode, count=step.count, overlap=step.overlap)
    if isinstance(step, TrimStep):
        return edit.trim(video, step.start, step.end)
    return video  # audio: applied to the file


def apply_file_steps(path: str | os.PathLike[str], steps: Any) -> Path:
    """The steps that act on the saved file (today: ``audio``, muxed and trimmed to the video), in place."""
    p = Path(path)
    for step in validate_chain(steps):
        if isinstance(step, AudioStep):
            edit.mux_audio(
                p, step.path, start=step.start, volume=step.volume, fade_in=step.fade_in, fade_out=step.fade_out
            )
    return p


def process_file(
    input: str | os.PathLike[str], output: str | os.PathLike[str], steps: Any, *, keep_audio: bool = True
) -> Path:
    """Read a clip, run the chain, save it (recipe kept, chain appended) and mux its audio.

    With ``keep_audio`` and no ``audio`` step, the input's own soundtrack (if any) is carried over, shifted by a
    leading trim and cut to the new length.
    """
    chain = validate_chain(steps)
    src = Path(input)
    video = Video.open(src)
    result = apply_chain(video, chain)
    dst = result.save(output)
    if any(isinstance(s, AudioStep) for s in chain):
        apply_file_steps(dst, chain)
    elif keep_audio and edit.has_audio(src) and dst.suffix.lower() in (".mp4", ".mov", ".m4v", ".webm"):
        start = sum(s.start for s in chain if isinstance(s, TrimStep))
        edit.mux_audio(dst, src, start=start)
    return dst
