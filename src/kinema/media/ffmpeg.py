"""The bundled ffmpeg binary (from imageio-ffmpeg), so no system ffmpeg is ever needed."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ffmpeg_exe", "run_ffmpeg", "filter_frames", "make_tone", "media_info"]


@functools.cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run_ffmpeg(args: list[str], *, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg with ``args`` (without the program name); raise with ffmpeg's own message on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    if input is not None:
        cmd.remove("-nostdin")
    proc = subprocess.run(cmd, input=input, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace').strip()[-2000:]}")
    return proc


def filter_frames(frames: np.ndarray, fps: float, vf: str, *, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Run (F, H, W, 3) uint8 frames through an ffmpeg ``-vf`` filter graph; return the frames it outputs.

    Frames travel as raw rgb24 over pipes, so nothing is re-encoded on the way. ``out_size`` (width, height) is the
    size the filter produces (the input size when None); the number of frames out is whatever the filter makes.

    >>> import numpy as np
    >>> filter_frames(np.zeros((4, 8, 8, 3), np.uint8), 8, "scale=16:16:flags=lanczos", out_size=(16, 16)).shape
    (4, 16, 16, 3)
    """
    f, h, w, _ = frames.shape
    ow, oh = out_size or (w, h)
    args = [
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        f"{fps:g}",
        "-i",
        "-",
        "-vf",
        vf,
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    proc = run_ffmpeg(args, input=np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
    size = ow * oh * 3
    n = len(proc.stdout) // size
    if n == 0:
        raise RuntimeError(f"ffmpeg filter {vf!r} produced no frames")
    return np.frombuffer(proc.stdout[: n * size], np.uint8).reshape(n, oh, ow, 3).copy()


def make_tone(path: str | os.PathLike[str], seconds: float, frequency: float = 440.0) -> Path:
    """Write a sine tone (WAV, or AAC in .m4a) of ``seconds``: a stand-in soundtrack for tests and examples."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={frequency:g}:duration={seconds:g}", str(p)])
    return p


def media_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Streams of a media file as seen by the decoder: video frames/fps/size/duration and audio duration.

    Durations are measured from the decoded frames and samples, not read from the header, so they are exact.
    """
    import av

    info: dict[str, Any] = {"video": None, "audio": None}
    with av.open(str(path)) as container:
        if container.streams.video:
            vs = container.streams.video[0]
            vrate = vs.average_rate or vs.guessed_rate
            count = 0
            width = height = 0
            for vframe in container.decode(vs):
                count += 1
                width, height = vframe.width, vframe.height
            fps = float(vrate) if vrate else 0.0
            info["video"] = {
                "frames": count,
                "fps": fps,
                "width": width,
                "height": height,
                "duration": count / fps if fps else 0.0,
            }
    with av.open(str(path)) as container:
        if container.streams.audio:
            aus = container.streams.audio[0]
            samples = 0
            rate = aus.rate
            first_pts: float | None = None
            for aframe in container.decode(aus):
                if first_pts is None and aframe.pts is not None and aframe.time_base is not None:
                    first_pts = float(aframe.pts * aframe.time_base)
                samples += aframe.samples
            info["audio"] = {
                "codec": aus.codec_context.name,
                "sample_rate": rate,
                "samples": samples,
                "duration": samples / rate if rate else 0.0,
                "start": first_pts or 0.0,
            }
    return info
