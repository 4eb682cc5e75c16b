"""MP4 encoding: Kinema's writer (PyAV, in process) against the ffmpeg binary's CLI on the same frames and settings.

Both encode the same uint8 RGB frames to H.264, yuv420p, CRF 18, preset medium, faststart; the CLI gets them as
raw video on stdin (the way diffusers' export and most scripts drive ffmpeg). Runs alternate A/B to share machine
noise; the figure is the ratio of medians. Goal: at most 1.1x.

    ./run python bench/encode.py [--frames 81] [--size 832x480] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

from kinema import Video  # noqa: E402
from kinema.media.ffmpeg import ffmpeg_exe  # noqa: E402


def frames(n: int, w: int, h: int) -> np.ndarray:
    """A moving gradient with texture: content an encoder has to work on, deterministic."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 24, (h, w, 1)).astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        r = (x + 3 * i) % 256
        g = (y + 2 * i) % 256
        b = ((x + y) / 2 + i) % 256
        out[i] = np.clip(np.stack([r, g, b], -1) + noise, 0, 255).astype(np.uint8)
    return out


def kinema_write(clip: np.ndarray, fps: int, path: Path) -> float:
    t = time.perf_counter()
    Video(clip, fps=fps).save(path, crf=18, sidecar=False)
    return time.perf_counter() - t


def ffmpeg_write(clip: np.ndarray, fps: int, path: Path) -> float:
    f, h, w, _ = clip.shape
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-preset",
        "medium",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        str(path),
    ]
    t = time.perf_counter()
    subprocess.run(cmd, input=clip.tobytes(), check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--size", default="832x480")
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    cases = [(args.frames, w, h), (16, 64, 64)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, cw, ch in cases:
            clip = frames(n, cw, ch)
            kin, cli = [], []
            kinema_write(clip, args.fps, Path(tmp) / "warm.mp4")  # load codecs once
            for _ in range(args.repeats):
                kin.append(kinema_write(clip, args.fps, Path(tmp) / "k.mp4"))
                cli.append(ffmpeg_write(clip, args.fps, Path(tmp) / "c.mp4"))
            k, c = statistics.median(kin), statistics.median(cli)
            rows.append((f"{n} frames {cw}x{ch}", k, c, k / c))
            print(f"{n} frames {cw}x{ch}: kinema {k * 1000:.0f} ms, ffmpeg CLI {c * 1000:.0f} ms, ratio {k / c:.2f}x")
    body = [
        "## MP4 encoding (`bench/encode.py`)",
        "",
        f"Kinema's writer (PyAV in process) against the ffmpeg CLI fed raw frames on stdin; H.264, yuv420p, CRF 18, "
        f"preset medium, faststart; median of {args.repeats} alternating runs. Goal: ratio at most 1.1x.",
        "",
        "| clip | Kinema (ms) | ffmpeg CLI (ms) | ratio |",
        "|---|---|---|---|",
        *(f"| {name} | {k * 1000:.0f} | {c * 1000:.0f} | {r:.2f}x |" for name, k, c, r in rows),
        "",
        f"Machine: {machine()}.",
    ]
    if not args.no_write:
        write_section("encode", "\n".join(body))


if __name__ == "__main__":
    main()
