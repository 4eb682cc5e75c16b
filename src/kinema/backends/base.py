"""The Backend protocol and Capabilities.

A backend turns resolved :class:`GenerationParams` into a :class:`~kinema.Video`. Before anything runs, the engine
checks the request against the backend's :class:`Capabilities` (modes, sizes, frame counts, fps, durations, steps),
so a request the engine would refuse never costs GPU time or money; the error names the field, the value given and
what this backend allows.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import Cancelled, InvalidRequest, MissingExtra
from ..progress import ProgressTracker
from ..request import ASPECT_RATIOS, RESOLUTIONS, VideoRequest

__all__ = [
    "Availability",
    "Backend",
    "BaseBackend",
    "CancelToken",
    "Capabilities",
    "GenerationContext",
    "GenerationParams",
    "BackendOutput",
    "MODE_FIELDS",
    "MODE_NAMES",
    "mode_refusal",
    "keyframe_refusal",
    "check_option_names",
    "require_module",
]


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, exactly why (and how to fix it)."""

    usable: bool
    reason: str | None = None

    @classmethod
    def ok(cls) -> Availability:
        return cls(True, None)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)


def require_module(module: str, extra: str, feature: str | None = None) -> Any:
    """Import an optional dependency, or raise MissingExtra naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(extra, module, feature=feature) from None


def check_option_names(backend: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse an option the backend does not take: InvalidRequest naming ``options.<key>`` and the ones it takes."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidRequest(
            f"options.{unknown[0]}",
            f"is not an option of backend {backend!r}",
            value=unknown[0],
            allowed=", ".join(allowed),
        )


def module_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


#: every mode in words, with the request field that asks for it
MODE_NAMES: dict[str, str] = {
    "t2v": "text-to-video",
    "i2v": "image-to-video (image)",
    "extend": "video extension (video)",
    "edit": "video editing (source_video)",
    "keyframes": "first/last-frame keyframes (last_image)",
    "references": "reference images (references)",
}
#: the field whose presence asks for a mode (t2v: the image a backend doing image-to-video only needs)
MODE_FIELDS: dict[str, str] = {
    "t2v": "image",
    "i2v": "image",
    "extend": "video",
    "edit": "source_video",
    "keyframes": "last_image",
    "references": "references",
}


def mode_refusal(mode: str, where: str, caps: Capabilities, others: list[str] | None = None) -> InvalidRequest:
    """The error for a mode ``where`` (a backend, maybe with its model) does not offer; ``others`` names the backends
    that do (the planner looks them up in the registry), so the user learns where to go."""
    allowed = ", ".join(MODE_NAMES.get(m, m) for m in caps.modes)
    if others is not None:
        elsewhere = f"backends that do: {', '.join(others)}" if others else "no installed backend does yet"
        allowed = f"{allowed}; {elsewhere}"
    if mode == "t2v":
        return InvalidRequest("image", f"{where} needs an input image (it does image-to-video only)", allowed=allowed)
    return InvalidRequest(
        MODE_FIELDS.get(mode, "request"), f"{where} does not support {MODE_NAMES.get(mode, mode)}", allowed=allowed
    )


def keyframe_refusal(count: int, where: str, caps: Capabilities, others: list[str] | None = None) -> InvalidRequest:
    """The error for ``count`` timed keyframes ``where`` does not take (none, or fewer); ``others`` names the
    backends that take that many (the planner looks them up in the registry)."""
    if caps.max_keyframes <= 0:
        message = f"{where} does not take keyframes at given times"
        if "keyframes" in caps.modes:
            message += " (only a first and/or last image: image, last_image)"
        allowed = "leave keyframes out"
    else:
        message = f"has {count} images; {where} takes at most {caps.max_keyframes}"
        allowed = f"1 to {caps.max_keyframes} keyframes"
    if others is not None:
        allowed += (
            f"; backends that take {count}: {', '.join(others)}" if others else f"; no installed backend takes {count}"
        )
    return InvalidRequest("keyframes", message, value=count, allowed=allowed)


@dataclass(frozen=True)
class Capabilities:
    """What a backend (or one of its models) accepts. ``None`` means "no limit of this kind".

    Sizes: either ``sizes`` (an explicit list of (width, height)) or a range with ``size_multiple``. Frame counts:
    ``min_frames``..``max_frames`` where ``(n - frame_offset) % frame_step == 0`` (Wan's 4k+1 is step 4, offset 1),
    or an explicit ``durations`` list in seconds for APIs that only take fixed lengths.

    Modes beyond text-to-video (``kinema.request.MODES``) have their own limits: ``max_references`` images for
    "references", at most ``edit_max_frames`` frames for "edit" and ``keyframes_max_frames`` for "keyframes"
    (None: the general frame rule alone), and ``default_strength`` for an edit that gives none (None: the engine has
    no strength setting, so an explicit one is refused rather than silently dropped, and none is recorded).
    ``max_keyframes`` is how many timed keyframes (images at given times, the request's ``keyframes``) it takes
    besides a first and last image (0: none; "keyframes" must be in ``modes`` too).
    """

    modes: tuple[str, ...] = ("t2v",)
    max_references: int = 0
    max_keyframes: int = 0
    edit_max_frames: int | None = None
    keyframes_max_frames: int | None = None
    default_strength: float | None = 0.6
    default_size: tuple[int, int] = (64, 64)
    sizes: tuple[tuple[int, int], ...] | None = None
    size_multiple: int = 1
    min_size: int = 8
    max_size: int = 4096
    aspect_ratios: tuple[str, ...] | None = None
    default_frames: int = 16
    min_frames: int = 1
    max_frames: int = 10_000
    frame_step: int = 1
    frame_offset: int = 0
    default_fps: float = 8.0
    fps: tuple[float, ...] | None = None
    durations: tuple[float, ...] | None = None
    default_steps: int | None = None
    max_steps: int = 1000
    default_guidance: float | None = None
    max_guidance: float = 100.0
    negative_prompt: bool = True
    seed: bool = True
    max_prompt_chars: int = 5000
    formats: tuple[str, ...] = ("mp4", "webm", "gif", "png")
    notes: str = ""

    def allowed_frames(self, count: int = 3) -> list[int]:
        """The first ``count`` frame counts this rule allows, smallest first."""
        k = max(0, -(-(self.min_frames - self.frame_offset) // self.frame_step))
        first = k * self.frame_step + self.frame_offset
        return [n for n in range(first, first + count * self.frame_step, self.frame_step) if n <= self.max_frames]

    def frame_rule(self) -> str:
        """The frame counts allowed, as examples and the rule stated ("12k+4" alone reads as a typo to most users).

        >>> Capabilities(min_frames=16, max_frames=160, frame_step=12, frame_offset=4).frame_rule()
        '16, 28, 40, ... up to 160 (12k+4: a multiple of 12, plus 4)'
        """
        if self.frame_step == 1:
            return f"{self.min_frames} to {self.max_frames}"
        shown = self.allowed_frames()
        last = (self.max_frames - self.frame_offset) // self.frame_step * self.frame_step + self.frame_offset
        if shown and last > shown[-1]:
            examples = f"{', '.join(map(str, shown))}, ... up to {last}"
        else:
            examples = ", ".join(map(str, shown))
        if self.frame_offset:
            rule = f"{self.frame_step}k+{self.frame_offset}: a multiple of {self.frame_step}, plus {self.frame_offset}"
        else:
            rule = f"a multiple of {self.frame_step}"
        return f"{examples} ({rule})"

    def size_rule(self) -> str:
        if self.sizes:
            return ", ".join(f"{w}x{h}" for w, h in self.sizes)
        rule = f"{self.min_size} to {self.max_size} pixels per side"
        if self.size_multiple > 1:
            rule = f"multiples of {self.size_multiple}, " + rule
        return rule

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["frame_rule"] = self.frame_rule()
        data["size_rule"] = self.size_rule()
        return data


@dataclass
class GenerationParams:
    """A request after the engine has resolved defaults and checked it against the backend's Capabilities."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    num_frames: int
    fps: float
    num_inference_steps: int | None
    guidance_scale: float | None
    seed: int
    mode: str
    backend: str
    model: str | None = None
    image: np.ndarray | None = None  # (H, W, 3) uint8, image-to-video
    image_source: Any = None  # the request's image as given (path, URL, bytes...), for providers that upload it
    video: np.ndarray | None = None  # (F, H, W, 3) uint8, the clip to extend
    video_fps: float | None = None
    #: edit: how far from the source the result may go (0 keeps it, 1 ignores it)
    strength: float | None = None
    source_video: np.ndarray | None = None  # (F, H, W, 3) uint8, the clip to edit
    source_fps: float | None = None
    source_video_path: str | None = None  # the request's source_video, for providers that upload it
    last_image: np.ndarray | None = None  # (H, W, 3) uint8, the frame the clip ends on (keyframes)
    last_image_source: Any = None
    references: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 each
    reference_sources: list[Any] = field(default_factory=list)
    #: timed keyframes: the frame index each lands on (the nearest to its time at ``fps``; never 0 with ``image``
    #: nor the last with ``last_image``), increasing, with the time asked, the image as given and (filled by the
    #: engine before generate) the image as (H, W, 3) uint8
    keyframe_frames: list[int] = field(default_factory=list)
    keyframe_times: list[float] = field(default_factory=list)
    keyframe_sources: list[Any] = field(default_factory=list)
    keyframes: list[np.ndarray] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    aspect_ratio: str | None = None
    #: inputs a provider backend copied to the provider before its paid submit (Runway's ``runway://`` URI of a
    #: large clip), by the name its submit sends them under; filled by ``RemoteBackend.prepare``, never recorded
    uploads: dict[str, str] = field(default_factory=dict)
    #: what resolving changed from the request (a duration rounded to the frame rule...), for front ends to show
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def known_frames(self) -> list[tuple[int, np.ndarray]]:
        """A keyframes clip's given frames in order, as (frame index, image): ``image`` at 0, the timed keyframes at
        their frames, ``last_image`` at the last (resolve() refused two on one frame)."""
        placed = [(0, self.image)] if self.image is not None else []
        placed += list(zip(self.keyframe_frames, self.keyframes, strict=True))
        if self.last_image is not None:
            placed.append((self.num_frames - 1, self.last_image))
        return placed

    def with_(self, **changes: Any) -> GenerationParams:
        return replace(self, **changes)


@dataclass
class BackendOutput:
    """What a backend returns: the clip plus whatever it knows about cost and the provider's task."""

    video: Any  # kinema.Video
    cost: dict[str, Any] | None = None
    provider_task_id: str | None = None
    model_revision: str | None = None
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class CancelToken:
    """Set by a caller (Ctrl-C, the job service's cancel endpoint); checked by backends between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        #: True when the caller stops only its own wait (a worker shutting down, a lease lost to another worker):
        #: a remote backend then leaves the provider's task running, to be resumed by its id, instead of cancelling it
        self.keep_provider_task = False

    def cancel(self, *, keep_provider_task: bool = False) -> None:
        """Stop the generation at its next step. A remote task is cancelled at the provider too (the bill stops),
        unless ``keep_provider_task``."""
        if keep_provider_task and not self._event.is_set():
            self.keep_provider_task = True
        elif not keep_provider_task:
            self.keep_provider_task = False  # a user's cancel wins over a shutdown's
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("the generation was cancelled")


@dataclass
class GenerationContext:
    """What the engine hands a backend besides the parameters: progress, cancellation and the caller's hooks.

    ``on_task_id`` is called by remote backends with the provider's task id *before* polling starts, so the caller
    (the CLI's resume file, the job service's store) can record it and resume the same paid generation after a
    crash. ``resume_task_id`` is that id handed back on a retry.
    """

    progress: ProgressTracker
    cancel: CancelToken = field(default_factory=CancelToken)
    on_task_id: Callable[[str, dict[str, Any]], None] | None = None
    resume_task_id: str | None = None
    resume_info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What every engine (built-in, diffusers, each provider, third parties) implements."""

    name: str
    description: str

    def availability(self) -> Availability: ...

    def capabilities(self, model: str | None = None) -> Capabilities: ...

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput: ...


class BaseBackend:
    """Defaults and the shared request checks; backends subclass it and override what differs."""

    name = "base"
    description = ""
    #: the environment variables holding this backend's credentials (all must be set)
    env_keys: tuple[str, ...] = ()
    #: optional modules this backend needs, with the extra that installs them
    requires: tuple[tuple[str, str], ...] = ()

    def availability(self) -> Availability:
        for module, extra in self.requires:
            if not module_available(module):
                return Availability.no(f"extra '{extra}' not installed (pip install 'kinema[{extra}]')")
        missing = [k for k in self.env_keys if not os.environ.get(k)]
        if missing:
            return Availability.no(f"API key missing: set {' and '.join(missing)}")
        return Availability.ok()

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities()

    def models(self) -> list[str]:
        return []

    def default_model(self) -> str | None:
        return None

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- the checks every backend gets --------------------------------------------------------------------------
    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        """Fill defaults from Capabilities and refuse what this backend cannot do, naming field and allowed values."""
        # default_model() is BaseBackend's; a backend that only implements the Backend protocol has none
        default_model = getattr(self, "default_model", None)
        model = request.model or (default_model() if default_model else None)
        caps = self.capabilities(model)
        where = f"backend {self.name!r}" + (f" with model {model!r}" if model else "")
        mode = request.mode
        if len(request.keyframes) > caps.max_keyframes or (request.keyframes and mode not in caps.modes):
            raise keyframe_refusal(len(request.keyframes), where, caps)
        if mode not in caps.modes:
            raise mode_refusal(mode, where, caps)
        if len(request.references) > caps.max_references:
            raise InvalidRequest(
                "references",
                f"has {len(request.references)} images; {where} takes at most {caps.max_references}",
                value=len(request.references),
                allowed=f"1 to {caps.max_references} images",
            )
        if len(request.prompt) > caps.max_prompt_chars:
            raise InvalidRequest(
                "prompt",
                f"is {len(request.prompt)} characters; {where} accepts at most {caps.max_prompt_chars}",
                value=len(request.prompt),
            )
        if request.negative_prompt and not caps.negative_prompt:
            raise InvalidRequest("negative_prompt", f"{where} does not take a negative prompt")
        if request.format and request.format not in caps.formats:
            raise InvalidRequest(
                "format", f"{request.format!r} is not offered by {where}", allowed=", ".join(caps.formats)
            )

        # fps first: duration <-> frames conversion needs it
        fps = request.fps if request.fps is not None else caps.default_fps
        if caps.fps is not None and fps not in caps.fps:
            raise InvalidRequest(
                "fps", f"{fps:g} is not offered by {where}", value=fps, allowed=", ".join(f"{v:g}" for v in caps.fps)
            )

        width, height, ratio = BaseBackend._resolve_size(request, caps, where)
        num_frames = BaseBackend._resolve_frames(request, caps, fps, where)
        limit = {"edit": caps.edit_max_frames, "keyframes": caps.keyframes_max_frames}.get(mode)
        if limit is not None and num_frames > limit:
            field_name = "duration" if request.duration is not None else "num_frames"
            raise InvalidRequest(
                field_name,
                f"{num_frames} frames is more than {where} makes in {MODE_NAMES[mode]}",
                value=num_frames,
                allowed=f"at most {limit} frames ({limit / fps:.3g}s at {fps:g} fps)",
            )
        strength = None
        if mode == "edit" and caps.default_strength is None and request.strength is not None:
            raise InvalidRequest(
                "strength",
                f"{where} has no strength setting (how far the edit goes follows the prompt)",
                value=request.strength,
                allowed="leave strength out",
            )
        if mode == "edit":
            strength = request.strength if request.strength is not None else caps.default_strength
        warnings = BaseBackend._length_warnings(request, caps, fps, num_frames, where)
        frames_at = BaseBackend._keyframe_frames(request, caps, fps, num_frames, where, warnings)

        steps = request.num_inference_steps if request.num_inference_steps is not None else caps.default_steps
        if steps is not None and steps > caps.max_steps:
            raise InvalidRequest(
                "num_inference_steps",
                f"{steps} is more than {where} allows",
                value=steps,
                allowed=f"1 to {caps.max_steps}",
            )
        guidance = request.guidance_scale if request.guidance_scale is not None else caps.default_guidance
        if guidance is not None and guidance > caps.max_guidance:
            raise InvalidRequest(
                "guidance_scale",
                f"{guidance:g} is more than {where} allows",
                value=guidance,
                allowed=f"0 to {caps.max_guidance:g}",
            )

        return GenerationParams(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            width=width,
            height=height,
            num_frames=num_frames,
            fps=fps,
            num_inference_steps=steps,
            guidance_scale=guidance,
            seed=seed,
            mode=mode,
            backend=self.name,
            model=model,
            options=dict(request.options),
            aspect_ratio=ratio,
            image_source=request.image,
            warnings=warnings,
            strength=strength,
            source_video_path=request.source_video,
            last_image_source=request.last_image,
            reference_sources=list(request.references),
            keyframe_frames=frames_at,
            keyframe_times=[k.time for k in request.keyframes],
            keyframe_sources=[k.image for k in request.keyframes],
        )

    @staticmethod
    def _keyframe_frames(
        request: VideoRequest, caps: Capabilities, fps: float, num_frames: int, where: str, warnings: list[str]
    ) -> list[int]:
        """The frame each timed keyframe lands on: the nearest to its time (frame i shows t = i / fps), the last
        frame for a time up to the clip's end. Refuses a time past the end, two keyframes on one frame, and one on
        the frame ``image`` or ``last_image`` gives; says when a time is moved to its frame."""
        frames: list[int] = []
        length = num_frames / fps
        for i, keyframe in enumerate(request.keyframes):
            name, t = f"keyframes[{i}].time", keyframe.time
            if t > length + 1e-9:
                limit = caps.keyframes_max_frames
                most = f"; {where} makes at most {limit} frames with keyframes" if limit is not None else ""
                raise InvalidRequest(
                    name,
                    f"{t:g}s is past the end of the clip ({num_frames} frames at {fps:g} fps = {length:.3g}s)",
                    value=t,
                    allowed=f"0 to {length:.3g} seconds{most}",
                )
            exact = t * fps
            frame = min(math.floor(exact + 0.5), num_frames - 1)  # half up; the clip's end is its last frame
            taken = {0: "image", num_frames - 1: "last_image"}
            if frames and frame == frames[-1]:
                raise InvalidRequest(
                    name,
                    f"{t:g}s lands on frame {frame} at {fps:g} fps, as keyframes[{i - 1}] "
                    f"({request.keyframes[i - 1].time:g}s) does",
                    value=t,
                    allowed=f"times at least one frame ({1 / fps:.3g}s) apart",
                )
            if frame in taken and getattr(request, taken[frame]) is not None:
                raise InvalidRequest(
                    name,
                    f"{t:g}s lands on frame {frame}, which {taken[frame]} gives already: ambiguous",
                    value=t,
                    allowed=f"times between the first and last frames, or leave {taken[frame]} out",
                )
            if abs(exact - round(exact)) > 1e-6:
                warnings.append(
                    f"{name}: {t:g}s is frame {exact:.3g} at {fps:g} fps; placed on frame {frame} ({frame / fps:.3g}s)"
                )
            frames.append(frame)
        return frames

    @staticmethod
    def _resolve_size(request: VideoRequest, caps: Capabilities, where: str) -> tuple[int, int, str | None]:
        ratio = request.aspect_ratio
        if request.width is not None and request.height is not None:
            width, height = request.width, request.height
        elif ratio is not None or request.resolution is not None:
            if caps.aspect_ratios is not None and ratio is not None and ratio not in caps.aspect_ratios:
                raise InvalidRequest(
                    "aspect_ratio",
                    f"{ratio!r} is not offered by {where}",
                    value=ratio,
                    allowed=", ".join(caps.aspect_ratios),
                )
            rw, rh = ASPECT_RATIOS[ratio] if ratio else (caps.default_size[0], caps.default_size[1])
            short = RESOLUTIONS[request.resolution] if request.resolution else min(caps.default_size)
            m = max(1, caps.size_multiple)
            # the short side gets the preset; the long side follows the ratio; both rounded to the multiple
            long_side = short * max(rw, rh) / min(rw, rh)
            w_exact, h_exact = (long_side, short) if rw >= rh else (short, long_side)
            width = max(m, int(round(w_exact / m)) * m)
            height = max(m, int(round(h_exact / m)) * m)
            if caps.sizes:
                # APIs with fixed sizes: take the listed size with the asked ratio closest to the preset
                want = rw / rh
                best = min(caps.sizes, key=lambda s: (abs(s[0] / s[1] - want), abs(min(s) - short)))
                if abs(best[0] / best[1] - want) < 0.02:
                    width, height = best
        else:
            width, height = caps.default_size
        if caps.aspect_ratios is not None and ratio is None:
            ratio = _closest_ratio(width, height, caps.aspect_ratios)
        if caps.sizes is not None:
            if (width, height) not in caps.sizes:
                raise InvalidRequest(
                    "size",
                    f"{width}x{height} is not offered by {where}",
                    value=f"{width}x{height}",
                    allowed=caps.size_rule(),
                )
            return width, height, ratio
        for name, value in (("width", width), ("height", height)):
            if not caps.min_size <= value <= caps.max_size:
                raise InvalidRequest(
                    name, f"{value} is outside what {where} allows", value=value, allowed=caps.size_rule()
                )
            if value % caps.size_multiple:
                raise InvalidRequest(
                    name,
                    f"{value} is not a multiple of {caps.size_multiple}, which {where} needs",
                    value=value,
                    allowed=caps.size_rule(),
                )
        return width, height, ratio

    @staticmethod
    def _length_warnings(
        request: VideoRequest, caps: Capabilities, fps: float, num_frames: int, where: str
    ) -> list[str]:
        """Say when the clip's length is not the one asked for: never change what was asked silently."""
        length = f"{num_frames} frames at {fps:g} fps = {num_frames / fps:.3g}s"
        if request.duration is not None and caps.durations is None:
            exact = request.duration * fps
            if abs(exact - num_frames) > 1e-6:
                return [
                    f"duration: {request.duration:g}s at {fps:g} fps is {exact:g} frames, which {where} cannot "
                    f"make (frame counts: {caps.frame_rule()}); making {length}. For an exact length give "
                    f"num_frames (--frames), or a duration that is an allowed count / fps"
                ]
        elif (
            request.fps is not None
            and request.num_frames is None
            and request.duration is None
            and caps.durations is None
        ):
            default_length = caps.default_frames / caps.default_fps
            if abs(num_frames / fps - default_length) > 1e-6:
                return [
                    f"fps: {fps:g} fps with the default {num_frames} frames makes {num_frames / fps:.3g}s, not "
                    f"the default {default_length:g}s at {caps.default_fps:g} fps; give duration or num_frames "
                    f"(--duration, --frames) to set the length"
                ]
        return []

    @staticmethod
    def _resolve_frames(request: VideoRequest, caps: Capabilities, fps: float, where: str) -> int:
        if caps.durations is not None:
            if request.duration is not None:
                duration = request.duration
            elif request.num_frames is not None:
                duration = request.num_frames / fps
            else:
                duration = caps.durations[0]
            match = [d for d in caps.durations if abs(d - duration) < 1e-6]
            if not match:
                field_name = "duration" if request.duration is not None or request.num_frames is None else "num_frames"
                raise InvalidRequest(
                    field_name,
                    f"{duration:g}s is not offered by {where}",
                    value=duration,
                    allowed=", ".join(f"{d:g}s" for d in caps.durations),
                )
            return int(round(match[0] * fps))
        if request.num_frames is not None:
            n, field_name = request.num_frames, "num_frames"
        elif request.duration is not None:
            n, field_name = int(round(request.duration * fps)), "duration"
            # rules like 4k+1 count the first frame extra: round a duration up to the next allowed count
            if caps.frame_step > 1:
                k = max(0, -(-(n - caps.frame_offset) // caps.frame_step))
                n = k * caps.frame_step + caps.frame_offset
        else:
            return caps.default_frames
        if not caps.min_frames <= n <= caps.max_frames or (n - caps.frame_offset) % caps.frame_step:
            shown = f"{request.duration:g}s ({n} frames at {fps:g} fps)" if field_name == "duration" else str(n)
            raise InvalidRequest(field_name, f"{shown} is not allowed by {where}", value=n, allowed=caps.frame_rule())
        return n


def _closest_ratio(width: int, height: int, ratios: tuple[str, ...]) -> str:
    want = width / height
    return min(
        ratios, key=lambda r: abs(ASPECT_RATIOS[r][0] / ASPECT_RATIOS[r][1] - want) if r in ASPECT_RATIOS else 1e9
    )
