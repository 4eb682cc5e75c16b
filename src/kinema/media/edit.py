"""Editing clips: trim, loop, join with transitions, put a soundtrack under a video, export a GIF.

Transitions follow ffmpeg's ``xfade`` convention: every transition but ``cut`` overlaps the two shots by its length,
so joining A and B with a 0.5 s dissolve lasts ``A + B - 0.5`` seconds.

- ``cut``: B follows A directly (length ignored).
- ``dissolve``: A cross-fades into B.
- ``fade``: A fades to black over the first half of the overlap, B fades in from black over the second half.
- ``wipe``: B slides in over A from the left edge to the right.

Blending happens on the decoded frames (exact frame counts, no re-encode); files are written with PyAV, and audio is
muxed with the ffmpeg binary that imageio-ffmpeg ships (AAC in MP4, Opus in WebM).

>>> import numpy as np
>>> from kinema import Video
>>> a = Video(np.zeros((16, 8, 8, 3), np.uint8), fps=8)
>>> b = Video(np.full((16, 8, 8, 3), 255, np.uint8), fps=8)
>>> concat([a, b], "dissolve:0.5").num_frames  # 16 + 16 - 4
28
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidRequest
from ..video import Video
from .ffmpeg import run_ffmpeg

__all__ = [
    "TRANSITIONS",
    "Transition",
    "parse_transition",
    "transition_frames",
    "concat",
    "join",
    "trim",
    "loop",
    "resample_fps",
    "fit_size",
    "mux_audio",
    "has_audio",
    "export_gif",
]

TRANSITIONS = ("cut", "fade", "dissolve", "wipe")
_MAX_TRANSITION = 60.0


@dataclass(frozen=True)
class Transition:
    """How one shot passes into the next: a kind from :data:`TRANSITIONS` and a length in seconds."""

    kind: str = "cut"
    duration: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in TRANSITIONS:
            raise InvalidRequest(
                "transition",
                f"{self.kind!r} is not a known transition",
                value=self.kind,
                allowed=", ".join(TRANSITIONS),
            )
        if not (isinstance(self.duration, int | float) and math.isfinite(self.duration)):
            raise InvalidRequest("transition.duration", f"must be a number of seconds, not {self.duration!r}")
        if not 0 <= self.duration <= _MAX_TRANSITION:
            raise InvalidRequest(
                "transition.duration",
                f"must be between 0 and {_MAX_TRANSITION:g} seconds, got {self.duration:g}",
                value=self.duration,
            )

    @property
    def overlap(self) -> float:
        """Seconds the two shots share (0 for a cut)."""
        return 0.0 if self.kind == "cut" else float(self.duration)

    def __str__(self) -> str:
        return self.kind if self.kind == "cut" else f"{self.kind}:{self.duration:g}"


def parse_transition(spec: str | dict[str, Any] | Transition | None, field: str = "transition") -> Transition:
    """``"cut"``, ``"fade:0.5"``, ``{"type": "dissolve", "duration": 1}`` or a Transition -> Transition.

    A transition other than ``cut`` given without a length lasts 0.5 s.
    """
    if spec is None:
        return Transition()
    if isinstance(spec, Transition):
        return spec
    try:
        if isinstance(spec, str):
            m = re.fullmatch(r"\s*([a-z]+)\s*(?::\s*([0-9]*\.?[0-9]+)\s*s?)?\s*", spec)
            if not m:
                raise InvalidRequest(
                    field,
                    f"{spec!r} is not of the form KIND or KIND:SECONDS",
                    value=spec,
                    allowed=f"{', '.join(TRANSITIONS)}, e.g. fade:0.5",
                )
            kind, length = m.group(1), m.group(2)
            return Transition(kind, float(length) if length is not None else (0.0 if kind == "cut" else 0.5))
        if isinstance(spec, dict):
            unknown = set(spec) - {"type", "kind", "duration"}
            if unknown:
                raise InvalidRequest(
                    f"{field}.{sorted(unknown)[0]}", "is not a known transition key", allowed="type, duration"
                )
            kind = spec.get("type", spec.get("kind", "cut"))
            if not isinstance(kind, str):
                raise InvalidRequest(
                    f"{field}.type", f"must be text, not {type(kind).__name__}", allowed=", ".join(TRANSITIONS)
                )
            length = spec.get("duration", 0.0 if kind == "cut" else 0.5)
            if isinstance(length, bool) or not isinstance(length, int | float):
                raise InvalidRequest(f"{field}.duration", f"must be a number of seconds, not {length!r}")
            return Transition(kind, float(length))
    except InvalidRequest as exc:
        if exc.field.startswith(field):
            raise
        sub = exc.field.split(".", 1)[1] if "." in exc.field else "type"
        raise InvalidRequest(f"{field}.{sub}", exc.message.split(": ", 1)[-1], value=exc.value) from None
    raise InvalidRequest(field, f"must be text like 'fade:0.5' or a mapping, not {type(spec).__name__}")


def transition_frames(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """The overlap frames of a transition: ``a`` (A's tail) passes into ``b`` (B's head); both (n, H, W, 3)."""
    n = a.shape[0]
    # progress runs strictly inside (0, 1) so the first overlap frame already moves and the last is not yet all B
    t = (np.arange(n, dtype=np.float32) + 1.0) / (n + 1.0)
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    if kind == "dissolve":
        out = fa * (1 - t)[:, None, None, None] + fb * t[:, None, None, None]
    elif kind == "fade":
        gain_a = np.clip(1 - 2 * t, 0, 1)[:, None, None, None]
        gain_b = np.clip(2 * t - 1, 0, 1)[:, None, None, None]
        out = fa * gain_a + fb * gain_b
    elif kind == "wipe":
        width = a.shape[2]
        cols = np.arange(width, dtype=np.float32)[None, :]
        edge = (t * width)[:, None]
        mask = (cols < edge).astype(np.float32)[:, None, :, None]  # (n, 1, W, 1): B left of the edge
        out = fa * (1 - mask) + fb * mask
    else:
        raise InvalidRequest("transition", f"{kind!r} is not a blending transition", allowed="fade, dissolve, wipe")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resample_fps(video: Video, fps: float) -> Video:
    """The same clip at another frame rate by picking the nearest frame (no blending; see enhance for that)."""
    if abs(video.fps - fps) < 1e-6:
        return video
    count = max(1, round(video.duration * fps))
    idx = np.minimum((np.arange(count) * video.fps / fps + 1e-6).astype(int), video.num_frames - 1)
    return Video(video.frames[idx], fps=fps, metadata=dict(video.metadata))


def fit_size(video: Video, width: int, height: int) -> Video:
    """Scale (and centre-crop to the aspect ratio) so the clip is exactly width x height."""
    if video.width == width and video.height == height:
        return video
    from .io import resize_frames

    frames = video.frames
    want, have = width / height, video.width / video.height
    if abs(want - have) > 1e-3:  # crop the longer side first so nothing is stretched
        if have > want:
            w = max(1, round(video.height * want))
            left = (video.width - w) // 2
            frames = frames[:, :, left : left + w]
        else:
            h = max(1, round(video.width / want))
            top = (video.height - h) // 2
            frames = frames[:, top : top + h]
    return Video(
        resize_frames(np.ascontiguousarray(frames), width, height), fps=video.fps, metadata=dict(video.metadata)
    )


def join(a: Video, b: Video, transition: Transition | str | None = None) -> Video:
    """A then B with a transition; B is brought to A's size and fps first. See :func:`concat`."""
    tr = parse_transition(transition)
    b = fit_size(resample_fps(b, a.fps), a.width, a.height)
    n = round(tr.overlap * a.fps)
    if n == 0:
        return Video(np.concatenate([a.frames, b.frames]), fps=a.fps, metadata=dict(a.metadata))
    if n > a.num_frames or n > b.num_frames:
        shortest = min(a.duration, b.duration)
        raise InvalidRequest(
            "transition.duration",
            f"{tr.duration:g}s is longer than a shot it joins ({shortest:g}s)",
            value=tr.duration,
            allowed=f"at most {shortest:g}",
        )
    mid = transition_frames(a.frames[-n:], b.frames[:n], tr.kind)
    frames = np.concatenate([a.frames[:-n], mid, b.frames[n:]])
    return Video(frames, fps=a.fps, metadata=dict(a.metadata))


def concat(
    videos: Sequence[Video],
    transitions: Sequence[Transition | str | None] | Transition | str | None = None,
) -> Video:
    """Join clips in order. ``transitions`` is one transition for every join, or one per join (len(videos) - 1).

    The result has the first clip's size and fps; the others are scaled (centre-cropped to the aspect ratio) and
    retimed to match. Each overlapping transition of length d shortens the total by d.
    """
    clips = list(videos)
    if not clips:
        raise InvalidRequest("videos", "give at least one clip to join")
    joins = len(clips) - 1
    if transitions is None or isinstance(transitions, str | Transition):
        per = [parse_transition(transitions)] * joins
    else:
        per = [parse_transition(t, f"transitions[{i}]") for i, t in enumerate(transitions)]
        if len(per) != joins:
            raise InvalidRequest(
                "transitions", f"{len(per)} transitions given for {joins} joins", allowed=f"one, or exactly {joins}"
            )
    out = clips[0]
    for clip, tr in zip(clips[1:], per, strict=True):
        out = join(out, clip, tr)
    return out


def _parse_time(text: str, field: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        if ":" in text:  # mm:ss(.f) is not supported here because ':' separates start and end
            raise ValueError
        value = float(text.rstrip("s"))
    except ValueError:
        raise InvalidRequest(field, f"{text!r} is not a number of seconds", value=text) from None
    if not math.isfinite(value):
        raise InvalidRequest(field, f"{text!r} is not a finite number of seconds", value=text)
    return value


def parse_trim(spec: str) -> tuple[float, float | None]:
    """``"START:END"`` in seconds; either side may be empty (``":2"``, ``"1.5:"``); a negative END counts from the
    end."""
    if ":" not in spec:
        raise InvalidRequest(
            "trim", f"{spec!r} is not of the form START:END (seconds)", value=spec, allowed="e.g. 0.5:2, :2, 1:"
        )
    start_text, end_text = spec.split(":", 1)
    start = _parse_time(start_text, "trim") or 0.0
    return start, _parse_time(end_text, "trim")


def trim(video: Video, start: float = 0.0, end: float | None = None) -> Video:
    """The part of the clip from ``start`` to ``end`` seconds (``end`` None: to the end; negative: from the end)."""
    total = video.duration
    stop = total if end is None else (total + end if end < 0 else end)
    if start < 0 or start >= total:
        raise InvalidRequest("trim", f"start {start:g}s is outside the clip (0 to {total:g}s)", value=start)
    if stop <= start:
        raise InvalidRequest("trim", f"end {stop:g}s is not after start {start:g}s", value=end)
    first = round(start * video.fps)
    last = min(video.num_frames, round(stop * video.fps))
    last = max(last, first + 1)
    return Video(video.frames[first:last], fps=video.fps, metadata=dict(video.metadata))


LOOP_MODES = ("crossfade", "pingpong", "repeat")


def loop(video: Video, mode: str = "crossfade", *, count: int = 2, overlap: float | None = None) -> Video:
    """Make the clip loop.

    - ``crossfade`` (default): the end dissolves into the beginning, so playing it on repeat shows no jump; the clip
      gets ``overlap`` seconds shorter (default a quarter of it, at most 1 s).
    - ``pingpong``: forwards then backwards (``2F - 2`` frames), which always loops seamlessly.
    - ``repeat``: the clip ``count`` times in a row.
    """
    if mode not in LOOP_MODES:
        raise InvalidRequest("loop.mode", f"{mode!r} is not a loop mode", value=mode, allowed=", ".join(LOOP_MODES))
    frames = video.frames
    if mode == "repeat":
        if not 1 <= count <= 100:
            raise InvalidRequest("loop.count", f"must be between 1 and 100, got {count}", value=count)
        out = np.concatenate([frames] * count)
    elif mode == "pingpong":
        out = np.concatenate([frames, frames[-2:0:-1]]) if video.num_frames > 2 else frames
    else:
        seconds = overlap if overlap is not None else min(1.0, video.duration / 4)
        n = round(seconds * video.fps)
        if n < 1 or 2 * n > video.num_frames:
            raise InvalidRequest(
                "loop.overlap",
                f"{seconds:g}s does not fit a {video.duration:g}s clip",
                value=seconds,
                allowed=f"between {1 / video.fps:g} and {video.duration / 2:g}",
            )
        # the tail fades into the head; the head's first n frames are then dropped, so frame -1 flows into frame 0
        mid = transition_frames(frames[-n:], frames[:n], "dissolve")
        out = np.concatenate([frames[n:-n], mid])
    return Video(np.ascontiguousarray(out), fps=video.fps, metadata=dict(video.metadata))


def has_audio(path: str | os.PathLike[str]) -> bool:
    """Whether a media file holds an audio stream."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError:
        return False


def mux_audio(
    video_path: str | os.PathLike[str],
    audio_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    start: float = 0.0,
    volume: float = 1.0,
    fade_in: float = 0.0,
    fade_out: float = 0.0,
) -> Path:
    """Put ``audio_path`` (from ``start`` seconds into it) under the video, trimmed or padded with silence to exactly
    the video's length. The video stream is copied, not re-encoded; its tags (the recipe) are kept.

    ``output`` defaults to replacing ``video_path`` in place (atomically). Audio is AAC in MP4 and Opus in WebM; a
    GIF or PNG folder cannot carry sound.
    """
    src = Path(video_path)
    audio = Path(audio_path)
    dst = Path(output) if output is not None else src
    if not audio.is_file():
        raise InvalidRequest("audio", f"file not found: {audio}", value=str(audio))
    suffix = dst.suffix.lower()
    codec = {".mp4": "aac", ".m4v": "aac", ".mov": "aac", ".webm": "libopus"}.get(suffix)
    if codec is None:
        raise InvalidRequest(
            "audio", f"a {suffix or 'folder'} output cannot carry sound", value=str(dst), allowed=".mp4, .mov, .webm"
        )
    if not has_audio(audio):
        raise InvalidRequest("audio", f"{audio} holds no audio stream", value=str(audio))
    if not 0 <= volume <= 10:
        raise InvalidRequest("audio.volume", f"must be between 0 and 10, got {volume:g}", value=volume)
    from .ffmpeg import media_info

    vinfo = media_info(src)["video"]
    if vinfo is None:
        raise InvalidRequest("video", f"{src} has no video stream", value=str(src))
    length = vinfo["duration"]
    chain = [f"atrim=start={max(0.0, start):.6f}", "asetpts=PTS-STARTPTS", f"volume={volume:g}"]
    if fade_in > 0:
        chain.append(f"afade=t=in:st=0:d={min(fade_in, length):.6f}")
    if fade_out > 0:
        d = min(fade_out, length)
        chain.append(f"afade=t=out:st={length - d:.6f}:d={d:.6f}")
    # pad with silence to the whole length, then cut at exactly the video's end
    chain += [f"apad=whole_dur={length:.6f}", f"atrim=end={length:.6f}"]
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.audio{dst.suffix}")
    args = [
        "-i",
        str(src),
        "-i",
        str(audio),
        "-filter_complex",
        f"[1:a]{','.join(chain)}[a]",
        "-map",
        "0:v:0",
        "-map",
        "[a]",
        "-c:v",
        "copy",
        "-c:a",
        codec,
        "-b:a",
        "128k",
        "-map_metadata",
        "0",
    ]
    if codec == "aac":
        args += ["-movflags", "faststart+use_metadata_tags"]
    try:
        run_ffmpeg([*args, str(tmp)])
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    if dst != src:
        from ..video import sidecar_path

        side = sidecar_path(src)
        if side.is_file() and not sidecar_path(dst).exists():
            sidecar_path(dst).write_text(side.read_text(encoding="utf-8"), encoding="utf-8")
    return dst


def export_gif(
    video: Video,
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    width: int | None = None,
    colors: int = 256,
    dither: str = "sierra2_4a",
) -> Path:
    """Write a GIF with a palette computed from the clip itself (ffmpeg palettegen/paletteuse), optionally at a lower
    fps or width (height follows the aspect ratio), looping forever."""
    if not 2 <= colors <= 256:
        raise InvalidRequest("colors", f"must be between 2 and 256, got {colors}", value=colors)
    dithers = ("sierra2_4a", "bayer", "floyd_steinberg", "sierra2", "heckbert", "none")
    if dither not in dithers:
        raise InvalidRequest("dither", f"{dither!r} is not a dither mode", allowed=", ".join(dithers))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pre = []
    if fps is not None:
        pre.append(f"fps={fps:g}")
    if width is not None:
        pre.append(f"scale={width}:-1:flags=lanczos")
    head = (",".join(pre) + ",") if pre else ""
    graph = f"{head}split[a][b];[a]palettegen=max_colors={colors}:stats_mode=full[p];[b][p]paletteuse=dither={dither}"
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp.gif")
    args = [
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{video.width}x{video.height}",
        "-r",
        f"{video.fps:g}",
        "-i",
        "-",
        "-filter_complex",
        graph,
        "-loop",
        "0",
        "-f",
        "gif",
        str(tmp),
    ]
    try:
        run_ffmpeg(args, input=np.ascontiguousarray(video.frames).tobytes())
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
