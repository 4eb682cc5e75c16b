"""Training the built-in model: ``kinema train builtin [--config NAME] [--steps N] [--out DIR]``.

Rectified flow (flow matching): for a clean clip x0 and noise e, x_t = (1 - t) x0 + t e and the model learns the
velocity e - x0 (or x0 itself: ``ModelConfig.prediction``). Timesteps are logit-normal,
shifted towards noise by ``ModelConfig.shift`` (SD3). Captions are re-drawn from each clip's scene every time it is
used, so the text encoder sees many phrasings of the same content. A share of the examples carry known first frames
(image-to-video: 1 frame; extension: one temporal patch), and a share drop the caption, for classifier-free guidance.
Known pixels weigh more in the loss (``known_weight``): handing the given image back unchanged is the first duty.
A small auxiliary loss (``text_aux``) asks the pooled text for the scene's attributes, so that the text encoder tells
directions apart from the first steps (see ``_AttributeProbe``). Two loss weights make motion worth learning:
``motion_weight`` adds the error of what changes over time (each pixel's error minus its mean over the frames), and
``subject_weight`` weighs the pixels of the subject's path more (the renderer reports them); see ``_loss``.

Everything is seeded: the same configuration, steps and seed give the same weights on the same machine (CPU runs are
bit-reproducible; GPU kernels may differ in the last bits). Data is rendered in fixed chunks at fixed steps, never in
a background thread, for the same reason.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import load_model, save_model
from .autoencoder import VideoAutoencoder
from .model import CONFIGS, ModelConfig, Tokenizer, VideoDiT, first_known, pool_text
from .runstate import load_state, save_state
from .sampling import camera_noise, check_guidance_interval, moved_copy, shift_timesteps, to_model_space

__all__ = ["AUTOENCODER_STAGE", "DECODER_STAGE", "TrainConfig", "train", "TRAIN_PRESETS", "finetune_decoder"]


@dataclass
class TrainConfig:
    model: str = "cpu"  # a key of model.CONFIGS
    steps: int = 3000
    batch_size: int = 16
    lr: float = 6e-4
    min_lr: float = 6e-5
    warmup: int = 150
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema: float = 0.998
    # learning rate of the heads in NEW_HEADS, times ``lr``: a head that starts fresh in a fine-tune of a trained trunk
    # must move further than the trunk (Adam moves a weight by about lr a step, so a gate's bias travels at most about
    # lr x steps: 0.5 in session 20's 1,800 steps at 3e-4)
    head_lr: float = 1.0
    seed: int = 0
    # train only the parameters whose names start with one of these (e.g. ("ref_gate.",): the gate alone, so text-to-
    # video, where the gate does not act, stays the same to the bit); empty: all of them
    train_only: tuple[str, ...] = ()
    # train only what text-to-video never uses (it feeds zeros there): the patch embedding's weights for the known
    # frames, their mask and the reference frame, and the ref gate; the rest, text-to-video included, stays to the bit
    i2v_only: bool = False
    initial_clips: int = 2048  # rendered before the first step
    clips_per_refresh: int = 384  # rendered every refresh_every steps, until max_clips
    refresh_every: int = 100
    max_clips: int = 24_000
    p_image: float = 0.2  # share of examples with frame 0 known (image-to-video)
    p_extend: float = 0.15  # share with the first temporal patch known (extension)
    p_uncond: float = 0.1  # share with the caption dropped (classifier-free guidance)
    p_keyframes: float = 0.0  # share with the first and last frames known (keyframes), of which half the last only
    known_weight: float = 4.0  # loss weight of known pixels: the model must hand the given frames back unchanged
    # extra weight of the frames not given in an example that has given frames (image-to-video, extension, keyframes):
    # there the scene's look is in the given frames, not a guess as in text-to-video; see _loss
    given_weight: float = 0.0
    # weight of the auxiliary loss that asks the pooled text for the scene's attributes (see _AttributeProbe)
    text_aux: float = 0.0
    # extra weight of the part of the error that changes over time (the error minus its mean over frames); see _loss
    motion_weight: float = 0.0
    # extra weight of the pixels the subject covers at any time of the clip (its path); see _loss
    subject_weight: float = 0.0
    # weight of a loss on the ref gate itself (a model with ref_mix): in an example with a known frame, the gate of
    # each free latent value is asked (binary cross-entropy) whether the real clip there is within ``GATE_STILL`` of
    # the first known frame, i.e. whether copying it is right; see _gate_loss
    gate_weight: float = 0.0
    time_limit: float | None = None  # seconds; stop early (the card records the steps actually run)
    # stop after this many steps, on the learning-rate schedule of ``steps``: replays a run that a time limit ended
    stop_after: int | None = None
    checkpoint_every: int = 500
    init: str | None = None  # start from these weights (fine-tuning); the output head is re-initialised when the
    # checkpoint's prediction type differs from the configuration's
    log_every: int = 25
    threads: int | None = None
    # v2 (a model configuration with latent_factor > 1): the trained autoencoder (``train_autoencoder``'s
    # autoencoder.safetensors) whose latent the DiT learns; clips are encoded once, as they are rendered
    autoencoder: str | None = None
    # the sampling defaults written into the checkpoint (``builtin.sampling_defaults``), where the recipe measured
    # better ones than the package's: guidance scale, and the interval (lo, hi) of t it acts at; None: the package's
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    # and motion guidance (``sampling.sample``'s ``motion_guidance``) and the interval of t it acts at
    motion_guidance: float | None = None
    motion_interval: tuple[float, float] | None = None
    # and image guidance (``sampling.sample``'s ``image_guidance``, for known frames) and the interval it acts at
    image_guidance: float | None = None
    image_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        """Every field in its range, or InvalidRequest naming it: a bad value fails here, not an hour in."""
        from ..errors import InvalidRequest

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise InvalidRequest(name, f"{value!r} is out of range", value=value, allowed=allowed)

        need(self.model in CONFIGS, "model", ", ".join(CONFIGS))
        self.train_only = tuple(self.train_only)  # str.startswith takes a tuple; a JSON round trip gives a list
        need(all(isinstance(p, str) and p for p in self.train_only), "train_only", "parameter name prefixes")
        # i2v_only names its own parameters; with train_only too, which of the two wins would be a guess
        need(not (self.i2v_only and self.train_only), "i2v_only", "false when train_only is given (one or the other)")
        for name in ("steps", "batch_size", "initial_clips", "refresh_every", "log_every"):
            need(getattr(self, name) >= 1, name, "an integer >= 1")
        for name in (
            "warmup",
            "weight_decay",
            "clips_per_refresh",
            "checkpoint_every",
            "text_aux",
            "motion_weight",
            "subject_weight",
            "given_weight",
            "gate_weight",
        ):
            need(getattr(self, name) >= 0, name, ">= 0")
        need(self.lr > 0, "lr", "> 0")
        need(0 <= self.min_lr <= self.lr, "min_lr", f"0..lr ({self.lr})")
        need(self.grad_clip > 0, "grad_clip", "> 0")
        need(self.head_lr > 0, "head_lr", "> 0 (a multiple of lr)")
        need(0 <= self.ema < 1, "ema", "0 <= ema < 1")
        need(self.max_clips >= self.initial_clips, "max_clips", f">= initial_clips ({self.initial_clips})")
        for name in ("p_image", "p_extend", "p_uncond", "p_keyframes"):
            need(0 <= getattr(self, name) <= 1, name, "0..1")
        need(self.p_image + self.p_extend <= 1, "p_extend", f"0..{1 - self.p_image:g} (1 - p_image)")
        need(
            0 <= self.p_keyframes <= 1 - self.p_image - self.p_extend,
            "p_keyframes",
            f"0..{1 - self.p_image - self.p_extend:g} (1 - p_image - p_extend)",
        )
        need(self.known_weight > 0, "known_weight", "> 0")
        need(self.time_limit is None or self.time_limit > 0, "time_limit", "seconds > 0, or None")
        need(self.stop_after is None or 1 <= self.stop_after <= self.steps, "stop_after", f"1..steps ({self.steps})")
        need(self.threads is None or self.threads >= 1, "threads", "an integer >= 1, or None")
        need(self.guidance is None or self.guidance > 0, "guidance", "> 0 (1: none), or None")
        if self.guidance_interval is not None:  # sampling's own check: InvalidRequest naming guidance_interval
            self.guidance_interval = check_guidance_interval(self.guidance_interval)
        need(self.motion_guidance is None or self.motion_guidance >= 0, "motion_guidance", ">= 0 (0: none), or None")
        if self.motion_interval is not None:
            self.motion_interval = check_guidance_interval(self.motion_interval, "motion_interval")
        need(self.image_guidance is None or self.image_guidance >= 0, "image_guidance", ">= 0 (0: none), or None")
        if self.image_interval is not None:
            self.image_interval = check_guidance_interval(self.image_interval, "image_interval")
        # warped noise samples along the camera the text's read-out names, and the attribute loss is what trains it
        warped = float(CONFIGS[self.model].get("warp_noise", 0.0)) > 0  # type: ignore[arg-type]
        need(self.text_aux > 0 or not warped, "text_aux", f"> 0 for the model {self.model!r} (warped noise)")
        mixing = bool(CONFIGS[self.model].get("ref_mix", False))
        need(self.gate_weight == 0 or mixing, "gate_weight", f"0 for the model {self.model!r} (no mixing ref gate)")
        latent = int(CONFIGS[self.model].get("latent_factor", 1)) > 1  # type: ignore[call-overload]
        need(
            latent == (self.autoencoder is not None),
            "autoencoder",
            f"the autoencoder's weights file for the latent model {self.model!r}"
            if latent
            else f"None: the model {self.model!r} works on pixels",
        )


# The same command trains on a CPU or a GPU; the preset only picks sizes that finish in the time each has. The motion
# and subject weights dilute the share of the given frames in the loss, so known pixels weigh 16 there, not 4 (with 4,
# image-to-video fell to 22 dB; see the model card).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        model="tiny",
        steps=30,
        batch_size=4,
        initial_clips=64,
        clips_per_refresh=0,
        warmup=5,
        lr=2e-3,
        log_every=5,
        checkpoint_every=0,
        text_aux=0.1,
        motion_weight=3.0,
        subject_weight=4.0,
    ),
    "cpu": dict(model="cpu", text_aux=0.1, known_weight=16.0, motion_weight=3.0, subject_weight=4.0),
    # v2: the DiT in the f4 autoencoder's latent (--autoencoder); rendering and encoding cost 0.2 s a 128x128 clip,
    # so the pool grows slower than v1's
    "v2": dict(
        model="v2",
        steps=4000,
        text_aux=0.1,
        known_weight=16.0,
        motion_weight=3.0,
        subject_weight=4.0,
        initial_clips=2048,
        clips_per_refresh=128,
        max_clips=12_000,
        p_keyframes=0.1,
        given_weight=2.0,
        head_lr=20.0,
        guidance=1.5,
        guidance_interval=(0.6, 1.0),
        # the gate is told where copying the given frame is right (the real latent stays near it): the loss alone did
        # not open it where the sample is decided (docs/builtin-v2.md, sessions 21-23)
        gate_weight=0.5,
    ),
    "tiny-v2": dict(
        model="tiny-v2",
        steps=30,
        batch_size=4,
        initial_clips=64,
        clips_per_refresh=0,
        warmup=5,
        lr=2e-3,
        log_every=5,
        checkpoint_every=0,
        text_aux=0.1,
        motion_weight=3.0,
        subject_weight=4.0,
        p_keyframes=0.1,
    ),
    "full": dict(
        model="full",
        steps=12000,
        batch_size=64,
        lr=4e-4,
        initial_clips=8192,
        clips_per_refresh=2048,
        max_clips=120_000,
        warmup=500,
        text_aux=0.1,
        known_weight=16.0,
        motion_weight=3.0,
        subject_weight=4.0,
    ),
}


#: The autoencoder stage (a preset of ``train_autoencoder.AE_TRAIN_PRESETS``) that a latent preset trains first.
AUTOENCODER_STAGE = {"v2": "f4", "tiny-v2": "tiny"}
#: The decoder stage (a preset with ``freeze_encoder``) that may follow a latent preset's DiT: see finetune_decoder.
DECODER_STAGE = {"v2": "f4-decoder", "tiny-v2": "tiny-decoder"}


def _device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class _Pool:
    """Rendered clips (uint8, in memory) and their scenes; grows in seeded chunks.

    With an autoencoder (v2) each chunk is encoded as it is rendered and the latents are kept instead (fp16,
    (C, F, H/f, W/f): 256 KB a clip against 768 KB of 128x128 pixels), with the subject's path on the latent's grid.
    """

    def __init__(self, cfg: ModelConfig, seed: int, autoencoder: VideoAutoencoder | None = None) -> None:
        self.cfg = cfg
        self.seed = seed
        self.autoencoder = autoencoder
        self.clips: list[Any] = []  # uint8 (F, H, W, 3) arrays, or the latents (C, F, h, w) as tensors
        self.paths: list[np.ndarray] = []  # (H, W) bool: the pixels (latent cells) the subject covers at any time
        self.scenes: list[Any] = []
        self.chunk = 0
        self.sizes: list[int] = []  # clips per chunk, in order: a resumed run renders the same chunks again

    def grow(self, n: int) -> None:
        from . import world

        if n <= 0:
            return
        masks = np.zeros((n, self.cfg.frames, self.cfg.height, self.cfg.width), bool)
        clips, _, scenes = world.make_dataset(
            n,
            seed=self.seed * 100_003 + self.chunk,
            split="train",
            num_frames=self.cfg.frames,
            height=self.cfg.height,
            width=self.cfg.width,
            subject_masks=masks,
        )
        self.chunk += 1
        self.sizes.append(n)
        paths = np.any(masks, axis=1)  # (n, H, W)
        if self.autoencoder is None:
            self.clips.extend(list(clips))
        else:
            f = self.cfg.latent_factor
            with torch.inference_mode():
                for i in range(0, n, 8):
                    z = self.autoencoder.encode(to_model_space(clips[i : i + 8]))  # (b, C, F, h, w)
                    self.clips.extend(z.to(torch.float16).unbind(0))
            h, w = paths.shape[1] // f, paths.shape[2] // f
            paths = paths.reshape(n, h, f, w, f).any(axis=(2, 4))  # a cell is on the path if any of its pixels is
        self.paths.extend(paths)
        self.scenes.extend(scenes)

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        """The clips at ``idx`` in the model's space: (B, C, F, H, W)."""
        if self.autoencoder is None:
            return to_model_space(np.stack([self.clips[i] for i in idx]))
        return torch.stack([self.clips[i] for i in idx]).float()

    def __len__(self) -> int:
        return len(self.clips)


class _AttributeProbe(torch.nn.Module):
    """Linear read-outs of the scene's attributes from the pooled text, used only while training.

    Without them the text encoder had no reason to tell "moving left" from "moving right": the denoising loss gains
    little from it early on, so the pooled text of the two differed by 3% (colours: 37%) and the network never
    learned motion or camera direction. Every attribute read here is determined by the caption (an omitted time,
    weather or camera is the default), so the probe's loss can reach zero and then stops pulling. Not saved.
    """

    ATTRIBUTES = ("time", "setting", "weather", "camera", "subject", "color", "motion")

    def __init__(self, text_dim: int, camera_head: torch.nn.Module | None = None) -> None:
        super().__init__()
        from . import world

        self.values = {a: world.ATTRIBUTES[a] for a in self.ATTRIBUTES}
        self.heads = torch.nn.ModuleDict(
            {a: torch.nn.Linear(text_dim, len(v)) for a, v in self.values.items() if a != "camera" or not camera_head}
        )
        # a model trained on warped noise owns its camera read-out (sampling needs it): trained here, saved there.
        # A plain attribute keeps it out of this module's parameters, which the optimizer gets separately.
        self._camera = [camera_head] if camera_head is not None else []

    def labels(self, scenes: list[Any], dropped: np.ndarray) -> dict[str, torch.Tensor]:
        """Class indices per attribute; -100 (ignored) where the caption was dropped or the scene lacks it. The
        model's own camera read-out learns "static" for a dropped caption instead: with no words there is no move,
        and sampling from an empty prompt films the noise standing still."""
        out = {}
        for a, values in self.values.items():
            if a == "camera" and self._camera:
                idx = [values.index("static" if d else s.camera) for s, d in zip(scenes, dropped, strict=True)]
            else:
                idx = [
                    -100 if d or getattr(s, a) is None else values.index(getattr(s, a))
                    for s, d in zip(scenes, dropped, strict=True)
                ]
            out[a] = torch.tensor(idx, dtype=torch.long)
        return out

    def loss(self, pooled: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean over attributes of the cross-entropy (0 when every label is ignored)."""
        heads = dict(self.heads.items()) | ({"camera": self._camera[0]} if self._camera else {})
        terms = []
        for a in self.ATTRIBUTES:
            y = labels[a].to(pooled.device)
            if (y >= 0).any():
                terms.append(torch.nn.functional.cross_entropy(heads[a](pooled), y, ignore_index=-100))
        return torch.stack(terms).mean() if terms else pooled.sum() * 0.0


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train from scratch; write ``builtin.safetensors`` (EMA weights) and ``train_log.json`` into ``out_dir``.

    ``on_log`` gets every ``log_every``-th step's figures; ``on_step(done, total)`` every step (a progress bar).
    """
    from ..errors import InvalidRequest
    from . import world

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = _device()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)

    mcfg = ModelConfig(vocab=world.vocabulary(), cameras=list(world.CAMERAS), **CONFIGS[cfg.model])  # type: ignore[arg-type]
    model = VideoDiT(mcfg).to(device)
    started_from = None  # which weights the run started from, and what of them it could not use
    if cfg.init:
        fresh = _init_from(model, cfg.init)
        started_from = {"sha256": load_model(cfg.init)[2]["sha256"], "fresh": fresh}  # cached: the same load
    ema = VideoDiT(mcfg).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    tokenizer = Tokenizer(mcfg.vocab, mcfg.text_len)
    camera_head = model.camera_head if mcfg.warp_noise > 0 else None
    probe = _AttributeProbe(mcfg.text_dim, camera_head).to(device) if cfg.text_aux > 0 else None
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    heads: list[torch.nn.Parameter] = []
    named = list(model.named_parameters()) + (list(probe.named_parameters("probe")) if probe else [])
    if cfg.i2v_only:  # the noisy clip's columns come first in the patch (patchify is channel-major)
        noisy = mcfg.channels * mcfg.patch_t * mcfg.patch_h * mcfg.patch_w
        keep = torch.ones_like(model.patch.weight)
        keep[:, :noisy] = 0
        model.patch.weight.register_hook(lambda grad: grad * keep)
    for name, p in named:
        if cfg.i2v_only and name == "patch.weight":
            no_decay.append(p)  # decay would shrink the columns text-to-video uses; Adam moves a zero gradient by 0
        elif (cfg.train_only and not name.startswith(cfg.train_only)) or (
            cfg.i2v_only and not name.startswith(NEW_HEADS)
        ):
            p.requires_grad_(False)  # kept as it is; the EMA of an unchanged weight is that weight exactly
        elif name.startswith(NEW_HEADS):
            heads.append(p)
        else:
            (no_decay if p.ndim < 2 or "pos" in name or "embed" in name or name.endswith("null") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "scale": 1.0},
    ]
    if heads:  # an empty group would change the optimizer state's layout of runs without the heads
        groups.append({"params": heads, "weight_decay": 0.0, "scale": cfg.head_lr})
    if cfg.train_only or cfg.i2v_only:
        groups = [g for g in groups if g["params"]]
        if not groups:
            names = sorted({n.split(".")[0] + "." for n, _ in named})
            raise InvalidRequest(
                "train_only", f"{list(cfg.train_only)} names none of the model's parameters", allowed=", ".join(names)
            )
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))

    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator("cpu").manual_seed(cfg.seed)
    autoencoder = _load_autoencoder(cfg.autoencoder, mcfg) if cfg.autoencoder else None
    pool = _Pool(mcfg, cfg.seed, autoencoder)
    history: list[dict[str, Any]] = []
    start_step, elapsed_before = 0, 0.0
    state_path = out / "dit_state.pt"
    t_render = time.perf_counter()
    parts = {"model": model, "ema": ema, "opt": opt, "probe": probe}
    if state_path.is_file():  # resume: the same run, continued (--steps may differ: the schedule stretches)
        state = load_state(state_path, parts, rng, gen, pool.grow)
        start_step, elapsed_before, history = state["step"], state["elapsed"], state["history"]
    else:
        pool.grow(cfg.initial_clips)
    render_time = time.perf_counter() - t_render
    n_params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter() - elapsed_before
    steps_done = start_step
    pt = mcfg.patch_t

    for step in range(start_step, cfg.steps):
        if cfg.clips_per_refresh and step and step % cfg.refresh_every == 0 and len(pool) < cfg.max_clips:
            t0 = time.perf_counter()
            pool.grow(min(cfg.clips_per_refresh, cfg.max_clips - len(pool)))
            render_time += time.perf_counter() - t0
        idx = rng.integers(0, len(pool), cfg.batch_size)
        captions = [world.caption(pool.scenes[i], rng) for i in idx]
        drop = rng.random(cfg.batch_size) < cfg.p_uncond
        captions = ["" if d else c for c, d in zip(captions, drop, strict=True)]

        x0 = pool.batch(idx).to(device)  # (B, C, F, H, W): pixels, or the latent
        b = x0.shape[0]
        _, space_h, space_w = mcfg.space
        # known frames: frame 0 (image-to-video), the first temporal patch (extension), or the last frame with or
        # without the first (keyframes)
        kind = rng.random(b)
        known = np.where(kind < cfg.p_image, 1, np.where(kind < cfg.p_image + cfg.p_extend, pt, 0))
        mask = torch.zeros(b, 1, mcfg.frames, 1, 1)
        for i, k in enumerate(known):
            mask[i, :, :k] = 1.0
        if cfg.p_keyframes:  # the next share of the same draw: a run without keyframes is unchanged
            ends = kind - cfg.p_image - cfg.p_extend
            for i in np.flatnonzero((ends >= 0) & (ends < cfg.p_keyframes)).tolist():
                mask[i, :, -1] = 1.0
                mask[i, :, 0] = float(ends[i] < cfg.p_keyframes / 2)
        known_frames = mask.to(device)  # (B, 1, F, 1, 1)
        mask = known_frames.expand(b, 1, mcfg.frames, space_h, space_w)
        cond = x0 * mask

        t = shift_timesteps(torch.sigmoid(torch.randn(b, generator=gen)), mcfg.shift).to(device)  # logit-normal
        # the noise moves with the camera that filmed the clip (share mcfg.warp_noise; 0 is the plain draw)
        cameras = [pool.scenes[i].camera for i in idx]
        noise = camera_noise(cameras, tuple(x0.shape), gen, mcfg.warp_noise).to(device)  # type: ignore[arg-type]
        tt = t.view(b, 1, 1, 1, 1)
        xt = (1 - tt) * x0 + tt * noise
        target = x0 if mcfg.prediction == "x" else noise - x0
        ids = tokenizer.encode(captions).to(device)

        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg) * group["scale"]
        text = model.encode_text(ids)
        # the gate's copy of the first known frame: moved along the clip's camera path as sampling moves it
        # (ModelConfig.warp_reference), else in place (None: the model takes the first known frame itself)
        copy = moved_copy(cond, mask, cameras) if mcfg.warp_reference and mcfg.ref_mix else None
        pred = model(xt, t, text, cond, mask, copy_ref=copy)
        extra: torch.Tensor | float = 0.0
        if cfg.subject_weight:  # the subject's path, (B, 1, 1, H, W)
            path = torch.from_numpy(np.stack([pool.paths[i] for i in idx])).to(device)[:, None, None].float()
            extra = cfg.subject_weight * path
        loss = _loss(pred, target, known_frames, cfg.known_weight, cfg.motion_weight, extra, cfg.given_weight)
        aux = gate = None
        total = loss
        if probe is not None:
            aux = probe.loss(pool_text(*text), probe.labels([pool.scenes[i] for i in idx], drop))
            total = loss + cfg.text_aux * aux
        if cfg.gate_weight and model.gate_logits is not None:
            gate = _gate_loss(model.gate_logits, x0, first_known(cond, mask) if copy is None else copy, known_frames)
            total = total + cfg.gate_weight * gate
        opt.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))  # short warm-up so early checkpoints are usable
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - d)
        steps_done = step + 1
        elapsed = time.perf_counter() - start
        stop = (cfg.time_limit is not None and elapsed > cfg.time_limit) or (
            cfg.stop_after is not None and steps_done >= cfg.stop_after
        )
        # the last step run is always logged, so the weights' final_loss is that step's, wherever the run ends
        if step % cfg.log_every == 0 or steps_done == cfg.steps or stop:
            entry = {
                "step": steps_done,
                "loss": round(loss.item(), 5),
                "grad_norm": round(grad_norm.item(), 4),
                "lr": round(_lr(step, cfg), 7),
                "elapsed": round(elapsed, 1),
                "clips": len(pool),
                "total_steps": cfg.steps,
            }
            if aux is not None:
                entry["text_aux"] = round(aux.item(), 4)
            if gate is not None:
                entry["gate"] = round(gate.item(), 4)
            history.append(entry)
            if on_log:
                on_log(entry)
        if on_step:
            on_step(steps_done, cfg.steps)
        if cfg.checkpoint_every and steps_done % cfg.checkpoint_every == 0:
            save_state(
                state_path,
                parts,
                rng,
                gen,
                step=steps_done,
                elapsed=time.perf_counter() - start,
                history=history,
                pool=pool.sizes,
            )
            _write(
                ema,
                out,
                cfg,
                mcfg,
                steps_done,
                elapsed,
                render_time,
                n_params,
                history,
                device,
                final=False,
                autoencoder=autoencoder,
                started_from=started_from,
            )
        if stop:
            break
    elapsed = time.perf_counter() - start
    if cfg.checkpoint_every:  # a run a time limit ended resumes from its last step, not its last checkpoint
        save_state(state_path, parts, rng, gen, step=steps_done, elapsed=elapsed, history=history, pool=pool.sizes)
    return _write(
        ema,
        out,
        cfg,
        mcfg,
        steps_done,
        elapsed,
        render_time,
        n_params,
        history,
        device,
        final=True,
        autoencoder=autoencoder,
        started_from=started_from,
    )


def _loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    known_weight: float,
    motion_weight: float = 0.0,
    extra: torch.Tensor | float = 0.0,
    given_weight: float = 0.0,
) -> torch.Tensor:
    """Mean squared error in which known pixels (``mask`` 1) count ``known_weight`` times, the other pixels of an
    example with any known frame ``1 + given_weight`` times, and every pixel ``1 + extra`` times on top (``extra``
    broadcasts to (B, 1, 1, H, W): training passes the subject's path times ``subject_weight``), plus
    ``motion_weight`` times the squared error taken only over what changes in time: each pixel's error minus its mean
    over the frames, over the frames not given (a known frame there would be pulled towards the others' mean error
    instead of towards its given pixels).

    Why: most of the error at high noise is static texture the model cannot know, and the subject is a few per cent
    of the pixels, so a subject drawn still when it should move costs little. Taking out each pixel's mean over the
    frames leaves the part the motion and camera words decide (where the subject is at the start and at the end, which
    way the view slides), and the subject's path weighs more, so "left" and "right" get a gradient worth following.
    That static texture is a guess only without given frames: with an image or a clip to go on, the background that
    stays still is in it, and ``given_weight`` makes copying it worth learning (the motion term cannot see it, as a
    background drawn wrong in every frame does not change over time).

    pred, target (B, C, F, H, W); mask broadcasts to (B, 1, F, H, W) and is the same at every pixel of a frame.
    """
    return _WeightedSquares.apply(pred, target, mask, known_weight, 1 + extra, motion_weight, given_weight)


class _WeightedSquares(torch.autograd.Function):
    """``_loss`` with its gradient written out: autograd's dozen full-size passes cost 0.26 s per CPU step.

    With e = pred - target, W the per-pixel weight (the known and given weights, times S) and S the spatial one, the
    loss is
    (sum W e^2 + m sum S U (e - mean_U e)^2) / n, U the frames not given and mean_U the mean over them. Put
    G = W e + m S U (e - mean_U e): then the loss is sum(e G) / n, because sum_U (e - mean_U e) = 0 and S is the same
    in every frame, and its gradient is 2 G / n.
    """

    @staticmethod
    def forward(
        ctx: Any,
        pred: torch.Tensor,
        target: torch.Tensor,
        known: torch.Tensor,
        known_weight: float,
        spatial: torch.Tensor | float,
        motion_weight: float,
        given_weight: float = 0.0,
    ) -> torch.Tensor:
        err = pred - target  # (B, C, F, H, W)
        frame_weight = 1 + (known_weight - 1) * known
        if given_weight:  # the free frames of an example with a known frame
            frame_weight = frame_weight + given_weight * known.amax(dim=2, keepdim=True) * (1 - known)
        g = err * (frame_weight * spatial)  # the small weights first: one full-size product
        if motion_weight:
            free = 1 - known  # the motion term leaves the known frames out, so it cannot pull their error to the mean
            mean = (err * free).sum(dim=2, keepdim=True) / free.sum(dim=2, keepdim=True).clamp(min=1)
            g += (err - mean) * (free * (motion_weight * spatial))
        n = err.numel()
        ctx.save_for_backward(g)
        ctx.n = n
        return (err * g).sum() / n

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (g,) = ctx.saved_tensors
        d = g * (2 * grad / ctx.n)
        return d, -d if ctx.needs_input_grad[1] else None, None, None, None, None, None


#: A free latent value counts as still (copying the first known frame is right there) within this of it: in the f4
#: latent (std 0.86), 72% of the values of the second half of a still-camera clip, 31% over all cameras and weathers.
GATE_STILL = 0.1


def _gate_loss(logits: torch.Tensor, x0: torch.Tensor, copy: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the ref gate's logits (B, 1 or C, F, H, W) against where the real clip x0 (B, C, F,
    H, W) stays within ``GATE_STILL`` of what the gate copies (``copy``: the first known frame, (B, C, 1, H, W), or
    it moved along the camera path, (B, C, F, H, W)), over the free frames of the examples with a known frame
    (``known`` (B, 1, F, 1, 1)); a gate per cell is asked whether all its channels stay. 0 without such examples.

    Why: the mixing gate learns only from the error of what it mixes, and where the network's own guess is already
    close (low noise, where the sample is decided) that gradient is small, so the gate stayed mostly shut there (mean
    0.07 at t = 0.1). The data says where the clip does not change; this asks the gate to say so directly.
    """
    still = ((x0 - copy).abs() <= GATE_STILL).float()  # (B, C, F, H, W)
    if logits.shape[1] == 1:
        still = still.amin(dim=1, keepdim=True)
    free = known.amax(dim=2, keepdim=True) * (1 - known)  # (B, 1, F, 1, 1): the free frames of examples with a known
    weight = free.expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, still.expand_as(logits), weight=weight, reduction="sum")
    return bce / weight.sum().clamp(min=1)


#: The parameters tied to the space a model works in (pixels, or a latent): its patch embedding, output head and the
#: head's conv. A model may start from a checkpoint of another space with the same trunk (see _init_from); these then
#: start fresh.
SPACE_BOUND = ("patch.", "out.", "out_conv.")
#: Heads of options a checkpoint may lack (they start at zero, as no change), so a fine-tune can switch them on.
NEW_HEADS = ("ref_gate.",)


def _init_from(model: VideoDiT, path: str) -> list[str]:
    """Load a checkpoint's weights; a head trained for the other prediction type starts again from zero. Returns the
    names of the parameters left at their fresh initialisation.

    A latent model (v2) may start from a pixel model (v1) with the same trunk: the same width, depth and text encoder
    over the same token grid. The text encoder, the blocks, the positions, the layout code and the camera read-out
    then carry over (where things are, and when, is the same question in both spaces), and only the parameters tied to
    the space (``SPACE_BOUND``) start fresh: as the big video models start high resolutions from low-resolution ones.
    Any other difference is refused, so a wrong checkpoint cannot half-load.
    """
    src, _, _ = load_model(path)
    if src.cfg.vocab != model.cfg.vocab:
        raise ValueError(f"{path} was trained on another vocabulary; train from scratch instead")
    state = {k: v.clone() for k, v in src.state_dict().items() if not k.startswith("autoencoder.")}
    if src.cfg.prediction != model.cfg.prediction:
        for name in ("out.weight", "out.bias", "ada_out.weight", "ada_out.bias"):
            state[name] = torch.zeros_like(state[name])
    if src.cfg.ref_mix != model.cfg.ref_mix:  # a gate trained to add is not one that mixes: it starts again
        state = {k: v for k, v in state.items() if not k.startswith("ref_gate.")}
    elif model.cfg.ref_gate_values and not src.cfg.ref_gate_values and "ref_gate.bias" in state:
        # a gate per cell becomes one per value with the same opening in every channel (rows are channel-major)
        for name in ("ref_gate.weight", "ref_gate.bias"):
            state[name] = state[name].repeat(model.cfg.channels, *([1] * (state[name].ndim - 1)))
    own = model.state_dict()
    fresh = [k for k, v in own.items() if k not in state or state[k].shape != v.shape]
    misfit = [k for k in fresh if not k.startswith(SPACE_BOUND + NEW_HEADS)] + [k for k in state if k not in own]
    if misfit:
        raise ValueError(
            f"{path} does not fit the model: {', '.join(misfit[:4])} differ; a checkpoint to start from "
            "needs the same width, depth, text encoder and token grid"
        )
    model.load_state_dict({**state, **{k: own[k] for k in fresh}})
    return fresh


def finetune_decoder(
    checkpoint: str | Path,
    preset: str,
    out_dir: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The decoder stage: fine-tune the decoder of the autoencoder inside a v2 ``checkpoint`` (its encoder and latent
    statistics frozen), then write the checkpoint again with the new decoder.

    The DiT was trained on that encoder's latent, so it stays valid while the pixels it is decoded to get better (as
    Stable Diffusion's fine-tuned decoders did). The run lives in ``out_dir`` (``ae_state.pt`` resumes it); a result
    whose encoder or statistics differ from the checkpoint's is refused rather than paired with the DiT.
    """
    from .autoencoder import save_autoencoder
    from .train_autoencoder import AE_TRAIN_PRESETS, AETrainConfig, train_autoencoder

    path, out = Path(checkpoint), Path(out_dir)
    model, _, info = load_model(path)
    ae = getattr(model, "autoencoder", None)
    if ae is None:
        raise ValueError(f"{path} has no autoencoder: the decoder stage is for latent (v2) checkpoints")
    init = out / "init.safetensors"  # the checkpoint's autoencoder as it was (the stored fp16 values: exact)
    if not init.is_file():
        save_autoencoder(ae, init, {"from": str(path)})
    cfg = AETrainConfig(**{**AE_TRAIN_PRESETS[preset], **(overrides or {}), "init": str(init)})
    if not cfg.freeze_encoder:
        raise ValueError(f"preset {preset!r} trains the encoder too; the decoder stage keeps it")
    summary = train_autoencoder(cfg, out, on_log=on_log)
    tuned = _load_autoencoder(summary["path"], model.cfg)
    before, after = ae.state_dict(), tuned.state_dict()
    for name, value in before.items():
        kept = name.startswith(("encoder.", "norm.")) and not name.endswith("num_batches_tracked")
        if kept and not torch.equal(value, after[name]):
            raise ValueError(f"{summary['path']}: {name} differs from {path}'s; the DiT's latent would change")
    record: dict[str, Any] = {k: summary[k] for k in ("steps_run", "train_seconds", "hardware") if k in summary}
    save_model(model, path, {**info, "decoder_stage": {"preset": preset, **record}}, autoencoder=tuned)
    return {"path": str(path), "autoencoder": summary["path"], **record}


def _load_autoencoder(path: str, mcfg: ModelConfig) -> VideoAutoencoder:
    """The autoencoder for a latent model, checked against the model's configuration."""
    from .autoencoder import load_autoencoder

    ae, _ = load_autoencoder(path)
    if ae.cfg.factor != mcfg.latent_factor or ae.cfg.latent != mcfg.channels:
        raise ValueError(
            f"autoencoder {path}: {ae.cfg.latent} channels at 1/{ae.cfg.factor} size, but the model "
            f"wants {mcfg.channels} at 1/{mcfg.latent_factor}"
        )
    return ae


def _write(
    ema: VideoDiT,
    out: Path,
    cfg: TrainConfig,
    mcfg: ModelConfig,
    steps: int,
    elapsed: float,
    render_time: float,
    n_params: int,
    history: list[dict[str, Any]],
    device: torch.device,
    final: bool,
    autoencoder: VideoAutoencoder | None = None,
    started_from: dict[str, Any] | None = None,
) -> dict[str, Any]:
    hardware = (
        torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else (f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    )
    info = {
        "train_config": asdict(cfg),
        "steps_run": steps,
        "train_seconds": round(elapsed, 1),
        "render_seconds": round(render_time, 1),
        "device": device.type,
        "hardware": hardware,
        "parameters": n_params,
        "final_loss": history[-1]["loss"] if history else None,
        "torch": torch.__version__,
        "final": final,
    }
    if started_from is not None:  # train_config.init names the file; its hash says which weights it held
        info["init"] = started_from
    own = {  # builtin.sampling_defaults, motion_defaults and image_defaults read them
        "guidance": cfg.guidance,
        "guidance_interval": cfg.guidance_interval,
        "motion_guidance": cfg.motion_guidance,
        "motion_interval": cfg.motion_interval,
        "image_guidance": cfg.image_guidance,
        "image_interval": cfg.image_interval,
    }
    if any(v is not None for v in own.values()):
        info["sampling"] = {k: v for k, v in own.items() if v is not None}
    save_model(ema, out / "builtin.safetensors", info, autoencoder=autoencoder)
    (out / "train_log.json").write_text(json.dumps({"info": info, "history": history}, indent=1))
    return {"path": str(out / "builtin.safetensors"), **info}
