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

Frame 0 alone cannot show whether the given frames shape the whole clip, so image-to-video and extension are also
measured over the second half of the clip (:func:`_whole_clip`): on the pixels that stay still in the real clip of
the same scene (the static background), the PSNR of the generated late frames against the real ones, between a floor
(a text-to-video clip of the same caption: what the prompt alone gives) and a ceiling (the given frame held still);
and whether two different start images with the same caption and seed still give different clips at the end.
The static background favours a clip that holds still (its pixels are mostly flat sky, its ceiling the frame held),
so :func:`_along_path` also measures image-to-video where the given image should simply move with the camera: on
clear, subject-free versions of held-out scenes, the late frames against the real ones over the pixels frame 0 saw,
between the same floor and a ceiling of frame 0 moved along the real camera path.

One evaluation's adherence has a sampling error of about 0.01 on 200 prompts, as large as what one change to a
recipe moves. Two checkpoints (or two settings) drawn on the same prompts and seeds disagree on far fewer checks than
that suggests, so :func:`paired_difference` compares two reports clip by clip (``kinema eval builtin --against
EARLIER.json``): the difference and its paired standard error, and the checks each side got right alone.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["evaluate", "format_paired", "format_report", "grid_score", "paired_difference", "psnr", "static_psnr"]

#: frames an extension is conditioned on (the backend's OVERLAP: one temporal patch)
EXTEND_KNOWN = 4
#: a pixel is static background when it never moves more than this many levels from frame 0 in the real clip
STATIC_LEVELS = 8
#: a clip counts in the static-background PSNR only if at least this share of its late pixels are static
MIN_STATIC_SHARE = 0.1


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def static_psnr(generated: np.ndarray, real: np.ndarray, start: int) -> float | None:
    """PSNR (dB) of ``generated`` against ``real`` (both (F, H, W, 3) uint8) over frames ``start``.. on the pixels
    that stay within :data:`STATIC_LEVELS` of frame 0 throughout the real clip; None when too few do."""
    r = real.astype(np.int16)
    still = np.abs(r - r[:1]).max(axis=(0, 3)) <= STATIC_LEVELS  # (H, W)
    if still.mean() < MIN_STATIC_SHARE:
        return None
    d = generated[start:].astype(np.float64) - real[start:].astype(np.float64)  # (F', H, W, 3)
    mse = float((d**2)[:, still].mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def grid_score(clips: np.ndarray, cell: int) -> float:
    """How visible a grid of ``cell``-pixel squares is in ``clips`` ((B, F, H, W, 3) uint8): the mean pixel step
    across the cells' borders over the mean step inside them, both directions. 1.0: no grid (real clips score about
    1.02 at 16 pixels); v1's 8-pixel tokens score 3.8."""
    x = clips.astype(np.float64)
    dx = np.abs(np.diff(x, axis=3)).mean(axis=(0, 1, 2, 4))  # (W-1,): the step from column c to c+1
    dy = np.abs(np.diff(x, axis=2)).mean(axis=(0, 1, 3, 4))  # (H-1,)

    def ratio(step: np.ndarray) -> tuple[float, float]:
        border = np.arange(cell - 1, len(step), cell)
        return float(step[border].mean()), float(np.delete(step, border).mean())

    (bx, ix), (by, iy) = ratio(dx), ratio(dy)
    return (bx + by) / max(ix + iy, 1e-9)


def _mean_db(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return round(float(np.mean(kept)), 2) if kept else None


def _whole_clip(
    conditioned: np.ndarray, t2v: np.ndarray, real: np.ndarray, last_known: int
) -> dict[str, float | int | None]:
    """Late-frame static-background PSNR of clips conditioned on real frames 0..last_known, beside the floor (the
    same captions' text-to-video clips) and the ceiling (real frame ``last_known`` held still)."""
    start = real.shape[1] // 2
    frozen = np.repeat(real[:, last_known : last_known + 1], real.shape[1], axis=1)
    rows = [
        (static_psnr(c, r, start), static_psnr(t, r, start), static_psnr(f, r, start))
        for c, t, f, r in zip(conditioned, t2v, frozen, real, strict=True)
    ]
    counted = [row for row in rows if row[0] is not None]
    return {
        "static_psnr_db": _mean_db([row[0] for row in counted]),
        "floor_t2v_db": _mean_db([row[1] for row in counted]),
        "ceiling_frozen_db": _mean_db([row[2] for row in counted]),
        "clips": len(counted),
    }


def _masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR of uint8 clips over the pixels where ``mask`` (F, H, W) is set."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = float(d[mask.astype(bool)].mean())
    return 99.0 if mse < 1e-10 else 10 * math.log10(255.0**2 / mse)


def _along_path(
    sample_clips: Callable[..., np.ndarray], scenes: list[Any], seed: int, frames: int, height: int, width: int
) -> dict[str, Any]:
    """Image-to-video of clear, subject-free versions of ``scenes`` (what frame 0 shows should only move with the
    camera): frames F/2.. against the real clip over the pixels frame 0 saw along the real camera path, beside the
    floor (text-to-video of the same caption) and the ceiling (frame 0 moved along the real path); and how often the
    camera detector reads the asked move."""
    import dataclasses

    from . import detectors, world
    from .sampling import camera_warp, to_model_space, to_uint8

    rng = np.random.default_rng(seed)
    plain = [dataclasses.replace(s, weather="clear", subject=None, color=None, size=None, motion=None) for s in scenes]
    captions = [world.caption(s, rng) for s in plain]
    real = world.render_batch(plain, seed=seed, num_frames=frames, height=height, width=width)
    late = real.shape[1] // 2
    t2v = sample_clips(captions, None, seed)
    i2v = sample_clips(captions, real[:, :1], seed)
    moved, seen = camera_warp(to_model_space(real[:, :1])[:, :, 0], [s.camera for s in plain], real.shape[1])
    ceiling = to_uint8(moved)
    rows = [
        [_masked_psnr(c[late:], r[late:], m[0, late:]) for c in (i2v[i], t2v[i], ceiling[i])]
        for i, (r, m) in enumerate(zip(real, seen.numpy(), strict=True))
    ]
    return {
        "psnr_db": _mean_db([row[0] for row in rows]),
        "floor_t2v_db": _mean_db([row[1] for row in rows]),
        "ceiling_moved_db": _mean_db([row[2] for row in rows]),
        "camera_right": sum(detectors.detect_camera(c) == s.camera for c, s in zip(i2v, plain, strict=True)),
        "clips": len(plain),
    }


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _smoothness(clips: np.ndarray) -> float:
    """Mean absolute difference between consecutive frames, in [0, 1]. (B, F, H, W, 3) -> float."""
    d = np.abs(np.diff(clips.astype(np.float32), axis=1))
    return float(d.mean() / 255.0)


def evaluate(
    n: int = 200,
    *,
    weights: str | Path | None = None,
    steps: int = 20,
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    motion_guidance: float | None = None,
    image_guidance: float | None = None,
    shift: float | None = None,
    seed: int = 1234,
    batch_size: int = 8,
    n_i2v: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    from ..errors import InvalidRequest
    from . import detectors, image_defaults, load_model, motion_defaults, sampling_defaults, world
    from .sampling import check_guidance_interval, sample

    if n < 1:
        raise InvalidRequest("n", f"must be at least 1, got {n}")
    if guidance is not None and not guidance > 0:
        raise InvalidRequest("guidance", f"must be above 0, got {guidance}", value=guidance, allowed="> 0 (1: none)")
    if guidance_interval is not None:
        check_guidance_interval(guidance_interval)  # before the model loads and the real clips render
    if shift is not None and not 0 < shift <= 100:
        raise InvalidRequest(
            "shift", f"must be above 0 and at most 100, got {shift}", value=shift, allowed="0 < shift <= 100"
        )
    if motion_guidance is not None and not motion_guidance >= 0:
        message = f"must be 0 or more, got {motion_guidance}"
        raise InvalidRequest("motion_guidance", message, value=motion_guidance, allowed=">= 0 (0: none)")
    if image_guidance is not None and not image_guidance >= 0:
        message = f"must be 0 or more, got {image_guidance}"
        raise InvalidRequest("image_guidance", message, value=image_guidance, allowed=">= 0 (0: none)")
    m = min(n, n_i2v if n_i2v is not None else 32)  # image-to-video clips, after the n text-to-video ones
    work = n + m  # on_progress counts clips of both kinds
    t0 = time.perf_counter()
    model, tokenizer, info = load_model(weights)
    own_guidance, own_interval = sampling_defaults(info)  # the checkpoint's defaults, where the caller gave none
    guidance = own_guidance if guidance is None else guidance
    guidance_interval = own_interval if guidance_interval is None else guidance_interval
    own_motion, motion_interval = motion_defaults(info)
    motion = own_motion if motion_guidance is None else motion_guidance
    own_image, image_interval = image_defaults(info)
    image = own_image if image_guidance is None else image_guidance
    cfg = model.cfg
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng, split="heldout") for _ in range(n)]
    captions = [world.caption(s, rng) for s in scenes]
    real = world.render_batch(scenes, seed=seed, num_frames=cfg.frames, height=cfg.height, width=cfg.width)

    checks: dict[str, list[bool]] = defaultdict(list)
    real_checks: dict[str, list[bool]] = defaultdict(list)
    motions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    generated: list[np.ndarray] = []
    examples: list[dict[str, Any]] = []
    clip_checks: list[dict[str, bool]] = []  # per text-to-video clip, for a paired comparison with another report

    def text_clips(prompts: list[str], at: int) -> np.ndarray:
        clips = sample(
            model,
            tokenizer,
            prompts,
            steps=steps,
            guidance=guidance,
            guidance_interval=guidance_interval,
            seed=at,
            shift=shift,
            motion_guidance=motion,
            motion_interval=motion_interval,
        )
        assert isinstance(clips, np.ndarray)
        return clips

    for start in range(0, n, batch_size):
        chunk = captions[start : start + batch_size]
        clips = text_clips(chunk, seed + start)
        generated.append(clips)
        for j, clip in enumerate(clips):
            scene = scenes[start + j]
            detected = detectors.detect_all(clip)
            result = detectors.score_detected(scene, detected)
            clip_checks.append({attr: bool(ok) for attr, ok in sorted(result.items())})
            for attr, ok in result.items():
                checks[attr].append(bool(ok))
            if scene.subject is not None:  # what each asked motion was drawn as ("none": no subject found)
                drawn = str(detected["motion"]) if detected["color"] is not None else "none"
                motions[str(scene.motion)][drawn] += 1
            for attr, ok in detectors.score(scene, real[start + j]).items():
                real_checks[attr].append(bool(ok))
            if len(examples) < 12:
                examples.append({"caption": chunk[j], "scene": scene.to_dict(), "checks": result})
        if on_progress:
            on_progress(min(n, start + batch_size), work)
    gen = np.concatenate(generated)

    # image-to-video: the real clip's frame 0 is the given image; the same caption and seed with the next scene's
    # image shows whether the image still matters at the end; extension continues the real clip's first frames
    raw_psnrs: list[float] = []
    i2v: list[np.ndarray] = []
    swapped: list[np.ndarray] = []
    extended: list[np.ndarray] = []
    other = [(i + 1) % m for i in range(m)]

    def conditioned(prompts: list[str], known: np.ndarray, at: int) -> tuple[np.ndarray, np.ndarray]:
        clips, raw = sample(
            model,
            tokenizer,
            prompts,
            steps=steps,
            guidance=guidance,
            shift=shift,
            seed=at,
            guidance_interval=guidance_interval,
            known=known,
            num_known=known.shape[1],
            return_raw=True,
            motion_guidance=motion,
            motion_interval=motion_interval,
            image_guidance=image,
            image_interval=image_interval,
        )
        return clips, raw

    # does a clip that keeps its given image still do what its caption asks (the camera, the subject's motion)?
    i2v_checks: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, m, batch_size):
        stop = min(m, start + batch_size)
        prompts, known = captions[start:stop], real[start:stop, :1]
        clips, raw = conditioned(prompts, known, seed + 7 + start)
        raw_psnrs.extend(psnr(raw[i, 0], known[i, 0]) for i in range(stop - start))
        for i, clip in enumerate(clips):
            for attr, ok in detectors.score_detected(scenes[start + i], detectors.detect_all(clip)).items():
                i2v_checks[attr].append(bool(ok))
        i2v.append(clips)
        swapped.append(conditioned(prompts, real[other[start:stop], :1], seed + 7 + start)[0])
        extended.append(conditioned(prompts, real[start:stop, :EXTEND_KNOWN], seed + 11 + start)[0])
        if on_progress:
            on_progress(n + stop, work)
    i2v_clips, swapped_clips, ext_clips = np.concatenate(i2v), np.concatenate(swapped), np.concatenate(extended)

    def plain_clips(prompts: list[str], known: np.ndarray | None, at: int) -> np.ndarray:
        parts = []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            if known is None:
                parts.append(text_clips(prompts[chunk], at + start))
            else:
                parts.append(conditioned(prompts[chunk], known[chunk], at + start)[0])
        return np.concatenate(parts)

    along = _along_path(plain_clips, scenes[:m], seed + 13, cfg.frames, cfg.height, cfg.width)
    late = cfg.frames // 2
    distinct = {
        "first_frame_diff": round(_mean_abs(i2v_clips[:, 0], swapped_clips[:, 0]), 2),
        "late_diff": round(_mean_abs(i2v_clips[:, late:], swapped_clips[:, late:]), 2),
        "real_late_diff": round(_mean_abs(real[:m, late:], real[other, late:]), 2),
    }
    distinct["late_over_first"] = round(distinct["late_diff"] / max(distinct["first_frame_diff"], 1e-6), 3)

    per_attr = {k: round(float(np.mean(v)), 4) for k, v in sorted(checks.items())}
    all_checks = [x for v in checks.values() for x in v]
    real_all = [x for v in real_checks.values() for x in v]
    return {
        "adherence": round(float(np.mean(all_checks)), 4),
        "per_attribute": per_attr,
        # the subject's motion by the motion asked: how often it was drawn, and what it was drawn as instead
        "motion_by_kind": {
            asked: {"asked": sum(drawn.values()), "right": drawn.get(asked, 0), "drawn": dict(sorted(drawn.items()))}
            for asked, drawn in sorted(motions.items())
        },
        "checks": len(all_checks),
        "n": n,
        "split": "heldout",
        "detector_accuracy_on_real": {
            "overall": round(float(np.mean(real_all)), 4),
            **{k: round(float(np.mean(v)), 4) for k, v in sorted(real_checks.items())},
        },
        "i2v_psnr_db": round(float(np.mean(raw_psnrs)), 2),
        "i2v_samples": m,
        "i2v_whole_clip": _whole_clip(i2v_clips, gen[:m], real[:m], 0),
        "i2v_distinct": distinct,
        # the image-to-video clips scored by the text-to-video checks: the given image fixes the time, colour and
        # weather, so the camera and the motion say whether it also holds the clip still
        "i2v_adherence": {
            "overall": round(float(np.mean([x for v in i2v_checks.values() for x in v])), 4),
            **{k: round(float(np.mean(v)), 4) for k, v in sorted(i2v_checks.items())},
        },
        "i2v_temporal": round(_smoothness(i2v_clips), 5),
        "i2v_along_path": along,
        "extend_whole_clip": _whole_clip(ext_clips, gen[:m], real[:m], EXTEND_KNOWN - 1),
        "temporal": {"generated": round(_smoothness(gen), 5), "real": round(_smoothness(real), 5)},
        # the token's size in pixels: where a grid would show if neighbouring tokens disagree at their borders
        "grid": {
            "cell": (cell := cfg.token_pixels[0]),
            "generated": round(grid_score(gen, cell), 3),
            "real": round(grid_score(real, cell), 3),
        },
        "steps": steps,
        "guidance": guidance,
        "guidance_interval": list(guidance_interval),
        "motion_guidance": motion,
        "motion_interval": list(motion_interval),
        "image_guidance": image,
        "image_interval": list(image_interval),
        "shift": cfg.sampling_shift if shift is None else shift,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_per_clip": round((time.perf_counter() - t0) / (n + m), 3),
        "model": {k: info.get(k) for k in ("steps_run", "train_seconds", "hardware", "parameters")},
        "examples": examples,
        # what a later report needs to be compared with this one clip by clip (paired_difference): the prompts drawn,
        # as a digest (same n, seed and world give the same one), and what each clip got right
        "prompts_sha256": _digest(captions),
        "clip_checks": clip_checks,
    }


def _digest(captions: list[str]) -> str:
    return hashlib.sha256("\n".join(captions).encode()).hexdigest()[:16]


def paired_difference(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` against ``base``, two :func:`evaluate` reports on the same prompts and seeds, clip by clip.

    Per attribute and overall: both shares right, their difference (new - base), its standard error over the paired
    clips (each clip's change in checks right, so the checks of one clip are not counted as independent), and the
    checks that only one side got right (``gained``: new alone, ``lost``: base alone). Raises InvalidRequest naming
    ``against`` when the two reports were not drawn on the same prompts.
    """
    from ..errors import InvalidRequest

    for report in (base, new):
        if not isinstance(report.get("clip_checks"), list) or not isinstance(report.get("prompts_sha256"), str):
            raise InvalidRequest(
                "against",
                "the report has no per-clip checks (written before they existed, or not by kinema eval builtin)",
                allowed="a report from kinema eval builtin --json",
            )
    if base["prompts_sha256"] != new["prompts_sha256"] or len(base["clip_checks"]) != len(new["clip_checks"]):
        raise InvalidRequest(
            "against",
            f"the report's prompts differ from these (its n {base.get('n')}, seed {base.get('seed')}; "
            f"here n {new.get('n')}, seed {new.get('seed')})",
            allowed="a report with the same --n and --seed, from the same world",
        )
    pairs = list(zip(base["clip_checks"], new["clip_checks"], strict=True))
    attrs = sorted({k for a, _ in pairs for k in a})

    def compare(keys: list[str]) -> dict[str, Any]:
        rows = [
            (sum(a[k] for k in keys if k in a), sum(b[k] for k in keys if k in b), sum(k in a for k in keys))
            for a, b in pairs
        ]
        rows = [r for r in rows if r[2]]
        total = sum(r[2] for r in rows)
        change = np.array([b - a for a, b, _ in rows], dtype=float)
        se = float(change.std(ddof=1)) * math.sqrt(len(rows)) / total if len(rows) > 1 else float("nan")
        return {
            "base": round(sum(r[0] for r in rows) / total, 4),
            "new": round(sum(r[1] for r in rows) / total, 4),
            "difference": round(float(change.sum()) / total, 4),
            "se": round(se, 4),
            "checks": total,
            "gained": sum(bool(b.get(k)) and not a.get(k) for a, b in pairs for k in keys if k in a),
            "lost": sum(bool(a.get(k)) and not b.get(k) for a, b in pairs for k in keys if k in a),
        }

    return {
        "clips": len(pairs),
        "adherence": compare(attrs),
        "per_attribute": {k: compare([k]) for k in attrs},
    }


def format_paired(paired: dict[str, Any]) -> str:
    """:func:`paired_difference` as lines: a change is within noise unless it is about twice its standard error."""

    def line(name: str, d: dict[str, Any]) -> str:
        return (
            f"  {name:<10} {d['base']:.3f} -> {d['new']:.3f}  {d['difference']:+.3f} (se {d['se']:.3f}; "
            f"{d['gained']} gained, {d['lost']} lost)"
        )

    return "\n".join(
        [
            f"against the earlier report, the same {paired['clips']} prompts and seeds:",
            line("adherence", paired["adherence"]),
            *(line(k, d) for k, d in paired["per_attribute"].items()),
        ]
    )


def _whole_line(name: str, w: dict[str, Any]) -> str:
    def db(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    return (
        f"{name}, second half, static background PSNR: {db(w['static_psnr_db'])} dB (floor: text-to-video "
        f"{db(w['floor_t2v_db'])}, ceiling: the given frame held {db(w['ceiling_frozen_db'])}; {w['clips']} clips)"
    )


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"adherence {report['adherence']:.3f} over {report['checks']} checks on {report['n']} held-out prompts",
        *(f"  {k:<10} {v:.3f}" for k, v in report["per_attribute"].items()),
        *(
            [
                "  motion by kind: "
                + ", ".join(f"{k} {v['right']}/{v['asked']}" for k, v in report["motion_by_kind"].items())
            ]
            if report.get("motion_by_kind")
            else []
        ),
        f"detectors on real clips: {report['detector_accuracy_on_real']['overall']:.3f}",
        f"image-to-video frame-0 PSNR: {report['i2v_psnr_db']:.1f} dB ({report['i2v_samples']} clips)",
        *(
            _whole_line(name, report[key])
            for name, key in (("image-to-video", "i2v_whole_clip"), ("extension", "extend_whole_clip"))
            if key in report
        ),
        *(
            [
                f"two start images, same caption and seed: differ by {d['first_frame_diff']:.1f} levels at frame 0, "
                f"{d['late_diff']:.1f} in the second half (real clips of the two scenes: {d['real_late_diff']:.1f})"
            ]
            if (d := report.get("i2v_distinct"))
            else []
        ),
        *(
            [
                f"image-to-video of clear, subject-free scenes, late frames along the camera path: {p['psnr_db']} dB "
                f"(floor, text-to-video: {p['floor_t2v_db']} dB; ceiling, frame 0 moved along the path: "
                f"{p['ceiling_moved_db']} dB); camera right in {p['camera_right']} of {p['clips']}"
            ]
            if (p := report.get("i2v_along_path"))
            else []
        ),
        *(
            [
                f"image-to-video clips by the same checks: {a['overall']:.3f} ("
                + ", ".join(f"{k} {v:.3f}" for k, v in a.items() if k != "overall")
                + ")"
            ]
            if (a := report.get("i2v_adherence"))
            else []
        ),
        f"temporal change per frame: generated {report['temporal']['generated']:.4f}, "
        + (f"image-to-video {report['i2v_temporal']:.4f}, " if "i2v_temporal" in report else "")
        + f"real {report['temporal']['real']:.4f}",
        *(
            [f"token grid ({g['cell']}-pixel cells, 1.0: none): generated {g['generated']:.2f}, real {g['real']:.2f}"]
            if (g := report.get("grid"))
            else []
        ),
        f"{report['seconds']:.0f}s ({report['seconds_per_clip']:.2f}s per clip)",
    ]
    return "\n".join(lines)
