"""Evaluating the built-in model: ``kinema eval builtin [--n N] [--json]``.

Prompt adherence is measured without people and without a learned judge: for held-out captions (attribute
combinations that never occur in training), the model generates clips, and detectors computed from the frames (sky
colour -> time of day, particle and contrast statistics -> weather, global motion -> camera, the subject's colour and
trajectory) check each attribute the caption asked for. ``adherence`` is the share of all checked attributes that
the detectors confirm.

The detectors are themselves checked: on real rendered clips of the same scenes they must agree with the truth (the
report's ``detector_accuracy_on_real``), otherwise adherence figures would mean nothing.

Also reported: image-to-video fidelity (PSNR of the model's own frame 0 against the given image, before the given
frame is written back) and temporal smoothness (mean absolute change between consecutive frames, against real clips).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL

__all__ = ["evaluate", "format_report", "psnr"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _smoothness(clips: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames, in [0, 1]. (B, F, H, W, 3) -> float."""
    d = np.abs(np.diff(clips.astype(np.float32), axis=1))
    return float(d.mean() / 255.0)


def evaluate(
    n: int = 200,
    *,
    weights: str | Path | None = None,
    steps: int = 20,
    guidance: float = DEFAULT_GUIDANCE,
    guidance_interval: tuple[float, float] = DEFAULT_GUIDANCE_INTERVAL,
    shift: float | None = None,
    seed: int = 1234,
    batch_size: int = 8,
    n_i2v: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    from ..errors import InvalidRequest
    from . import detectors, load_model, world
    from .sampling import check_guidance_interval, sample

    if n < 1:
        raise InvalidRequest("n", f"must be at least 1, got {n}")
    if not guidance > 0:
        raise InvalidRequest("guidance", f"must be above 0, got {guidance}", value=guidance, allowed="> 0 (1: none)")
    check_guidance_interval(guidance_interval)  # before the model loads and the real clips render
    m = min(n, n_i2v if n_i2v is not None else 32)  # image-to-video clips, after the n text-to-video ones
    work = n + m  # on_progress counts clips of both kinds
    t0 = time.perf_counter()
    model, tokenizer, info = load_model(weights)
    cfg = model.cfg
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng, split="heldout") for _ in range(n)]
    captions = [world.caption(s, rng) for s in scenes]
    real = world.render_batch(scenes, seed=seed, num_frames=cfg.frames, height=cfg.height, width=cfg.width)

    checks: dict[str, list[bool]] = defaultdict(list)
    real_checks: dict[str, list[bool]] = defaultdict(list)
    generated: list[np.ndarray] = []
    examples: list[dict[str, Any]] = []
    for start in range(0, n, batch_size):
        chunk = captions[start : start + batch_size]
        clips = sample(model, tokenizer, chunk, steps=steps, guidance=guidance, guidance_interval=guidance_interval,
                       seed=seed + start, shift=shift)  # fmt: skip
        assert isinstance(clips, np.ndarray)
        generated.append(clips)
        for j, clip in enumerate(clips):
            scene = scenes[start + j]
            result = detectors.score(scene, clip)
            for attr, ok in result.items():
                checks[attr].append(bool(ok))
            for attr, ok in detectors.score(scene, real[start + j]).items():
                real_checks[attr].append(bool(ok))
            if len(examples) < 12:
                examples.append({"caption": chunk[j], "scene": scene.to_dict(), "checks": result})
        if on_progress:
            on_progress(min(n, start + batch_size), work)
    gen = np.concatenate(generated)

    # image-to-video: the real clip's frame 0 is the given image
    raw_psnrs: list[float] = []
    for start in range(0, m, batch_size):
        stop = min(m, start + batch_size)
        known = real[start:stop, :1]
        _, raw = sample(model, tokenizer, captions[start:stop], steps=steps, guidance=guidance,
                        guidance_interval=guidance_interval, seed=seed + 7 + start, shift=shift, known=known,
                        num_known=1, return_raw=True)  # fmt: skip
        raw_psnrs.extend(psnr(raw[i, 0], known[i, 0]) for i in range(stop - start))
        if on_progress:
            on_progress(n + stop, work)

    per_attr = {k: round(float(np.mean(v)), 4) for k, v in sorted(checks.items())}
    all_checks = [x for v in checks.values() for x in v]
    real_all = [x for v in real_checks.values() for x in v]
    return {
        "adherence": round(float(np.mean(all_checks)), 4),
        "per_attribute": per_attr,
        "checks": len(all_checks),
        "n": n,
        "split": "heldout",
        "detector_accuracy_on_real": {
            "overall": round(float(np.mean(real_all)), 4),
            **{k: round(float(np.mean(v)), 4) for k, v in sorted(real_checks.items())},
        },
        "i2v_psnr_db": round(float(np.mean(raw_psnrs)), 2),
        "i2v_samples": m,
        "temporal": {"generated": round(_smoothness(gen), 5), "real": round(_smoothness(real), 5)},
        "steps": steps,
        "guidance": guidance,
        "guidance_interval": list(guidance_interval),
        "shift": cfg.shift if shift is None else shift,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_per_clip": round((time.perf_counter() - t0) / (n + m), 3),
        "model": {k: info.get(k) for k in ("steps_run", "train_seconds", "hardware", "parameters")},
        "examples": examples,
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"adherence {report['adherence']:.3f} over {report['checks']} checks on {report['n']} held-out prompts",
        *(f"  {k:<10} {v:.3f}" for k, v in report["per_attribute"].items()),
        f"detectors on real clips: {report['detector_accuracy_on_real']['overall']:.3f}",
        f"image-to-video frame-0 PSNR: {report['i2v_psnr_db']:.1f} dB ({report['i2v_samples']} clips)",
        f"temporal change per frame: generated {report['temporal']['generated']:.4f}, "
        f"real {report['temporal']['real']:.4f}",
        f"{report['seconds']:.0f}s ({report['seconds_per_clip']:.2f}s per clip)",
    ]
    return "\n".join(lines)
