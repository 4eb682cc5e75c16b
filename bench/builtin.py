"""Seconds per 16-frame clip of the built-in model at default settings (median of several runs), on this CPU.

Measures the whole library call (`kinema.generate`: load from cache, text encoding, 20 denoising steps, assembling
the Video), without saving, after one warm-up call that loads the weights. Targets: at most 3 s on a 2-core CPU
machine; the goal is under 2 s (faster than real time: a clip is 2 s long). The default guidance is 1.5 at the high
noise levels only (t >= 0.8: two network passes at the first 9 of 20 steps, one at the others); the same clips
without guidance (scale 1: one pass per step) are timed alternately beside them, for the ratio.

    ./run python bench/builtin.py [--runs 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402

import kinema  # noqa: E402

PROMPTS = [
    "A cinematic sunrise over mountains, clouds moving slowly",
    "a red ball bouncing on green grass",
    "A drone shot of ocean waves crashing on rocks",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kinema.generate(PROMPTS[0], seed=0)  # warm-up: loads the weights
    times: dict[str, list[float]] = {"default": [], "no guidance": []}
    for i in range(args.runs):
        for name, extra in (("default", {}), ("no guidance", {"guidance_scale": 1.0})):
            t = time.perf_counter()
            result = kinema.generate(PROMPTS[i % len(PROMPTS)], seed=i, **extra)  # type: ignore[arg-type]
            times[name].append(time.perf_counter() - t)
            assert result.video.num_frames == 16
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, v in times.items():
        spread = f"min {min(v):.2f}s, max {max(v):.2f}s, {args.runs} runs, {torch.get_num_threads()} threads"
        print(f"built-in, 16 frames 64x64, 20 steps, {name}: median {med[name]:.2f}s ({spread})")
    rows = [f"| {name} | {med[name]:.2f} | {min(v):.2f} | {max(v):.2f} | {args.runs} | {torch.get_num_threads()} |"
            for name, v in times.items()]  # fmt: skip
    body = "\n".join([
        "## Built-in model speed (`bench/builtin.py`)",
        "",
        "One 16-frame 64x64 clip at default settings (20 denoising steps; guidance 1.5 at noise levels t >= 0.8, "
        "so two network passes at the first 9 steps and one at the other 11), the whole `kinema.generate` call "
        "without saving, after a warm-up; beside it, alternately, the same clips without guidance (scale 1: one "
        "pass per step). Target: at most 3 s on a 2-core CPU; goal under 2 s (faster than real time).",
        "",
        "| settings | median (s) | min (s) | max (s) | runs | torch threads |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Default against no guidance: {med['default'] / med['no guidance']:.2f}x the time. Machine: {machine()}.",
    ])  # fmt: skip
    if not args.no_write:
        write_section("builtin", body)


if __name__ == "__main__":
    main()
