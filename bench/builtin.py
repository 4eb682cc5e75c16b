"""Seconds per 16-frame clip of the built-in model at default settings (median of several runs), on this CPU.

Measures the whole library call (`kinema.generate`: load from cache, text encoding, 20 denoising steps, assembling
the Video), without saving, after one warm-up call that loads the weights. Targets: at most 3 s on a 2-core CPU
machine; the goal is under 2 s (faster than real time: a clip is 2 s long). The default guidance is 1.5 at the high
noise levels only (v1: t >= 0.8, two network passes at the first 9 of 20 steps, one at the others; a checkpoint
that carries its own defaults samples with them, the v2 recipe's 1.5 at t >= 0.6); the same clips without guidance
(scale 1: one pass per step) are timed alternately beside them, for the ratio.

    ./run python bench/builtin.py [--runs 7] [--threads N] [--against PATH]

``--against PATH`` times another checkpoint (e.g. a v1 one, 64x64 in pixels, beside the shipped v2: 128x128, the DiT
in the autoencoder's latent, decoded to pixels) in the same loop, alternately with the shipped weights: a model's
time does not depend on how far it is trained, so a checkpoint with any weights gives its speed.
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
from kinema.builtin import checkpoint_config, weights_path  # noqa: E402

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
    ap.add_argument("--against", type=Path, default=None, help="another checkpoint to time beside the shipped one")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shipped = _label(weights_path())
    settings: list[tuple[str, dict[str, object]]] = [
        (f"{shipped} (shipped), default", {}),
        (f"{shipped} (shipped), no guidance", {"guidance_scale": 1.0}),
    ]
    if args.against is not None:
        other = _label(args.against)
        settings += [
            (f"{other}, default", {"model": str(args.against)}),
            (f"{other}, no guidance", {"model": str(args.against), "guidance_scale": 1.0}),
        ]
    for _, extra in settings:
        kinema.generate(PROMPTS[0], seed=0, **extra)  # type: ignore[arg-type]  # warm-up: loads the weights
    times: dict[str, list[float]] = {name: [] for name, _ in settings}
    for i in range(args.runs):
        for name, extra in settings:
            t = time.perf_counter()
            result = kinema.generate(PROMPTS[i % len(PROMPTS)], seed=i, **extra)  # type: ignore[arg-type]
            times[name].append(time.perf_counter() - t)
            assert result.video.num_frames == 16
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, v in times.items():
        spread = f"min {min(v):.2f}s, max {max(v):.2f}s, {args.runs} runs, {torch.get_num_threads()} threads"
        print(f"built-in, 16 frames, 20 steps, {name}: median {med[name]:.2f}s ({spread})")
    rows = [
        f"| {name} | {med[name]:.2f} | {min(v):.2f} | {max(v):.2f} | {args.runs} | {torch.get_num_threads()} |"
        for name, v in times.items()
    ]
    ratios = [f"{shipped} default against no guidance: {med[settings[0][0]] / med[settings[1][0]]:.2f}x the time."]
    if args.against is not None:
        ratios.append(
            f"{shipped} against {other} at default settings: "
            f"{med[settings[0][0]] / med[settings[2][0]]:.2f}x the time."
        )
    body = "\n".join(
        [
            "## Built-in model speed (`bench/builtin.py`)",
            "",
            "One 16-frame clip at default settings (20 denoising steps; v2: its own defaults, guidance 1.5 at noise "
            "levels t >= 0.6, so two network passes at the first 14 steps and one at the other 6; v1: 1.5 at "
            "t >= 0.8, two passes at the first 9), the whole `kinema.generate` call "
            "without saving, after a warm-up; beside it, alternately, the same clips without guidance (scale 1: one "
            "pass per step). Target: at most 3 s on a 2-core CPU; goal under 2 s (faster than real time).",
            "",
            "| settings | median (s) | min (s) | max (s) | runs | torch threads |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            " ".join(ratios) + f" Machine: {machine()}.",
        ]
    )
    if not args.no_write:
        write_section("builtin", body)


def _label(path: Path) -> str:
    """ "v2, 128x128" for a latent checkpoint, "v1, 64x64" for one in pixels, from the file's header alone."""
    cfg = checkpoint_config(path)
    version = 2 if int(cfg.get("latent_factor", 1)) > 1 else 1
    return f"v{version}, {cfg.get('width', 64)}x{cfg.get('height', 64)}"


if __name__ == "__main__":
    main()
