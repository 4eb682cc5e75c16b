"""VideoRequest: what a user asks for, validated before anything runs.

Field names follow diffusers' call parameters (``num_frames``, ``height``, ``width``, ``num_inference_steps``,
``guidance_scale``, ``negative_prompt``) plus ``seed``, ``fps`` and ``duration``. Checks that depend on the backend
(sizes, frame counts, modes) happen later, against the backend's Capabilities (see ``backends/base.py``).

>>> from kinema import VideoRequest
>>> VideoRequest(prompt="a red ball bouncing on green grass", seed=7).prompt
'a red ball bouncing on green grass'
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidRequest

__all__ = [
    "VideoRequest",
    "ASPECT_RATIOS",
    "RESOLUTIONS",
    "FORMATS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_REFERENCES",
    "MAX_KEYFRAMES",
    "MODES",
    "Keyframe",
    "INPUT_FIELDS",
    "map_input_paths",
    "invalid_from_validation",
]

MAX_PROMPT_CHARS = 5000
MAX_SEED = 2**32 - 1
FORMATS = ("mp4", "webm", "gif", "png")
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "21:9": (21, 9),
    "3:2": (3, 2),
    "2:3": (2, 3),
}
#: resolution presets name the length of the short side, in pixels
RESOLUTIONS: dict[str, int] = {
    "64p": 64,
    "128p": 128,
    "240p": 240,
    "360p": 360,
    "480p": 480,
    "540p": 540,
    "720p": 720,
    "1080p": 1080,
}
#: the request's modes, in the order listings show them (see ``VideoRequest.mode``)
MODES = ("t2v", "i2v", "extend", "edit", "keyframes", "references")
#: a sanity bound on reference images; each backend's ``Capabilities.max_references`` is the real limit
MAX_REFERENCES = 16
#: a sanity bound on timed keyframes; each backend's ``Capabilities.max_keyframes`` is the real limit
MAX_KEYFRAMES = 16
#: the longest clip a request may ask for, in seconds (``duration``), and so the latest keyframe time
_MAX_SECONDS = 600
# C0/C1 control characters except tab (\x09) and newline (\x0a)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _check_text(field: str, value: str) -> str:
    text = value.strip()
    bad = _CONTROL.search(text)
    if bad:
        raise ValueError(
            f"contains the control character {bad.group()!r} at position {bad.start()}; "
            "only printable text, newlines and tabs are allowed"
        )
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"is {len(text)} characters long after trimming; at most {MAX_PROMPT_CHARS} are allowed")
    return text


def _int(field: str, value: Any) -> Any:
    # bool is an int in Python; a True here is always a mistake
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, not {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"must be a whole number, not {value!r}")
        return int(value)
    return value


def _check_image(value: Any) -> Any:
    """An image input as given (path, URL, bytes, PIL image, uint8 array), or ValueError saying what is wrong."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return value
        if "://" in value:
            raise ValueError(f"URL scheme of {value.split('://')[0]!r} is not supported; use http(s) or a path")
        if not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value
    if isinstance(value, bytes | bytearray):
        if not value:
            raise ValueError("is empty bytes")
        return bytes(value)
    if type(value).__module__.startswith("PIL."):
        return value
    if type(value).__module__ == "numpy":
        import numpy as np

        arr = np.asarray(value)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise ValueError(f"an array image must be uint8 of shape (H, W, 3), got {arr.dtype} {arr.shape}")
        return arr
    raise ValueError(
        f"must be a path, an http(s) URL, bytes, a PIL image or a uint8 array, not {type(value).__name__}"
    )


class Keyframe(BaseModel):
    """An image the clip shows at ``time`` seconds from its start (a timed keyframe); ``image`` takes what
    :class:`VideoRequest`'s ``image`` takes. The backend puts it on the frame nearest to that time at the clip's fps.

    >>> Keyframe(time=1.5, image="https://example.com/mid.png").time
    1.5
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    #: seconds from the clip's start (0 is the first frame, the clip's length the last)
    time: float
    #: a path, an http(s) URL, bytes, a PIL image or an (H, W, 3) uint8 array
    image: Any


_KEYFRAME_SHAPE = "{'time': seconds from the clip's start, 'image': a path, URL, bytes, PIL image or array}"


def _keyframe_time(where: str, value: Any) -> float:
    """A keyframe's time in seconds, or InvalidRequest naming ``where``.time."""
    allowed = f"seconds from the clip's start, 0 up to the clip's length (at most {_MAX_SECONDS})"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(
            f"{where}.time", f"must be a number of seconds, not {value!r}", value=value, allowed=allowed
        )
    if not 0 <= value <= _MAX_SECONDS:
        raise InvalidRequest(f"{where}.time", f"{value:g}s is outside the clip", value=value, allowed=allowed)
    return float(value)


def _check_keyframes(value: Any) -> list[Keyframe]:
    """Timed keyframes as given (a list of ``{"time", "image"}``, :class:`Keyframe` or ``(time, image)`` pairs),
    each checked; an error names ``keyframes[i].time`` or ``keyframes[i].image``. Whether a time falls inside the
    clip, and on a frame of its own, is checked again once the backend has fixed the clip's length and fps."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidRequest(
            "keyframes",
            f"must be a list of {_KEYFRAME_SHAPE}, not {type(value).__name__}",
            allowed=f"up to {MAX_KEYFRAMES} keyframes",
        )
    if len(value) > MAX_KEYFRAMES:
        raise InvalidRequest(
            "keyframes",
            f"has {len(value)} images; at most {MAX_KEYFRAMES} are allowed (fewer by most backends)",
            value=len(value),
            allowed=f"1 to {MAX_KEYFRAMES}",
        )
    out: list[Keyframe] = []
    for i, item in enumerate(value):
        where = f"keyframes[{i}]"
        if isinstance(item, Keyframe):
            time, image = item.time, item.image
        elif isinstance(item, Mapping):
            unknown = sorted(str(k) for k in item if k not in ("time", "image"))
            if unknown:
                raise InvalidRequest(
                    f"{where}.{unknown[0]}", "is not a keyframe field", value=unknown[0], allowed="time, image"
                )
            for name in ("time", "image"):
                if item.get(name) is None:
                    raise InvalidRequest(f"{where}.{name}", "is missing", allowed=_KEYFRAME_SHAPE)
            time, image = item["time"], item["image"]
        elif isinstance(item, tuple | list) and len(item) == 2:  # a pair; JSON and YAML have lists, not tuples
            time, image = item
        else:
            raise InvalidRequest(
                where,
                f"must be {_KEYFRAME_SHAPE} (or a (time, image) pair), not {type(item).__name__}",
                allowed=_KEYFRAME_SHAPE,
            )
        seconds = _keyframe_time(where, time)
        if out and seconds <= out[-1].time:
            raise InvalidRequest(
                f"{where}.time",
                f"{seconds:g}s is not after keyframes[{i - 1}].time ({out[-1].time:g}s)",
                value=seconds,
                allowed="times in increasing order, each later than the one before",
            )
        try:
            if image is None:
                raise ValueError("is missing (None); give an image")
            checked = _check_image(image)
        except ValueError as exc:
            raise InvalidRequest(
                f"{where}.image",
                str(exc),
                value=image if isinstance(image, str) else None,
                allowed="a path, an http(s) URL, bytes, a PIL image or an (H, W, 3) uint8 array",
            ) from None
        out.append(Keyframe(time=seconds, image=checked))
    return out


class VideoRequest(BaseModel):
    """A request for one video. Construct it with keywords; bad input raises :class:`kinema.InvalidRequest`.

    ``image`` may be a path, an http(s) URL, raw bytes, a PIL image or an (H, W, 3) uint8 array (image-to-video: the
    image is the first frame). ``video`` is the path of a clip to extend. ``source_video`` (a path or URL) is a clip to
    edit (``strength`` 0..1: how far the result may go from it); ``last_image`` is the frame the clip ends on (with
    or without ``image``: keyframes); ``keyframes`` are images the clip shows at given times (``[{"time": 1.5,
    "image": ...}]``, seconds from its start; with or without ``image`` and ``last_image``); ``references`` are 1..N
    images whose subject or style the clip keeps. See :attr:`mode` and docs/editing.md. Give ``num_frames`` or
    ``duration`` (with ``fps``), not both unless they agree; give ``width``/``height`` or
    ``aspect_ratio``/``resolution``. A ``seed`` of None or -1 means random; the seed actually used is recorded in the
    result.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=False)

    prompt: str
    negative_prompt: str | None = None
    image: Any = None
    video: str | None = None
    # the descriptions reach the schemas generated from this model (the MCP tools'), so they speak to a caller
    source_video: str | None = Field(
        None,
        description=(
            "Edit a clip: the local file path or an http(s) URL of a video to redraw after the prompt, keeping its "
            "layout (unlike video, which is continued). With strength."
        ),
    )
    strength: float | None = Field(
        None,
        description=(
            "With source_video: how far the result may go from it, 0 (keep it) to 1 (ignore it: text-to-video); the "
            "backend's default (0.6 for the built-in model) when left out."
        ),
    )
    last_image: Any = Field(
        None,
        description=(
            "Keyframes: a local file path or an http(s) URL of the image the clip ends on; with image, the clip runs "
            "from one to the other."
        ),
    )
    references: list[Any] = Field(
        [],
        description=(
            "Reference images (file paths or http(s) URLs) whose subject or style the clip keeps; list_backends says "
            "which backends take them."
        ),
    )
    keyframes: list[Keyframe] = Field(
        [],
        description=(
            "Keyframes at given times: a list of {time, image}, time in seconds from the clip's start (0 up to its "
            "length, increasing), image a local file path or an http(s) URL; the clip shows each image on the frame "
            "nearest its time. With image and/or last_image for the ends. Few backends take them (the built-in one "
            "does); another refuses them, naming those that do."
        ),
    )
    num_frames: int | None = None
    duration: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    backend: str | None = None
    model: str | None = None
    format: Literal["mp4", "webm", "gif", "png"] | None = None
    #: backend-specific options (for example diffusers' ``cache`` or ``offload``); each backend validates its own
    options: dict[str, Any] = {}
    #: post-processing applied after generation, in order (kinema.media.enhance): [{"op": "upscale", "factor": 2}]
    postprocess: list[dict[str, Any]] = []

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise invalid_from_validation(exc) from None

    # -- field checks -------------------------------------------------------------------------------------------
    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"must be text, not {type(value).__name__}")
        text = _check_text("prompt", value)
        if not text:
            raise ValueError("is empty; give 1 to 5000 characters describing the video")
        return text

    @field_validator("negative_prompt", mode="before")
    @classmethod
    def _negative(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"must be text, not {type(value).__name__}")
        return _check_text("negative_prompt", value) or None

    @field_validator("num_frames", "width", "height", "num_inference_steps", "seed", mode="before")
    @classmethod
    def _ints(cls, value: Any, info: Any) -> Any:
        return _int(info.field_name, value)

    @field_validator("num_frames")
    @classmethod
    def _frames(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 10_000:
            raise ValueError(f"must be between 1 and 10000, got {value}")
        return value

    @field_validator("width", "height")
    @classmethod
    def _size(cls, value: int | None) -> int | None:
        if value is not None and not 8 <= value <= 8192:
            raise ValueError(f"must be between 8 and 8192 pixels, got {value}")
        return value

    @field_validator("duration", "fps", "guidance_scale", mode="before")
    @classmethod
    def _floats(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {value!r}")
        if isinstance(value, float | int) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {value!r}")
        return value

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 600:
            raise ValueError(f"must be more than 0 and at most 600 seconds, got {value}")
        return value

    @field_validator("fps")
    @classmethod
    def _fps(cls, value: float | None) -> float | None:
        if value is not None and not 1 <= value <= 240:
            raise ValueError(f"must be between 1 and 240, got {value}")
        return value

    @field_validator("num_inference_steps")
    @classmethod
    def _steps(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 1000:
            raise ValueError(f"must be between 1 and 1000, got {value}")
        return value

    @field_validator("guidance_scale")
    @classmethod
    def _guidance(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 100:
            raise ValueError(f"must be between 0 and 100, got {value}")
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int | None) -> int | None:
        if value is None or value == -1:
            return None
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f"must be -1 (random) or between 0 and {MAX_SEED}, got {value}")
        return value

    @field_validator("aspect_ratio")
    @classmethod
    def _ratio(cls, value: str | None) -> str | None:
        if value is not None and value not in ASPECT_RATIOS:
            raise ValueError(f"{value!r} is not a known aspect ratio; allowed: {', '.join(ASPECT_RATIOS)}")
        return value

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value: str | None) -> str | None:
        if value is not None and value not in RESOLUTIONS:
            raise ValueError(f"{value!r} is not a known resolution preset; allowed: {', '.join(RESOLUTIONS)}")
        return value

    @field_validator("backend", "model", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty name")
        if _CONTROL.search(value):
            raise ValueError("contains control characters")
        return value.strip()

    @field_validator("image", "last_image", mode="before")
    @classmethod
    def _image(cls, value: Any) -> Any:
        return _check_image(value)

    @field_validator("references", mode="before")
    @classmethod
    def _references(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of images, not {type(value).__name__}")
        if len(value) > MAX_REFERENCES:
            raise ValueError(f"has {len(value)} images; at most {MAX_REFERENCES} are allowed (fewer by most backends)")
        out = []
        for i, item in enumerate(value):
            try:
                if item is None:
                    raise ValueError("is missing (None); give an image")
                out.append(_check_image(item))
            except ValueError as exc:
                raise InvalidRequest(
                    f"references[{i}]", str(exc), value=item if isinstance(item, str) else None
                ) from None
        return out

    @field_validator("keyframes", mode="before")
    @classmethod
    def _keyframes(cls, value: Any) -> Any:
        return _check_keyframes(value)

    @field_validator("strength", mode="before")
    @classmethod
    def _strength(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"must be a number from 0 to 1, not {value!r}")
        if not 0 <= value <= 1:
            raise ValueError(f"must be from 0 (keep the source) to 1 (ignore it), got {value!r}")
        return float(value)

    @field_validator("video", "source_video", mode="before")
    @classmethod
    def _video(cls, value: Any, info: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        edit = info.field_name == "source_video"
        if not isinstance(value, str):
            raise ValueError(
                f"must be the path of a video file{' or an http(s) URL' if edit else ''}, not {type(value).__name__}"
            )
        # a clip to edit may be a URL (kept as given, like image): some providers take the clip only as a URL
        # (Luma's modify-video); engines that need its frames fetch it or refuse it. A clip to extend stays a file.
        if edit and value.startswith(("http://", "https://")):
            return value
        if edit and "://" in value:
            raise ValueError(f"URL scheme of {value.split('://')[0]!r} is not supported; use http(s) or a path")
        if not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping of option names to values, not {type(value).__name__}")
        return value

    @field_validator("postprocess", mode="before")
    @classmethod
    def _postprocess(cls, value: Any) -> Any:
        from .media.enhance import chain_to_json, validate_chain

        return chain_to_json(validate_chain(value))

    @model_validator(mode="after")
    def _together(self) -> VideoRequest:
        if self.num_frames is not None and self.duration is not None:
            fps = self.fps
            if fps is None:
                raise InvalidRequest(
                    "duration",
                    "num_frames and duration were both given without fps; give one of them "
                    "(or fps too, so they can be checked against each other)",
                    value=self.duration,
                )
            expected = self.duration * fps
            if abs(expected - self.num_frames) > 1:
                raise InvalidRequest(
                    "duration",
                    f"num_frames={self.num_frames} and duration={self.duration:g}s at fps={fps:g} disagree "
                    f"({self.duration:g}s at {fps:g} fps is {round(expected)} frames); give one of them",
                    value=self.duration,
                )
        if (self.width is None) != (self.height is None):
            missing = "height" if self.height is None else "width"
            raise InvalidRequest(missing, "width and height must be given together", value=None)
        if self.width is not None and (self.aspect_ratio is not None or self.resolution is not None):
            raise InvalidRequest(
                "aspect_ratio",
                "give either width/height or aspect_ratio/resolution, not both",
                value=self.aspect_ratio or self.resolution,
            )
        if self.image is not None and self.video is not None:
            raise InvalidRequest("video", "give either image (image-to-video) or video (extension), not both")
        self._check_inputs_together()
        self._check_keyframes_together()
        return self

    def _check_keyframes_together(self) -> None:
        """Timed keyframes sit beside ``image``/``last_image`` only; one at 0s with ``image`` is two first frames."""
        if not self.keyframes:
            return
        for name in ("source_video", "video", "references"):
            if getattr(self, name):
                raise InvalidRequest(
                    "keyframes",
                    f"cannot be combined with {name}: give one of them",
                    allowed="keyframes alone or with image and/or last_image",
                )
        if self.image is not None and self.keyframes[0].time == 0:
            raise InvalidRequest(
                "keyframes[0].time",
                "0s is the first frame, which image gives already: ambiguous",
                value=0.0,
                allowed="times after 0 with image, or leave image out (the keyframe at 0s is then the first frame)",
            )
        if self.duration is not None:  # else once the backend has fixed the clip's length (BaseBackend.resolve)
            for i, keyframe in enumerate(self.keyframes):
                if keyframe.time > self.duration:
                    raise InvalidRequest(
                        f"keyframes[{i}].time",
                        f"{keyframe.time:g}s is past the end of the clip (duration {self.duration:g}s)",
                        value=keyframe.time,
                        allowed=f"0 to {self.duration:g} seconds",
                    )

    def _check_inputs_together(self) -> None:
        """One mode per request: the inputs of two modes together are refused, naming the one that does not fit."""
        if self.strength is not None and self.source_video is None:
            raise InvalidRequest(
                "strength", "only applies when editing a clip; give source_video too (CLI --edit)", value=self.strength
            )
        if self.source_video is not None:
            for name in ("video", "image", "last_image"):
                if getattr(self, name) is not None:
                    raise InvalidRequest(
                        name,
                        "cannot be combined with source_video (editing a clip): give one of them",
                        allowed="source_video (+ strength) alone, or video, or image and/or last_image",
                    )
        if self.last_image is not None and self.video is not None:
            raise InvalidRequest(
                "last_image",
                "cannot be combined with video (extension): give one of them",
                allowed="image and/or last_image (keyframes), or video",
            )
        if self.references:
            # no engine takes references with another input yet; refusing here keeps a silent drop impossible
            for name in ("source_video", "video", "image", "last_image"):
                if getattr(self, name) is not None:
                    raise InvalidRequest(
                        "references",
                        f"cannot be combined with {name} yet; give references with a prompt alone",
                        allowed="references with a prompt (mode 'references')",
                    )

    # -- derived values -----------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """What the request asks for, from the inputs it gives (one of :data:`MODES`).

        "t2v" (a prompt alone), "i2v" (``image`` is the first frame), "extend" (continue ``video``), "edit" (redraw
        ``source_video``), "keyframes" (``last_image`` and/or timed ``keyframes``, with or without ``image``),
        "references" (``references``).

        >>> VideoRequest(prompt="x", references=[b"png"]).mode
        'references'
        """
        if self.source_video is not None:
            return "edit"
        if self.references:
            return "references"
        if self.last_image is not None or self.keyframes:
            return "keyframes"
        if self.video is not None:
            return "extend"
        if self.image is not None:
            return "i2v"
        return "t2v"

    def image_reference(self) -> str | None:
        """How the recipe names the input image: its path or URL, or the sha256 of its bytes."""
        return _image_ref(self.image)

    def recipe(self) -> dict[str, Any]:
        """The JSON-safe parameters as asked (before the backend fills in defaults)."""
        data = self.model_dump(exclude={"image", "last_image", "references", "source_video", "keyframes"})
        data["image"] = self.image_reference()
        data["last_image"] = _image_ref(self.last_image, content=True)
        data["references"] = [_image_ref(r, content=True) for r in self.references]
        data["source_video"] = _image_ref(self.source_video, content=True)
        if self.keyframes:  # only when given: the cache and batch keys of every other request stay as they were
            data["keyframes"] = [{"time": k.time, "image": _image_ref(k.image, content=True)} for k in self.keyframes]
        return data


def _image_ref(value: Any, *, content: bool = False) -> str | None:
    """An input as a recipe key names it: a URL as given, bytes and arrays by their sha256, a path as given or (with
    ``content``) by its file's sha256, so that result-cache and batch keys change when the file does."""
    if value is None:
        return None
    if isinstance(value, str):
        if content and not value.startswith(("http://", "https://")) and Path(value).is_file():
            h = hashlib.sha256()
            with Path(value).open("rb") as f:  # in chunks: a clip to edit can be large
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            return "sha256:" + h.hexdigest()
        return value
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    try:
        import numpy as np

        arr = np.ascontiguousarray(np.asarray(value))
        return "sha256:" + hashlib.sha256(arr.tobytes()).hexdigest()
    except Exception:  # pragma: no cover - exotic image objects
        return f"<{type(value).__name__}>"


#: The request fields that name one input file each (a path, a URL or, for images, raw data); ``references`` and
#: ``keyframes[i].image`` name more.
INPUT_FIELDS = ("image", "video", "last_image", "source_video")


def map_input_paths(fields: Mapping[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """``fields`` (a request's, not yet validated) with ``fn`` applied to every input given as text: ``image``,
    ``video``, ``last_image``, ``source_video``, each of ``references`` and each keyframe's ``image``.

    Batches and storyboards use it to take paths relative to their file, each with its own policy. Values of any
    other shape are left for the request to refuse, naming the field.
    """
    out = dict(fields)

    def one(value: Any) -> Any:
        return fn(value) if isinstance(value, str) and value else value

    for key in INPUT_FIELDS:
        if key in out:
            out[key] = one(out[key])
    if isinstance(out.get("references"), list):
        out["references"] = [one(r) for r in out["references"]]
    if isinstance(out.get("keyframes"), list):
        keyframes = out["keyframes"]
        out["keyframes"] = [
            {**k, "image": one(k["image"])} if isinstance(k, dict) and "image" in k else k for k in keyframes
        ]
    return out


def invalid_from_validation(exc: ValidationError) -> InvalidRequest:
    """Turn pydantic's error list into one InvalidRequest that names the first bad field."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "request"
    kind = first.get("type", "")
    msg = str(first.get("msg", "is invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        allowed = ", ".join(VideoRequest.model_fields)
        msg = f"is not a known field (allowed: {allowed})"
    elif kind == "missing":
        msg = "is required"
    elif kind == "literal_error" and field == "format":
        msg = f"{first.get('input')!r} is not a supported format; allowed: {', '.join(FORMATS)}"
    elif "input" in first and kind not in ("value_error", "assertion_error"):
        msg = f"{msg} (got {first['input']!r})"
    ctx = first.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, InvalidRequest):
        return inner
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return InvalidRequest(field, msg + more, value=first.get("input"))
