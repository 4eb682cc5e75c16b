"""Storyboards: several shots cut into one film, with transitions, continuity, a soundtrack and a title card.

A storyboard is a YAML or JSON file::

    title: Morning in the valley
    defaults: {backend: builtin, seed: 7, fps: 8}       # any VideoRequest field, for every scene
    title_card: {text: Morning, duration: 1.5, transition: fade:0.5}
    audio: {path: music.wav, volume: 0.8, fade_out: 1}  # or just: audio: music.wav
    scenes:
      - prompt: sunrise over mountains
        duration: 2
        transition: dissolve:0.5                         # into the next shot: cut, fade, dissolve, wipe
      - prompt: clouds moving over mountains
        duration: 2
        continuity: true                                 # start from the previous shot's last frame

Every scene becomes a request on the one generate path (:func:`kinema.engine.run`), so any backend works. Before
anything is generated the whole file is checked: unknown keys, wrong types, missing fields, a missing audio file,
and each scene against its backend's capabilities; an error names the scene and field (``scenes[2].duration``).

Timing: a scene lasts exactly its ``duration`` (the generated clip is trimmed when the backend only makes longer
ones). A transition other than ``cut`` overlaps the two shots by its length (ffmpeg ``xfade`` style), so the film
lasts ``title + sum(scenes) - sum(overlaps)``. On the last scene a non-cut transition fades the film out to black.

Continuity: a scene with ``continuity: true`` is generated image-to-video from the previous scene's last frame
(saved losslessly next to the clip), so a character or place carries across the cut. With ``last_image`` too the
scene runs from that frame to the given one (keyframes).

Editing modes (docs/editing.md): a scene may give ``last_image``, timed ``keyframes`` (``[{time, image}]``, seconds
from the scene's start), ``references``, or ``source_video`` with ``strength``, as a request does. Every path among
them (and in ``defaults``) is taken relative to the storyboard file, like ``image``; http(s) URLs are kept as given.

Outputs: the film; each scene's clip in ``<film>_scenes/``; and ``<film>.manifest.json`` with every scene's recipe.
Re-running skips the scenes whose clip exists (each clip is named by a hash of its recipe), like batches.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import InvalidRequest
from .media.enhance import SoundtrackFields
from .progress import ProgressEvent
from .request import VideoRequest, map_input_paths
from .video import Video, write_json_atomic

__all__ = [
    "Storyboard",
    "Scene",
    "AudioTrack",
    "TitleCard",
    "load_storyboard",
    "plan_storyboard",
    "render_storyboard",
    "render_title_card",
    "ScenePlan",
    "StoryboardPlan",
    "check_storyboard",
]

#: scene keys that are passed to the request as they are
_SCENE_REQUEST_KEYS = (
    "prompt",
    "negative_prompt",
    "duration",
    "backend",
    "model",
    "seed",
    "num_inference_steps",
    "guidance_scale",
    "options",
    "image",
    "last_image",
    "references",
    "keyframes",
    "source_video",
    "strength",
)
#: the request fields that hold input files, resolved against the storyboard's folder
#: defaults may set any request field but these (they belong to one scene, or to the film)
_NOT_DEFAULTS = ("prompt", "image", "video", "num_frames", "format")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AudioTrack(_Strict, SoundtrackFields):
    """A soundtrack under the whole film: trimmed (or padded with silence) to the film's length."""

    path: str


class TitleCard(_Strict):
    """Text on a plain background before the first scene."""

    text: str
    subtitle: str | None = None
    duration: float = 2.0
    color: str = "white"
    background: str = "black"
    transition: str | dict[str, Any] = "fade:0.5"

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 < v <= 60):
            raise ValueError(f"must be more than 0 and at most 60 seconds, got {v:g}")
        return v

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("is empty")
        return v


class Scene(_Strict):
    """One shot. Request fields not given here come from the storyboard's ``defaults``."""

    prompt: str
    duration: float | None = None
    name: str | None = None
    backend: str | None = None
    model: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    options: dict[str, Any] | None = None
    image: str | None = None
    # the editing modes (docs/editing.md); paths are relative to the storyboard file. Described for the MCP tool's
    # schema, which is made from this model
    last_image: str | None = Field(
        None,
        description="The frame the shot ends on (a path or http(s) URL); with "
        "continuity the shot runs from the previous shot's last frame to it",
    )
    references: list[str] | None = Field(None, description="Images whose subject or style the shot keeps")
    keyframes: list[Any] | None = Field(
        None, description="Images the shot shows at given times: [{time: seconds from the scene's start, image}]"
    )
    source_video: str | None = Field(None, description="A clip to redraw after the prompt (edit), with strength")
    strength: float | None = Field(None, description="With source_video: 0 keeps the clip, 1 ignores it")
    continuity: bool = False
    transition: str | dict[str, Any] = "cut"
    postprocess: list[Any] | None = None

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and 0 < v <= 600):
            raise ValueError(f"must be more than 0 and at most 600 seconds, got {v:g}")
        return v


class Storyboard(_Strict):
    """The whole file."""

    title: str
    scenes: list[Scene]
    defaults: dict[str, Any] = {}
    audio: AudioTrack | str | None = None
    title_card: TitleCard | str | None = None
    #: the folder relative paths are taken from (the file's own folder)
    _base: Path | None = PrivateAttr(default=None)

    @field_validator("scenes")
    @classmethod
    def _scenes(cls, v: list[Scene]) -> list[Scene]:
        if not v:
            raise ValueError("is empty; give at least one scene")
        if len(v) > 500:
            raise ValueError(f"has {len(v)} scenes; at most 500 are allowed")
        return v


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in (
            "str",
            "dict[str,any]",
            "AudioTrack",
            "TitleCard",
            "list[any]",
            "int",
            "float",
            "bool",
            "function-after[_duration(), float]",
        ):
            continue  # pydantic's union branch names are not fields
        else:
            out += ("." if out else "") + str(p)
    return out or "storyboard"


def _from_validation(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors()
    # a union (audio: AudioTrack | str) reports one error per branch; the mapping branch is the informative one
    first = next(
        (e for e in errors if len(e.get("loc", ())) > 1 and e["loc"][1] in ("AudioTrack", "TitleCard")), errors[0]
    )
    where = _loc(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    msg = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "is not a known key"
        models: dict[str, type[BaseModel]] = {"scenes": Scene, "audio": AudioTrack, "title_card": TitleCard}
        model = models.get(str(first["loc"][0]), Storyboard)
        msg += f" (allowed: {', '.join(model.model_fields)})"
    elif kind == "missing":
        msg = "is required"
    elif kind != "value_error":
        msg = f"{msg}, got {type(first.get('input')).__name__} {first.get('input')!r}"
    return InvalidRequest(where, msg, value=first.get("input"))


def _parse_text(text: str, suffix: str, name: str) -> Any:
    if suffix in (".yaml", ".yml"):
        from .backends.base import require_module

        yaml = require_module("yaml", "workflows", feature="YAML storyboards")
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise InvalidRequest("storyboard", f"{name} is not valid YAML{where}: {problem}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                "storyboard", f"{name} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    raise InvalidRequest(
        "storyboard", f"{name}: unknown storyboard file type {suffix!r}", allowed=".yaml, .yml, .json"
    )


def load_storyboard(source: str | os.PathLike[str] | dict[str, Any], *, base: Path | None = None) -> Storyboard:
    """Read and check the structure of a storyboard file (or an already parsed mapping)."""
    if isinstance(source, dict):
        data: Any = source
        base = base or Path.cwd()
    else:
        p = Path(source)
        if not p.is_file():
            raise InvalidRequest("storyboard", f"file not found: {p}", value=str(p))
        data = _parse_text(p.read_text(encoding="utf-8-sig"), p.suffix.lower(), p.name)
        base = base or p.parent
    if not isinstance(data, dict):
        raise InvalidRequest("storyboard", f"must be a mapping with title and scenes, not {type(data).__name__}")
    try:
        board = Storyboard(**data)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    board._base = base.resolve()
    return board


# -- planning: every check before anything runs -------------------------------------------------------------------
@dataclass
class ScenePlan:
    index: int
    scene: Scene
    request: VideoRequest  # without the continuity image, which exists only once the previous shot is made
    chain: list[Any]
    frames: int  # the scene's length in the film, in frames of its fps
    fps: float
    transition: Any  # media.edit.Transition
    generated_frames: int = 0  # what the backend makes; the clip is trimmed to ``frames``
    key: str = ""

    @property
    def duration(self) -> float:
        return self.frames / self.fps


@dataclass
class StoryboardPlan:
    board: Storyboard
    scenes: list[ScenePlan]
    audio: AudioTrack | None
    title_card: TitleCard | None
    title_transition: Any
    base: Path
    fps: float
    starts: list[float] = field(default_factory=list)
    duration: float = 0.0


def _rename(exc: InvalidRequest, prefix: str) -> InvalidRequest:
    message = exc.message[len(exc.field) + 2 :] if exc.message.startswith(exc.field + ": ") else exc.message
    return InvalidRequest(f"{prefix}.{exc.field}", message, value=exc.value, allowed=None)


def _resolve_path(value: str, base: Path) -> str:
    if value.startswith(("http://", "https://")):
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _resolve_input(value: Any, base: Path) -> Any:
    """An input file as the request should get it: a relative path taken from ``base``; a URL (any scheme: the
    request names the ones it refuses) or a non-text value as given."""
    if not isinstance(value, str) or "://" in value:
        return value
    return _resolve_path(value, base)


def _resolve_inputs(fields: dict[str, Any], base: Path) -> dict[str, Any]:
    """``fields`` with every input path (image, last_image, source_video, each reference and keyframe image)
    resolved against ``base``, as a scene's ``image`` always was."""
    return map_input_paths(fields, lambda value: _resolve_input(value, base))


def _check_color(value: str, where: str) -> tuple[int, int, int]:
    from .backends.base import require_module

    image_color = require_module("PIL.ImageColor", "workflows", feature="storyboard title cards")
    try:
        rgb = image_color.getrgb(value)
    except ValueError:
        raise InvalidRequest(
            where, f"{value!r} is not a colour", value=value, allowed="a CSS colour name or #rrggbb"
        ) from None
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]))


def _fit_duration(caps: Any, duration: float) -> float:
    """A duration the backend offers that is at least the one asked (APIs with fixed lengths); trimmed later."""
    if caps.durations is None:
        return duration
    longer = [d for d in caps.durations if d >= duration - 1e-6]
    return min(longer) if longer else max(caps.durations)


def plan_storyboard(board: Storyboard, *, base: Path | None = None, film_suffix: str = ".mp4") -> StoryboardPlan:
    """Check everything that can be checked without generating, and work out each scene's request and timing."""
    from .media.edit import parse_transition
    from .media.enhance import validate_chain
    from .planner import backend_for, plan

    base = base or board._base or Path.cwd()
    defaults = _resolve_inputs(board.defaults, base)
    for key in defaults:
        if key not in VideoRequest.model_fields:
            raise InvalidRequest(
                f"defaults.{key}",
                "is not a known request field",
                allowed=", ".join(k for k in VideoRequest.model_fields if k not in _NOT_DEFAULTS),
            )
        if key in _NOT_DEFAULTS:
            raise InvalidRequest(
                f"defaults.{key}",
                "cannot be a default: it belongs to a scene or to the film",
                allowed=", ".join(k for k in VideoRequest.model_fields if k not in _NOT_DEFAULTS),
            )
    try:
        VideoRequest(prompt="defaults", **defaults)
    except InvalidRequest as exc:
        raise _rename(exc, "defaults") from None

    plans: list[ScenePlan] = []
    dummy = np.zeros((64, 64, 3), np.uint8)
    for i, scene in enumerate(board.scenes):
        where = f"scenes[{i}]"
        if scene.continuity and i == 0:
            raise InvalidRequest(f"{where}.continuity", "the first scene has no previous shot to continue from")
        if scene.continuity and scene.image is not None:
            raise InvalidRequest(
                f"{where}.continuity", "cannot be combined with image (continuity supplies the first frame)"
            )
        fields: dict[str, Any] = dict(defaults)
        for key in _SCENE_REQUEST_KEYS:
            value = getattr(scene, key)
            if value is not None:
                fields[key] = value
        fields = _resolve_inputs(fields, base)
        if scene.continuity:
            # the request would blame ``image``, which the scene did not give: name the field that clashes
            for key, why in (
                ("references", "no engine takes references with a first frame"),
                ("source_video", "editing a clip takes no first frame"),
            ):
                if fields.get(key):
                    own = getattr(scene, key) is not None
                    raise InvalidRequest(
                        f"{where}.{key}" if own else f"{where}.continuity",
                        f"{'' if own else f'defaults.{key} '}cannot be combined with continuity (the previous "
                        f"shot's last frame as this one's image): {why}",
                        allowed="continuity with or without last_image / keyframes",
                    )
            fields["image"] = dummy  # stands in for the previous last frame while checking
        try:
            request = VideoRequest(**fields)
        except InvalidRequest as exc:
            raise _rename(exc, where) from None
        try:
            transition = parse_transition(scene.transition, "transition")
        except InvalidRequest as exc:
            raise _rename(exc, where) from None
        steps = scene.postprocess
        if steps:
            steps = [
                dict(s, **({"path": _resolve_path(s["path"], base)} if isinstance(s.get("path"), str) else {}))
                if isinstance(s, dict)
                else s
                for s in steps
            ]
        try:
            chain = validate_chain(steps, "postprocess")
        except InvalidRequest as exc:
            raise _rename(exc, where) from None

        try:
            backend, request = backend_for(request)
        except InvalidRequest as exc:
            raise _rename(exc, where) from None
        caps = backend.capabilities(request.model or backend.default_model())
        want = request.duration
        if want is not None and caps.durations is not None:
            fitted = _fit_duration(caps, want)
            if fitted != want:
                request = request.model_copy(update={"duration": fitted})
        try:
            planned = plan(request, check_available=False, seed=0)
        except InvalidRequest as exc:
            if exc.field == "image" and scene.continuity:
                raise InvalidRequest(
                    f"{where}.continuity",
                    f"needs image-to-video, which backend {backend.name!r} "
                    "does not offer; choose a backend that does, or drop continuity",
                ) from None
            raise _rename(exc, where) from None
        planned.check_available(where)
        params = planned.params
        frames = round(want * params.fps) if want is not None else params.num_frames
        frames = max(1, min(frames, params.num_frames))
        if scene.continuity:
            request = request.model_copy(update={"image": None})
        plans.append(
            ScenePlan(
                index=i,
                scene=scene,
                request=request,
                chain=chain,
                frames=frames,
                fps=params.fps,
                transition=transition,
                generated_frames=params.num_frames,
            )
        )

    audio: AudioTrack | None = None
    if board.audio is not None:
        audio = AudioTrack(path=board.audio) if isinstance(board.audio, str) else board.audio.model_copy()
        audio.path = _resolve_path(audio.path, base)
        from .media.edit import has_audio

        if film_suffix not in (".mp4", ".mov", ".m4v", ".webm"):
            raise InvalidRequest("audio", f"a {film_suffix} film cannot carry sound", allowed=".mp4, .mov, .webm")
        if not Path(audio.path).is_file():
            raise InvalidRequest("audio.path", f"file not found: {audio.path}", value=audio.path)
        if not has_audio(audio.path):
            raise InvalidRequest("audio.path", f"{audio.path} holds no audio stream", value=audio.path)

    card: TitleCard | None = None
    title_transition = None
    if board.title_card is not None:
        card = TitleCard(text=board.title_card) if isinstance(board.title_card, str) else board.title_card
        _check_color(card.color, "title_card.color")
        _check_color(card.background, "title_card.background")
        require_pillow()
        try:
            title_transition = parse_transition(card.transition, "transition")
        except InvalidRequest as exc:
            raise _rename(exc, "title_card") from None

    fps = plans[0].fps
    # timeline: every overlapping transition must fit inside both shots it joins
    parts: list[tuple[str, float, Any]] = []
    if card is not None:
        parts.append(("title_card", card.duration, title_transition))
    parts += [(f"scenes[{p.index}]", p.frames / fps, p.transition) for p in plans]
    starts: list[float] = []
    t = 0.0
    for k, (where, length, tr) in enumerate(parts):
        starts.append(t)
        if k + 1 < len(parts) and tr is not None and tr.overlap > 0:
            nxt = parts[k + 1][1]
            if tr.overlap > min(length, nxt) + 1e-9:
                key = "title_card.transition.duration" if where == "title_card" else f"{where}.transition.duration"
                raise InvalidRequest(
                    key, f"{tr.overlap:g}s is longer than a shot it joins ({min(length, nxt):g}s)", value=tr.overlap
                )
        overlap = round(tr.overlap * fps) / fps if (tr is not None and k + 1 < len(parts)) else 0.0
        t += round(length * fps) / fps - overlap
    scene_starts = starts[1:] if card is not None else starts

    # keys: a scene's recipe, its length, its chain, and (for continuity) the key of the shot it continues
    prev = ""
    for p in plans:
        recipe = {
            "request": p.request.recipe(),
            "frames": p.frames,
            "chain": [s.model_dump() for s in p.chain],
            "continuity": prev if p.scene.continuity else None,
        }
        text = json.dumps(recipe, sort_keys=True, default=str)
        p.key = hashlib.sha256(text.encode()).hexdigest()
        prev = p.key
    return StoryboardPlan(
        board=board,
        scenes=plans,
        audio=audio,
        title_card=card,
        title_transition=title_transition,
        base=base,
        fps=fps,
        starts=scene_starts,
        duration=t,
    )


def require_pillow() -> Any:
    from .backends.base import require_module

    return require_module("PIL.ImageDraw", "workflows", feature="storyboard title cards")


def render_title_card(card: TitleCard, width: int, height: int, fps: float) -> Video:
    """A still card (text centred, wrapped to the width) lasting ``card.duration`` seconds."""
    require_pillow()
    from PIL import Image, ImageDraw, ImageFont

    background = _check_color(card.background, "title_card.background")
    color = _check_color(card.color, "title_card.color")
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)

    def font(size: int) -> Any:
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has only the small bitmap font
            return ImageFont.load_default()

    def wrap(text: str, f: Any, limit: float) -> str:
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            line = ""
            for word in paragraph.split():
                trial = f"{line} {word}".strip()
                if line and draw.textlength(trial, font=f) > limit:
                    lines.append(line)
                    line = word
                else:
                    line = trial
            lines.append(line)
        return "\n".join(lines)

    title_font = font(max(8, height // 7))
    body = wrap(card.text, title_font, width * 0.9)
    if card.subtitle:
        sub_font = font(max(6, height // 12))
        draw.multiline_text((width / 2, height * 0.45), body, fill=color, font=title_font, anchor="md", align="center")
        draw.multiline_text(
            (width / 2, height * 0.55),
            wrap(card.subtitle, sub_font, width * 0.9),
            fill=color,
            font=sub_font,
            anchor="ma",
            align="center",
        )
    else:
        draw.multiline_text((width / 2, height / 2), body, fill=color, font=title_font, anchor="mm", align="center")
    frame = np.asarray(img, dtype=np.uint8)
    count = max(1, round(card.duration * fps))
    return Video(np.repeat(frame[None], count, axis=0), fps=fps, metadata={"title_card": card.model_dump()})


def _fade_out(video: Video, seconds: float) -> Video:
    n = min(video.num_frames, round(seconds * video.fps))
    if n <= 0:
        return video
    frames = video.frames.copy()
    gain = 1.0 - (np.arange(n, dtype=np.float32) + 1) / n
    frames[-n:] = np.clip(np.rint(frames[-n:].astype(np.float32) * gain[:, None, None, None]), 0, 255).astype(np.uint8)
    return Video(frames, fps=video.fps, metadata=dict(video.metadata))


# -- rendering -----------------------------------------------------------------------------------------------------
def scenes_dir(film: Path) -> Path:
    return film.with_name(f"{film.stem}_scenes")


def manifest_path(film: Path) -> Path:
    return film.with_name(f"{film.stem}.manifest.json")


def render_storyboard(
    source: str | os.PathLike[str] | Storyboard | dict[str, Any],
    output: str | os.PathLike[str],
    *,
    cache: Any = None,
    cancel: Any = None,
    on_event: Callable[[str], None] | None = None,
    on_progress: Callable[[int, ProgressEvent], None] | None = None,
) -> dict[str, Any]:
    """Make the film (checking the whole storyboard first); returns the manifest, also written next to the film.

    ``on_event`` gets one line per scene and stage; ``on_progress`` gets ``(scene index, event)`` for every
    progress event of every scene being generated (denoising steps included), for per-step progress displays.
    """
    from .backends.base import CancelToken
    from .engine import run
    from .media.edit import concat, mux_audio
    from .media.enhance import chain_to_json
    from .media.thumbnail import save_image
    from .video import output_format

    film = Path(output)
    suffix = film.suffix.lower()
    if output_format(film) == "png":
        raise InvalidRequest(
            "output",
            f"a film needs a video file, not {film.suffix or 'a folder'!r}",
            value=str(film),
            allowed=".mp4, .mov, .webm, .gif",
        )
    board = source if isinstance(source, Storyboard) else load_storyboard(source)
    plan = plan_storyboard(board, film_suffix=suffix)
    token = cancel or CancelToken()
    say = on_event or (lambda _m: None)
    folder = scenes_dir(film)
    folder.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    records: list[dict[str, Any]] = []
    clips: list[Video] = []
    prev_last: Path | None = None
    for p in plan.scenes:
        token.raise_if_cancelled()
        stem = f"scene-{p.index + 1:02d}-{p.key[:10]}"
        clip_path = folder / f"{stem}.mp4"
        last_png = folder / f"{stem}.last.png"
        from .video import read_sidecar

        recipe = read_sidecar(clip_path) if clip_path.is_file() and last_png.is_file() else None
        status = "reused"
        t0 = time.perf_counter()
        if recipe is None:
            status = "generated"
            request = p.request
            if p.scene.continuity:
                assert prev_last is not None
                request = VideoRequest(**{**request.model_dump(exclude={"image"}), "image": str(prev_last)})
            say(f"scene {p.index + 1}/{len(plan.scenes)}: generating ({p.request.prompt[:60]})")
            hook = None if on_progress is None else functools.partial(on_progress, p.index)
            # the scene's own chain after a trim to its length in the film; the engine's one finish saves it
            chain = chain_to_json(p.chain)
            if p.frames < p.generated_frames:
                chain = [{"op": "trim", "start": 0.0, "end": p.frames / p.fps}, *chain]
            story = {
                "title": board.title,
                "scene": p.index,
                "key": p.key,
                "frames_in_film": p.frames,
                "continuity_from": str(prev_last) if p.scene.continuity else None,
            }
            result = run(
                request.model_copy(update={"postprocess": chain}),
                output=clip_path,
                cache=cache,
                cancel=token,
                on_progress=hook,
                recipe_extra={"storyboard": story},
            )
            video, recipe = result.video, result.recipe
            save_image(video.frames[-1], last_png)
        else:
            say(f"scene {p.index + 1}/{len(plan.scenes)}: reusing {clip_path.name}")
        # the film is always cut from the saved clips, so a resumed run makes the same film as a fresh one
        clip = Video.open(clip_path)
        clips.append(clip)
        prev_last = last_png
        records.append(
            {
                "index": p.index,
                "name": p.scene.name,
                "prompt": p.request.prompt,
                "status": status,
                "clip": str(clip_path),
                "last_frame": str(last_png),
                "key": p.key,
                "duration": p.frames / p.fps,
                "frames": p.frames,
                "fps": p.fps,
                "transition": str(p.transition),
                "continuity": p.scene.continuity,
                "start": round(plan.starts[p.index], 6),
                "seed": recipe.get("seed"),
                "seconds": round(time.perf_counter() - t0, 3),
                "recipe": recipe,
            }
        )

    token.raise_if_cancelled()
    say("assembling the film")
    width, height = clips[0].width, clips[0].height
    parts = list(clips)
    joins = [p.transition for p in plan.scenes[:-1]]
    if plan.title_card is not None:
        parts.insert(0, render_title_card(plan.title_card, width, height, clips[0].fps))
        joins.insert(0, plan.title_transition)
    movie = concat(parts, joins)
    last = plan.scenes[-1].transition
    if last.overlap > 0:
        movie = _fade_out(movie, last.overlap)
    manifest: dict[str, Any] = {
        "kind": "kinema.storyboard",
        "title": board.title,
        "film": str(film),
        "duration": movie.duration,
        "frames": movie.num_frames,
        "fps": movie.fps,
        "width": movie.width,
        "height": movie.height,
        "title_card": plan.title_card.model_dump() if plan.title_card else None,
        "title_transition": str(plan.title_transition) if plan.title_transition else None,
        "audio": plan.audio.model_dump() if plan.audio else None,
        "scenes": records,
        "seconds": None,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    from ._version import __version__

    movie.metadata = {
        "kinema_version": __version__,
        "kind": "kinema.storyboard",
        "title": board.title,
        "prompt": " | ".join(r["prompt"] for r in records),
        "scenes": [{k: r[k] for k in ("prompt", "seed", "key", "transition", "continuity", "start")} for r in records],
    }
    saved = movie.save(film)
    if plan.audio is not None:
        a = plan.audio
        mux_audio(saved, a.path, start=a.start, volume=a.volume, fade_in=a.fade_in, fade_out=a.fade_out)
    manifest["seconds"] = round(time.perf_counter() - t_start, 3)
    write_json_atomic(manifest_path(film), manifest)
    say(f"saved {film} ({movie.duration:g}s, {len(records)} scenes)")
    return manifest


def check_storyboard(source: str | os.PathLike[str], film_suffix: str = ".mp4") -> StoryboardPlan:
    """Validate a storyboard file completely without generating anything (``kinema storyboard --check``)."""
    return plan_storyboard(load_storyboard(source), film_suffix=film_suffix)
