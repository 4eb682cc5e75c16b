"""The bundled ffmpeg binary (from imageio-ffmpeg), so no system ffmpeg is ever needed."""

from __future__ import annotations

import functools
import subprocess

__all__ = ["ffmpeg_exe", "run_ffmpeg"]


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
