"""Training stage 1 of the built-in model v2: the video autoencoder (``autoencoder.py``).

``python -m kinema.builtin.train_autoencoder --out DIR [--ae cpu|c32|f4] [--steps N] [--time-limit S] [--init FILE]``

The autoencoder works per frame, so it trains on single frames: random 8-aligned crops (64x64 by default) of random
frames of clips that ``world.py`` renders at 128x128. A crop costs a quarter of a frame and the network is fully
convolutional; aligning crops to the latent's 8-pixel cells (4 for ``f4``) keeps the strided convs on the same phase
as on whole frames. Loss: L1 on pixels plus ``grad_weight`` times L1 on their horizontal and vertical differences
(edges stay sharp: a sun disc's rim, a subject's outline), optionally plus ``l2_weight`` times the mean squared error,
with Gaussian noise on the latent (``AEConfig.latent_noise``). Weights are exported as their exponential moving
average.

Stages and resumption: every ``checkpoint_every`` steps the run writes ``autoencoder.safetensors`` (EMA weights) and
``ae_state.pt`` (weights, optimizer, random states, the pool's chunks) into the output folder. Started again on
the same folder, it resumes from ``ae_state.pt`` and ends with the same weights as a run that was never stopped
(CPU; the pool is re-rendered from its seeds). ``init`` instead starts a new run (new schedule, new optimizer) from
an exported file: fine-tuning, or continuing a finished run for more steps.

Deterministic: the same configuration, steps and seed give the same weights on the same machine.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .autoencoder import AE_CONFIGS, AEConfig, VideoAutoencoder, load_autoencoder, save_autoencoder
from .runstate import load_state, save_state

__all__ = [
    "AETrainConfig",
    "AE_TRAIN_PRESETS",
    "train_autoencoder",
    "evaluate_autoencoder",
    "contact_sheet",
    "psnr",
    "calibrate",
]


@dataclass
class AETrainConfig:
    ae: str = "cpu"  # a key of autoencoder.AE_CONFIGS
    steps: int = 8000
    batch_size: int = 32
    crop: int = 64  # side of the square crops trained on; 0 = whole frames
    size: int = 128  # frames are rendered size x size
    frames: int = 16
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.999
    grad_weight: float = 0.5  # weight of the L1 loss on pixel differences (edges)
    # weight of a squared-error term beside L1 (PSNR is a squared-error measure); on [-1, 1] pixels, 0 = L1 only
    l2_weight: float = 0.0
    seed: int = 0
    initial_clips: int = 512
    clips_per_refresh: int = 64
    refresh_every: int = 200
    max_clips: int = 2048
    time_limit: float | None = None  # seconds; the run stops early and exports what it has
    # stop after this many steps, on the learning-rate schedule of ``steps`` (a later call on the folder resumes)
    stop_after: int | None = None
    checkpoint_every: int = 500
    init: str | None = None  # start a new run from these exported weights
    log_every: int = 50
    calibration_batches: int = 16  # batches over which an export measures the latent's statistics (see calibrate)
    # train the decoder only, from ``init``'s weights: the encoder and the latent's statistics stay as they are, so a
    # DiT trained on that latent stays valid while the pixels it is decoded to get better (SD's fine-tuned decoders)
    freeze_encoder: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        from ..errors import InvalidRequest

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise InvalidRequest(name, f"{value!r} is out of range", value=value, allowed=allowed)

        need(self.ae in AE_CONFIGS, "ae", ", ".join(AE_CONFIGS))
        factor = AEConfig(**AE_CONFIGS[self.ae]).factor
        for name in ("steps", "batch_size", "frames", "initial_clips", "refresh_every", "log_every"):
            need(getattr(self, name) >= 1, name, "an integer >= 1")
        for name in ("warmup", "weight_decay", "clips_per_refresh", "checkpoint_every", "grad_weight", "l2_weight"):
            need(getattr(self, name) >= 0, name, ">= 0")
        need(self.size >= factor and self.size % factor == 0, "size", f"a multiple of {factor}")
        need(
            self.crop == 0 or (factor <= self.crop <= self.size and self.crop % factor == 0),
            "crop",
            f"0, or a multiple of {factor} up to size",
        )
        need(self.lr > 0, "lr", "> 0")
        need(0 <= self.min_lr <= self.lr, "min_lr", f"0..lr ({self.lr})")
        need(self.grad_clip > 0, "grad_clip", "> 0")
        need(0 <= self.ema < 1, "ema", "0 <= ema < 1")
        need(self.max_clips >= self.initial_clips, "max_clips", f">= initial_clips ({self.initial_clips})")
        need(self.time_limit is None or self.time_limit > 0, "time_limit", "seconds > 0, or None")
        need(self.stop_after is None or 1 <= self.stop_after <= self.steps, "stop_after", f"1..steps ({self.steps})")
        need(self.threads is None or self.threads >= 1, "threads", "an integer >= 1, or None")
        need(
            not self.freeze_encoder or self.init is not None,
            "freeze_encoder",
            "True only with init (the weights whose encoder is kept)",
        )


AE_TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        ae="tiny",
        steps=12,
        batch_size=4,
        crop=16,
        size=32,
        frames=4,
        initial_clips=8,
        clips_per_refresh=4,
        refresh_every=5,
        max_clips=16,
        warmup=2,
        lr=3e-3,
        log_every=4,
        checkpoint_every=0,
    ),
    "cpu": dict(),
    # v2's autoencoder (docs/builtin-v2.md: the finer grid reconstructs best for its size)
    "f4": dict(ae="f4", steps=2500),
    # the decoder stages (``freeze_encoder``, from the autoencoder inside a v2 checkpoint): a squared-error term beside
    # L1, since PSNR is a squared-error measure; another seed, so the crops are not the autoencoder stage's first ones
    "f4-decoder": dict(
        ae="f4", steps=2000, lr=3e-4, warmup=50, l2_weight=5.0, seed=1, checkpoint_every=250, freeze_encoder=True
    ),
    "tiny-decoder": dict(
        ae="tiny",
        steps=8,
        batch_size=4,
        crop=16,
        size=32,
        frames=4,
        initial_clips=8,
        clips_per_refresh=0,
        max_clips=8,
        warmup=2,
        lr=1e-3,
        log_every=4,
        checkpoint_every=0,
        l2_weight=5.0,
        seed=1,
        freeze_encoder=True,
    ),
}


class _Pool:
    """Rendered clips (uint8, in memory), grown in seeded chunks; ``sizes`` lets a resumed run render them again."""

    def __init__(self, cfg: AETrainConfig) -> None:
        self.cfg = cfg
        self.clips: list[np.ndarray] = []  # (F, H, W, 3) each
        self.sizes: list[int] = []

    def grow(self, n: int) -> None:
        from . import world

        if n <= 0:
            return
        c = self.cfg
        clips, _, _ = world.make_dataset(
            n, seed=c.seed * 100_003 + len(self.sizes), split="train", num_frames=c.frames, height=c.size, width=c.size
        )
        self.sizes.append(n)
        self.clips.extend(list(clips))

    def batch(self, rng: np.random.Generator) -> torch.Tensor:
        """(B, 3, crop, crop) in [-1, 1]: random frames of random clips, crops aligned to the latent's cells."""
        cfg = self.cfg
        crop = cfg.crop or cfg.size
        cell = AEConfig(**AE_CONFIGS[cfg.ae]).factor
        out = np.empty((cfg.batch_size, crop, crop, 3), np.uint8)
        for i in range(cfg.batch_size):
            clip = self.clips[int(rng.integers(len(self.clips)))]
            f = int(rng.integers(cfg.frames))
            y, x = (int(v) * cell for v in rng.integers(0, (cfg.size - crop) // cell + 1, 2))
            out[i] = clip[f, y : y + crop, x : x + crop]
        return torch.from_numpy(out).float().div_(127.5).sub_(1.0).permute(0, 3, 1, 2)

    def __len__(self) -> int:
        return len(self.clips)


def _lr(step: int, cfg: AETrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def _loss(pred: torch.Tensor, target: torch.Tensor, grad_weight: float, l2_weight: float = 0.0) -> torch.Tensor:
    """L1 on pixels + ``grad_weight`` * L1 on horizontal and vertical differences + ``l2_weight`` * mean squared
    error. (N, 3, H, W) each, in [-1, 1]."""
    loss = (pred - target).abs().mean()
    if l2_weight:  # L1's gradient has the same size for every error; the square's weighs the large ones more
        loss = loss + l2_weight * (pred - target).square().mean()
    if grad_weight:
        for dim in (-1, -2):
            loss = loss + grad_weight * (pred.diff(dim=dim) - target.diff(dim=dim)).abs().mean()
    return loss


@torch.no_grad()
def calibrate(model: VideoAutoencoder, batches: list[torch.Tensor]) -> None:
    """Set the latent's shift and scale (``model.norm``'s running statistics) to the per-channel mean and variance
    of ``model``'s encoder over ``batches`` of frames (N, 3, H, W).

    Why: the running statistics are those of the live weights, with momentum 0.01 (a 100-step memory), while the
    export is the moving average of the weights; measuring them again on the exported encoder makes the latent the
    DiT sees unit-scaled for those weights, and a short run (a test) gets true statistics instead of the initial 0/1.
    """
    was_training = model.training
    model.eval()
    z = torch.cat([model.encoder(x).transpose(0, 1).reshape(model.cfg.latent, -1) for x in batches], dim=1)
    mean, var = model.norm.running_mean, model.norm.running_var
    assert mean is not None and var is not None  # track_running_stats is on
    mean.copy_(z.mean(1))
    var.copy_(z.var(1))
    model.train(was_training)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (any equal shapes), measured on the 0..255 scale after clamping."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) * 127.5).square().mean().item()
    return 10 * math.log10(255**2 / max(mse, 1e-10))


def train_autoencoder(
    cfg: AETrainConfig, out_dir: str | Path, *, on_log: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train (or resume from ``out_dir/ae_state.pt``); write ``autoencoder.safetensors`` and ``ae_log.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    acfg = AEConfig(**AE_CONFIGS[cfg.ae])
    model = VideoAutoencoder(acfg)
    if cfg.init:
        src, _ = load_autoencoder(cfg.init)
        if src.cfg != acfg:
            raise ValueError(f"{cfg.init} has another configuration ({src.cfg}) than {cfg.ae!r} ({acfg})")
        model.load_state_dict(src.state_dict())
    ema = VideoAutoencoder(acfg)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.ndim >= 2]
    no_decay = [p for p in trained if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.99),
    )
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    pool = _Pool(cfg)
    history: list[dict[str, Any]] = []
    start_step, elapsed_before, render_time = 0, 0.0, 0.0

    state_path = out / "ae_state.pt"
    t0 = time.perf_counter()
    parts = {"model": model, "ema": ema, "opt": opt}
    if state_path.is_file():  # resume: the same run, continued
        state = load_state(state_path, parts, rng, gen, pool.grow)
        start_step, elapsed_before, history = state["step"], state["elapsed"], state["history"]
    else:
        pool.grow(cfg.initial_clips)
    render_time += time.perf_counter() - t0

    n_params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    steps_done = start_step
    model.train()
    if cfg.freeze_encoder:
        model.norm.eval()  # the latent's statistics are the init's, not re-estimated from batches

    def checkpoint(final: bool) -> dict[str, Any]:
        if not cfg.freeze_encoder:  # a frozen encoder keeps the latent (and its statistics) of its init
            calib_rng = np.random.default_rng((cfg.seed, steps_done))  # by step: a resumed run measures the same
            calibrate(ema, [pool.batch(calib_rng) for _ in range(cfg.calibration_batches)])
        elapsed = elapsed_before + time.perf_counter() - start
        info = {
            "train_config": asdict(cfg),
            "steps_run": steps_done,
            "train_seconds": round(elapsed, 1),
            "render_seconds": round(render_time, 1),
            "parameters": n_params,
            "clips": len(pool),
            "hardware": f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
            "final_loss": history[-1]["loss"] if history else None,
            "torch": torch.__version__,
            "final": final,
        }
        save_state(state_path, parts, rng, gen, step=steps_done, elapsed=elapsed, history=history, pool=pool.sizes)
        save_autoencoder(ema, out / "autoencoder.safetensors", info)
        (out / "ae_log.json").write_text(json.dumps({"info": info, "history": history}, indent=1))
        return {"path": str(out / "autoencoder.safetensors"), **info}

    for step in range(start_step, cfg.steps):
        if cfg.clips_per_refresh and step and step % cfg.refresh_every == 0 and len(pool) < cfg.max_clips:
            t0 = time.perf_counter()
            pool.grow(min(cfg.clips_per_refresh, cfg.max_clips - len(pool)))
            render_time += time.perf_counter() - t0
        x = pool.batch(rng)  # (B, 3, crop, crop)
        z_noise = torch.randn(
            x.shape[0], acfg.latent, x.shape[2] // acfg.factor, x.shape[3] // acfg.factor, generator=gen
        )
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        pred, z = model(x, z_noise)
        loss = _loss(pred, x, cfg.grad_weight, cfg.l2_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - d)
            for be, bm in zip(ema.buffers(), model.buffers(), strict=True):  # the latent's running statistics
                be.copy_(bm)
        steps_done = step + 1
        elapsed = elapsed_before + time.perf_counter() - start
        stop = (cfg.time_limit is not None and elapsed > cfg.time_limit) or (
            cfg.stop_after is not None and steps_done >= cfg.stop_after
        )
        if step % cfg.log_every == 0 or steps_done == cfg.steps or stop:
            entry = {
                "step": steps_done,
                "loss": round(loss.item(), 5),
                "psnr": round(psnr(pred.detach(), x), 2),
                "z_std": round(float(model.norm.running_var.sqrt().mean()), 4),  # type: ignore[union-attr]
                "grad_norm": round(grad_norm.item(), 4),
                "lr": round(_lr(step, cfg), 7),
                "elapsed": round(elapsed, 1),
                "clips": len(pool),
                "total_steps": cfg.steps,
            }
            history.append(entry)
            if on_log:
                on_log(entry)
        if cfg.checkpoint_every and steps_done % cfg.checkpoint_every == 0 and steps_done < cfg.steps:
            checkpoint(final=False)
        if stop:
            break
    return checkpoint(final=True)


def _sun_masks(clips: np.ndarray, scenes: list[Any], grow: int = 2) -> np.ndarray:
    """(N, F, H, W) bool: the sun disc's pixels (those within 6 of its colour, in the upper part of the frame where
    the sky is) and ``grow`` pixels around them, so the rim and its blur count; False in clips without a sun."""
    from .world import SUN_COLOR

    n, f, h, w, _ = clips.shape
    out = np.zeros((n, f, h, w), bool)
    for i, s in enumerate(scenes):
        if not s.celestial.startswith("sun"):
            continue
        col = np.array(SUN_COLOR.get(s.time, SUN_COLOR["day"]), np.int16)
        m = (np.abs(clips[i].astype(np.int16) - col).max(-1) <= 6)[:, : int(h * 0.75)]
        m = torch.from_numpy(m).float()[:, None]
        m = F.max_pool2d(m, 2 * grow + 1, stride=1, padding=grow)[:, 0].bool().numpy()
        out[i, :, : int(h * 0.75)] = m
    return out


@torch.inference_mode()
def evaluate_autoencoder(
    model: VideoAutoencoder, n_clips: int = 64, seed: int = 1234, size: int = 128, frames: int = 16
) -> dict[str, Any]:
    """Reconstruction of held-out clips (world's ``heldout`` split, a seed training never uses): PSNR over all,
    on the clips with a sun, on the sun disc's pixels, and the worst clip; the latent's per-channel mean and std;
    encode and decode seconds per clip (one clip at a time, this process's threads)."""
    from . import world
    from .sampling import to_model_space

    model.eval()
    clips, _, scenes = world.make_dataset(
        n_clips, seed=seed, split="heldout", num_frames=frames, height=size, width=size
    )
    recon = np.empty_like(clips)
    latents = []
    t_enc = t_dec = 0.0
    for i in range(n_clips):
        x = to_model_space(clips[i : i + 1])  # (1, 3, F, H, W)
        t0 = time.perf_counter()
        z = model.encode(x)
        t1 = time.perf_counter()
        y = model.decode(z)
        t_dec += time.perf_counter() - t1
        t_enc += t1 - t0
        latents.append(z)
        recon[i] = ((y.clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 3, 0).numpy()
    err = (clips.astype(np.float64) - recon) ** 2  # (N, F, H, W, 3)

    def db(mse: float) -> float:
        return round(10 * math.log10(255**2 / max(mse, 1e-10)), 2)

    per_clip = err.mean(axis=(1, 2, 3, 4))
    sun = np.array([s.celestial.startswith("sun") for s in scenes])
    disc = _sun_masks(clips, scenes)
    zs = torch.cat(latents)  # (N, C, F, h, w)
    flat = zs.transpose(0, 1).reshape(zs.shape[1], -1)
    by_weather = {
        w: db(float(per_clip[[s.weather == w for s in scenes]].mean()))
        for w in world.WEATHERS
        if any(s.weather == w for s in scenes)
    }
    return {
        "clips": n_clips,
        "size": size,
        "frames": frames,
        "psnr": db(float(err.mean())),
        "psnr_frame0": db(float(err[:, 0].mean())),
        "psnr_sun_clips": db(float(err[sun].mean())) if sun.any() else None,
        "psnr_sun_disc": db(float(err[disc].mean())) if disc.any() else None,
        "sun_disc_pixels": int(disc.sum()),
        "psnr_worst_clip": db(float(per_clip.max())),
        "psnr_by_weather": by_weather,
        "latent_shape": list(zs.shape[1:]),
        "latent_mean": [round(v, 3) for v in flat.mean(1).tolist()],
        "latent_std": [round(v, 3) for v in flat.std(1).tolist()],
        "encode_seconds_per_clip": round(t_enc / n_clips, 4),
        "decode_seconds_per_clip": round(t_dec / n_clips, 4),
        "threads": torch.get_num_threads(),
    }


@torch.inference_mode()
def contact_sheet(
    model: VideoAutoencoder,
    path: str | Path,
    n_clips: int = 4,
    seed: int = 4321,
    size: int = 128,
    frames_shown: tuple[int, ...] = (0, 7, 15),
) -> Path:
    """A PNG: per held-out clip, original | reconstruction pairs at ``frames_shown``, then the 32x32 window of
    frame 0 with the largest error, original above reconstruction, pixels repeated 2x (no smoothing), where any grid
    or blockiness would show."""
    from PIL import Image

    from . import world
    from .sampling import to_model_space, to_uint8

    model.eval()
    clips, _, _ = world.make_dataset(n_clips, seed=seed, split="heldout", num_frames=16, height=size, width=size)
    rows = []
    for i in range(n_clips):
        rec = to_uint8(model.decode(model.encode(to_model_space(clips[i : i + 1]))))[0]  # (F, H, W, 3)
        tiles = [np.concatenate([clips[i, f], rec[f]], axis=1) for f in frames_shown]
        err = torch.from_numpy((clips[i, 0].astype(np.float32) - rec[0]) ** 2).mean(-1)[None, None]  # (1, 1, H, W)
        local = F.avg_pool2d(err, 32, stride=8)[0, 0]  # mean error of each 32x32 window, on an 8-pixel lattice
        y, x = (int(v) * 8 for v in divmod(int(local.argmax()), local.shape[1]))
        zoom = np.concatenate([clips[i, 0, y : y + 32, x : x + 32], rec[0, y : y + 32, x : x + 32]])  # (64, 32, 3)
        zoom = zoom.repeat(size // 64, 0).repeat(size // 64, 1)  # (size, size/2, 3)
        gap = np.full((size, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([part for t in tiles for part in (t, gap)] + [zoom], axis=1))
    sheet = np.concatenate([np.concatenate([r, np.full((4, r.shape[1], 3), 255, np.uint8)]) for r in rows])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kinema.builtin.train_autoencoder", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder (resumes from its ae_state.pt)")
    parser.add_argument("--preset", default="cpu", choices=list(AE_TRAIN_PRESETS))
    parser.add_argument("--eval-only", action="store_true", help="evaluate OUT/autoencoder.safetensors and exit")
    parser.add_argument("--eval-clips", type=int, default=64)
    parser.add_argument(
        "--calibrate", action="store_true", help="with --eval-only: measure the latent's statistics again first"
    )
    for f in fields(AETrainConfig):
        if f.name in (
            "ae",
            "steps",
            "seed",
            "time_limit",
            "init",
            "threads",
            "batch_size",
            "crop",
            "lr",
            "checkpoint_every",
            "stop_after",
            "min_lr",
            "warmup",
            "grad_weight",
            "l2_weight",
            "freeze_encoder",
        ):
            flag = "--" + f.name.replace("_", "-")
            if str(f.type) == "bool":
                parser.add_argument(flag, action="store_true", default=None)
                continue
            kind = {"float | None": float, "str | None": str, "int | None": int}.get(str(f.type), None)
            parser.add_argument(flag, type=kind or type(f.default), default=None)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.eval_only:
        overrides = {
            f.name: getattr(args, f.name) for f in fields(AETrainConfig) if getattr(args, f.name, None) is not None
        }
        cfg = AETrainConfig(**{**AE_TRAIN_PRESETS[args.preset], **overrides})
        result = train_autoencoder(cfg, out, on_log=lambda e: print(json.dumps(e), flush=True))
        print(json.dumps({k: v for k, v in result.items() if k != "train_config"}), flush=True)
    model, info = load_autoencoder(out / "autoencoder.safetensors")
    if args.eval_only and args.calibrate:  # weights exported before the export calibrated (or to check it)
        cfg = AETrainConfig(**{**AE_TRAIN_PRESETS[args.preset], **info.get("train_config", {}), "init": None})
        pool = _Pool(cfg)
        pool.grow(64)
        rng = np.random.default_rng((cfg.seed, info.get("steps_run", 0)))
        calibrate(model, [pool.batch(rng) for _ in range(cfg.calibration_batches)])
        save_autoencoder(model, out / "autoencoder.safetensors", {**info, "calibrated_after": True})
    report = evaluate_autoencoder(model, n_clips=args.eval_clips)
    (out / "ae_eval.json").write_text(json.dumps(report, indent=1))
    contact_sheet(model, out / "contact_sheet.png")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
