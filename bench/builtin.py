"""Seconds per 16-frame clip of the built-in model at default settings (median of several runs), on this CPU.

Measures the whole library call (`kinema.generate`: load from cache, text encoding, 20 guided denoising steps,
assembling the Video), without saving, after one warm-up call that loads the weights. Targets: at most 3 s on a 2-core
CPU machine; the goal is under 2 s (faster than real time: a clip is 2 s long).

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
    times = []
    for i in range(args.runs):
        t = time.perf_counter()
        result = kinema.generate(PROMPTS[i % len(PROMPTS)], seed=i)
        times.append(time.perf_counter() - t)
        assert result.video.num_frames == 16
    med = statistics.median(times)
    print(
        f"built-in, 16 frames 64x64, 20 steps, default guidance: median {med:.2f}s "
        f"(min {min(times):.2f}s, max {max(times):.2f}s, {args.runs} runs, {torch.get_num_threads()} threads)"
    )
    body = "\n".join([
        "## Built-in model speed (`bench/builtin.py`)",
        "",
        "One 16-frame 64x64 clip at default settings (20 denoising steps with classifier-free guidance), the whole "
        "`kinema.generate` call without saving, after a warm-up. Target: at most 3 s on a 2-core CPU; goal under 2 s "
        "(faster than real time).",
        "",
        "| median (s) | min (s) | max (s) | runs | torch threads |",
        "|---|---|---|---|---|",
        f"| {med:.2f} | {min(times):.2f} | {max(times):.2f} | {args.runs} | {torch.get_num_threads()} |",
        "",
        f"Machine: {machine()}.",
    ])  # fmt: skip
    if not args.no_write:
        write_section("builtin", body)


if __name__ == "__main__":
    main()
