"""Sampling the built-in model: Euler steps along the rectified flow, with classifier-free guidance.

t runs from 1 (pure noise) to 0 (clean). The schedule is shifted towards high noise (SD3's ``shift``), which spends
more of a small step budget on layout and motion. Known frames (the image of image-to-video, the tail of a clip being
extended) are given to the model as conditioning channels at every step and written into the output unchanged;
guidance leaves their pixels alone (there the conditional prediction is used as it is). ``known_index`` places them
anywhere in the clip (keyframes: the first and last frames), though the shipped weights only saw the first.

Editing (SDEdit, Meng et al. 2022): ``init`` is a clip noised to the level ``strength`` along the same straight path
the model was trained on, x_t = (1 - t) x0 + t e, then denoised from there; strength 1 starts from pure noise, which
is text-to-video with the same draw.

A v2 model works in its autoencoder's latent (:func:`space_of`): noise, known frames and the clip to edit are in the
latent, and the decoder turns the last step into pixels; the given frames are still handed back exactly as given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import InvalidRequest
from . import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL, DEFAULT_IMAGE_INTERVAL, DEFAULT_MOTION_INTERVAL
from .autoencoder import VideoAutoencoder
from .model import Tokenizer, VideoDiT

__all__ = [
    "camera_noise",
    "check_guidance_interval",
    "edit_timesteps",
    "LatentSpace",
    "PixelSpace",
    "sample",
    "shift_timesteps",
    "space_of",
    "timesteps",
    "to_model_space",
    "to_uint8",
]


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t' = shift*t / (1 + (shift-1)*t): more time near pure noise for shift > 1 (SD3)."""
    return shift * t / (1 + (shift - 1) * t)


def timesteps(steps: int, shift: float = 2.0) -> torch.Tensor:
    """steps+1 times from 1 to 0, shifted."""
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1), shift)


def edit_timesteps(steps: int, strength: float, shift: float = 2.0) -> torch.Tensor:
    """The times of an edit: from ``strength`` to 0 along the shifted schedule, with the step density of a full run
    (``steps`` over 1..0), so strength 1 is exactly :func:`timesteps` and a weak edit costs a few steps.

    >>> [round(float(t), 3) for t in edit_timesteps(20, 1.0)] == [round(float(t), 3) for t in timesteps(20)]
    True
    >>> len(edit_timesteps(20, 0.3)) - 1
    4
    """
    if not 0 <= strength <= 1:
        raise InvalidRequest("strength", f"must be from 0 to 1, got {strength}", value=strength)
    # the unshifted position whose shifted time is `strength` (the inverse of shift_timesteps)
    u = strength / (shift - (shift - 1) * strength)
    n = max(1, round(steps * u)) if strength > 0 else 0
    return shift_timesteps(torch.linspace(u, 0.0, n + 1), shift)


def check_guidance_interval(interval: tuple[float, float], field: str = "guidance_interval") -> tuple[float, float]:
    """``interval`` as (lo, hi) floats, or InvalidRequest (a ValueError) naming ``field`` unless it is two numbers
    with 0 <= lo <= hi <= 1 (a list, as read from JSON, is taken too)."""
    pair = list(interval)
    numbers = len(pair) == 2 and all(isinstance(x, (int, float)) for x in pair)
    if not (numbers and 0 <= pair[0] <= pair[1] <= 1):
        raise InvalidRequest(field, f"must be (lo, hi) with 0 <= lo <= hi <= 1, got {interval}", value=pair)
    return float(pair[0]), float(pair[1])


def camera_noise(
    cameras: list[str], shape: tuple[int, int, int, int, int], generator: torch.Generator, share: float
) -> torch.Tensor:
    """Gaussian noise (B, C, F, H, W) of which ``share`` of the variance moves with each clip's camera.

    One noise field per clip, larger than the frame, is looked up at every pixel's place in the world along the
    camera's path (``world.camera_path``: the same path the renderer films), nearest neighbour, so every value is
    still a standard normal; ``1 - share`` is fresh noise per frame. Content that follows its noise (as a denoiser's
    samples do) then slides, tilts or zooms with the camera (warped noise: Burgert et al., "Go-with-the-Flow", 2025).
    A static camera gives the same field in every frame. ``share`` 0 is plain ``torch.randn`` (the draw of models
    trained without warped noise).
    """
    from . import world

    if not 0 <= share <= 1:
        raise ValueError(f"noise_share: {share!r} is outside 0..1")
    for camera in cameras:
        if camera not in world.CAMERAS:
            raise ValueError(f"cameras: unknown camera {camera!r} (allowed: {', '.join(world.CAMERAS)})")
    fresh = torch.randn(shape, generator=generator)
    if share <= 0:
        return fresh
    b, c, f, h, w = shape
    side = 2 * max(h, w)  # room for the paths' offsets (at most an eighth of the frame) and any zoom >= 1
    field = torch.randn((b, c, side * side), generator=generator)
    t = np.linspace(0.0, 1.0, f)
    xs = np.arange(w) + 0.5 - w / 2  # pixel centres from the frame's centre, in pixels
    ys = np.arange(h) + 0.5 - h / 2
    index = np.empty((b, f, h, w), np.int64)
    for i, camera in enumerate(cameras):
        pan, tilt, zoom = world.camera_path(camera, t)  # (F,) each, in frame heights and a magnification
        u = np.floor(xs[None] / zoom[:, None] + pan[:, None] * h + side / 2).astype(np.int64).clip(0, side - 1)
        v = np.floor(ys[None] / zoom[:, None] + tilt[:, None] * h + side / 2).astype(np.int64).clip(0, side - 1)
        index[i] = v[:, :, None] * side + u[:, None, :]  # (F, H, W)
    idx = torch.from_numpy(index).view(b, 1, -1).expand(b, c, -1)
    warped = torch.gather(field, 2, idx).view(shape)
    return math.sqrt(share) * warped + math.sqrt(1 - share) * fresh


def camera_warp(
    image: torch.Tensor, cameras: list[str], frames: int, at: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) -> (B, C, F, H, W): each clip's image as its camera would see it in every frame, moved along
    ``world.camera_path`` from where frame ``at[i]`` (default 0) sees it (nearest neighbour), and (B, 1, F, H, W): 1
    where that frame saw the place, 0 where the move reveals what it did not (there the edge repeats)."""
    from . import world

    b, c, h, w = image.shape
    t = np.linspace(0.0, 1.0, frames)
    xs = np.arange(w) + 0.5 - w / 2
    ys = np.arange(h) + 0.5 - h / 2
    index = np.empty((b, frames, h, w), np.int64)
    seen = np.empty((b, 1, frames, h, w), np.float32)
    for i, camera in enumerate(cameras):
        a = 0 if at is None else at[i]
        pan, tilt, zoom = world.camera_path(camera, t)  # the world point a pixel shows, then where frame a saw it
        u = np.floor((xs[None] / zoom[:, None] + (pan[:, None] - pan[a]) * h) * zoom[a] + w / 2).astype(np.int64)
        v = np.floor((ys[None] / zoom[:, None] + (tilt[:, None] - tilt[a]) * h) * zoom[a] + h / 2).astype(np.int64)
        seen[i, 0] = ((v >= 0) & (v < h))[:, :, None] & ((u >= 0) & (u < w))[:, None, :]
        u, v = u.clip(0, w - 1), v.clip(0, h - 1)
        index[i] = v[:, :, None] * w + u[:, None, :]
    idx = torch.from_numpy(index).view(b, 1, -1).expand(b, c, -1)
    warped = torch.gather(image.reshape(b, c, h * w), 2, idx).view(b, c, frames, h, w)
    return warped, torch.from_numpy(seen)


def moved_copy(cond: torch.Tensor, mask: torch.Tensor, cameras: list[str]) -> torch.Tensor:
    """The ref gate's copy with ``warp_reference``, (B, C, F, H, W): each clip's first known frame (``cond``, ``mask``
    as the model takes them) moved along its camera path from the frame it is known at; what the move reveals keeps
    the frame in place. Sampling and training build it alike, so the gate learns the copy it is given."""
    from .model import first_known, first_known_index

    first = first_known(cond, mask)[:, :, 0]  # (B, C, H, W)
    at = first_known_index(mask)[0].tolist()
    moved, seen = camera_warp(first.cpu(), cameras, cond.shape[2], at)  # the lookup is numpy's, on the CPU
    return torch.where(seen.to(cond.device).bool(), moved.to(cond.device), first[:, :, None].expand_as(moved))


def to_model_space(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> float (B, 3, F, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.permute(0, 4, 1, 2, 3)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (B, 3, F, H, W) in [-1, 1] -> uint8 (B, F, H, W, 3)."""
    y = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 4, 1).contiguous().numpy()


class PixelSpace:
    """v1's space: the model denoises pixels in [-1, 1]."""

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (B, F, H, W, 3) -> (B, 3, F, H, W)."""
        return to_model_space(frames)

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """(B, 3, F, H, W) -> uint8 (B, F, H, W, 3)."""
        return to_uint8(x)


class LatentSpace:
    """v2's space: the autoencoder's latent. Frames are encoded one by one, so a given frame's latent does not depend
    on what follows it, and the decoder draws the pixels of every frame."""

    def __init__(self, autoencoder: VideoAutoencoder) -> None:
        self.autoencoder = autoencoder

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (B, F, H, W, 3) -> (B, C, F, H/f, W/f), contiguous.

        The encoder hands back a channels-last layout; a latent mixed from it (an edit's start) would take that layout
        and the decoder's convolutions would round differently (1 level), so strength 1 would not be text-to-video
        frame for frame."""
        return self.autoencoder.encode(to_model_space(frames)).contiguous()

    def decode(self, z: torch.Tensor) -> np.ndarray:
        """(B, C, F, H/f, W/f) -> uint8 (B, F, H, W, 3)."""
        return to_uint8(self.autoencoder.decode(z))


def space_of(model: VideoDiT) -> PixelSpace | LatentSpace:
    """The space ``model`` works in: its autoencoder's latent when it has one (v2), else pixels."""
    ae = model.autoencoder
    if model.cfg.latent_factor > 1:
        if ae is None:
            raise ValueError("this v2 model has no autoencoder attached; load it with kinema.builtin.load_model")
        return LatentSpace(ae)
    return PixelSpace()


@torch.inference_mode()
def sample(
    model: VideoDiT,
    tokenizer: Tokenizer,
    prompts: list[str],
    *,
    steps: int = 20,
    guidance: float = DEFAULT_GUIDANCE,
    seed: int = 0,
    negative_prompt: str | None = None,
    known: np.ndarray | None = None,
    num_known: int = 0,
    shift: float | None = None,
    on_step: Callable[[int, int], None] | None = None,
    return_raw: bool = False,
    cameras: list[str] | None = None,
    noise_share: float | None = None,
    guidance_interval: tuple[float, float] = DEFAULT_GUIDANCE_INTERVAL,
    known_index: list[int] | None = None,
    init: np.ndarray | None = None,
    strength: float = 1.0,
    on_state: Callable[[int, float, torch.Tensor, torch.Tensor], None] | None = None,
    motion_guidance: float = 0.0,
    motion_interval: tuple[float, float] = DEFAULT_MOTION_INTERVAL,
    image_guidance: float = 0.0,
    image_interval: tuple[float, float] = DEFAULT_IMAGE_INTERVAL,
    warp_reference: bool | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Generate clips for ``prompts``: uint8 (B, F, H, W, 3).

    ``known`` (B, num_known, H, W, 3) uint8 are the first frames of every clip (image-to-video: 1, extension: the
    last frames of the earlier clip). With ``return_raw`` the model's own prediction of every frame (before the known
    frames are written back) is returned too, which is what the evaluation measures fidelity on.

    A model trained on warped noise (``cfg.warp_noise``) starts from noise filmed along the camera move that its
    read-out finds in each prompt; ``cameras`` (one per prompt, names from ``world.CAMERAS``) overrides the read-out,
    and ``noise_share`` the share of warped noise.

    ``guidance_interval`` (lo, hi): guidance acts only at steps whose noise level t lies in it, and elsewhere the
    conditional prediction is used alone (Kynkaenniemi et al., "Applying Guidance in a Limited Interval Improves
    Sample and Distribution Quality in Diffusion Models", 2024).

    ``shift``: the schedule's shift towards noise (default ``cfg.sampling_shift``, the checkpoint's own; an edit's
    below strength 1 is the training shift, ``cfg.shift``).

    ``known_index`` (num_known frame indices, default 0..num_known-1) says where the known frames go. ``init``
    (B, F, H, W, 3) uint8 is a clip to edit: it is noised to ``strength`` and denoised from there (strength 0 hands it
    back unchanged).

    ``motion_guidance`` m: where a prompt asks its subject to move, the steps whose t lies in ``motion_interval`` add
    m x (conditional - the same prompt with the subject still, :func:`world.still_caption`): guidance along the motion
    words alone, so the motion grows and nothing else the prompt says is pushed further (Liu et al., "Compositional
    Visual Generation with Composable Diffusion Models", 2022). Only at the first, noisiest steps, where the
    subject's path is laid out: over all of classifier-free guidance's interval it cost the camera (v2: camera 0.69
    against 0.82 at m = 2). It costs one more pass at those steps; 0 is off.

    ``image_guidance`` w: with known frames (image-to-video, extension, keyframes), the steps whose t lies in
    ``image_interval`` add w x (the prediction - the same prediction with the known frames hidden): guidance along
    what the given frames add, so the clip keeps more of them through its last frame (as InstructPix2Pix guides its
    input image apart from its text: Brooks et al., "InstructPix2Pix: Learning to Follow Image Editing
    Instructions", 2023). It holds the camera still too: on the shipped weights at w = 2, two start images ended
    twice as different (late/first 0.27 to 0.56) and the camera asked for was drawn in 6 of 32 clips instead of 18
    (docs/builtin-v2.md), so it is off unless asked for. It costs one more pass at those steps; text-to-video never
    runs it.

    ``warp_reference`` (default ``cfg.warp_reference``): a model whose gate copies the first known frame into later
    frames (``cfg.ref_mix``) copies it moved along each clip's camera path (``cameras``, else the text's read-out;
    :func:`moved_copy`, as training builds it), so the copy pans, tilts and zooms with the clip; False copies it in
    place.

    ``on_state(i, t, x_t, x0_hat)`` sees every step before it is taken: the step's index, its noise level, the clip
    the sampler holds and the clean clip the (guided) model predicts from it, both (B, 3, F, H, W) in [-1, 1]
    (``kinema explain`` draws them).
    """
    if not (math.isfinite(motion_guidance) and motion_guidance >= 0):
        raise InvalidRequest("motion_guidance", f"must be a number >= 0, got {motion_guidance}", value=motion_guidance)
    mlo, mhi = check_guidance_interval(motion_interval, "motion_interval")
    if not (math.isfinite(image_guidance) and image_guidance >= 0):
        raise InvalidRequest("image_guidance", f"must be a number >= 0, got {image_guidance}", value=image_guidance)
    ilo, ihi = check_guidance_interval(image_interval, "image_interval")
    cfg = model.cfg
    b = len(prompts)
    space = space_of(model)
    shape = (b, cfg.channels, *cfg.space)  # (B, C, F, H, W) of the model's space: pixels, or the latent
    # noise from a CPU generator: the same seed gives the same clip on every machine
    gen = torch.Generator("cpu").manual_seed(int(seed))
    text = model.encode_text(tokenizer.encode(prompts))
    share = cfg.warp_noise if noise_share is None else noise_share
    # the gate's copy of the first known frame moves along the camera path (warp_reference)
    warp = cfg.warp_reference if warp_reference is None else warp_reference
    warp = warp and cfg.ref_mix and known is not None and num_known > 0
    if (share > 0 or warp) and cameras is None:  # the camera each clip moves by: the text's read-out
        cameras = model.cameras(text) if cfg.warp_noise > 0 else ["static"] * b
    elif cameras is not None and len(cameras) != b:
        raise ValueError(f"cameras: {len(cameras)} given for {b} prompts; give one per prompt")
    x = camera_noise(cameras or [], shape, gen, share)
    cond = torch.zeros(shape)
    mask = torch.zeros((b, 1, *cfg.space))
    given: torch.Tensor | None = None  # (B, 1, F, H, W) bool: the known pixels, where guidance does not act
    where = list(range(num_known)) if known_index is None else list(known_index)
    if len(where) != num_known or any(not 0 <= i < cfg.frames for i in where):
        raise ValueError(f"known_index: {where} does not place {num_known} frames among {cfg.frames}")
    if known is not None and num_known > 0:
        if known.shape[2:4] != (cfg.height, cfg.width):
            h, w = known.shape[2:4]
            raise ValueError(f"known: frames of {w}x{h}, expected {cfg.width}x{cfg.height} (the model's size)")
        cond[:, :, where] = space.encode(known[:, :num_known])
        mask[:, :, where] = 1.0
        given = mask.bool()
    copy: dict[str, torch.Tensor] = {}  # the model's copy_ref: the first known frame moved along each camera path
    if warp and cameras is not None:
        copy["copy_ref"] = moved_copy(cond, mask, cameras)
    ts = timesteps(steps, cfg.sampling_shift if shift is None else shift)
    if init is not None:
        if init.shape != (b, cfg.frames, cfg.height, cfg.width, 3):
            raise ValueError(f"init: shape {init.shape}, expected {(b, cfg.frames, cfg.height, cfg.width, 3)}")
        # an edit runs on the training shift's schedule: the sampling shift moves steps towards pure noise, which an
        # edit never visits, and takes them from its own (at 5 an edit at 0.45 ran 3 steps, not 4, and night showed
        # in 2 of 6 clips instead of 4: docs/editing.md); strength 1 is text-to-video, on its schedule
        edit_shift = cfg.shift if strength < 1 else cfg.sampling_shift
        ts = edit_timesteps(steps, strength, edit_shift if shift is None else shift)
        t0 = ts[0]
        x = (1 - t0) * space.encode(init) + t0 * x  # the rectified-flow path at t0: the same noise as t2v's draw
        steps = len(ts) - 1

    lo, hi = check_guidance_interval(guidance_interval)
    still = None
    if motion_guidance:
        from .world import still_caption

        stills = [still_caption(p) for p in prompts]
        if any(stills):  # a prompt with nothing to move guides towards itself: a difference of zero
            still = model.encode_text(tokenizer.encode([s or p for s, p in zip(stills, prompts, strict=True)]))
    use_cfg = guidance != 1.0
    uncond = model.encode_text(tokenizer.encode([negative_prompt or ""] * b)) if use_cfg else None

    x_pred = model.cfg.prediction == "x"
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        guide = uncond if lo <= float(t) <= hi else None  # this step's unconditional text, if it guides
        push = still if mlo <= float(t) <= mhi else None  # and its still text, if it pushes the motion
        blind = given is not None and image_guidance > 0 and ilo <= float(t) <= ihi  # and the known frames hidden
        if guide is not None or push is not None or blind:
            # one batched call for the conditional part, the unconditional one, the still one and the one without
            # the known frames, as the step needs
            parts = [text, *(z for z in (guide, push) if z is not None)] + ([text] if blind else [])
            k = len(parts)
            both = (torch.cat([z[0] for z in parts]), torch.cat([z[1] for z in parts]))
            conds = torch.cat([cond] * (k - 1) + [torch.zeros_like(cond) if blind else cond])
            masks = torch.cat([mask] * (k - 1) + [torch.zeros_like(mask) if blind else mask])
            copies = {key: torch.cat([v] * k) for key, v in copy.items()}  # (the blind part has none to copy)
            out = model(torch.cat([x] * k), t.expand(k * b), both, conds, masks, **copies)
            out_c, *rest = out.chunk(k)
            out = out_c
            if guide is not None:  # guidance is linear, so it acts the same on x or v
                out = rest[0] + guidance * (out_c - rest[0])
            if push is not None:
                out = out + motion_guidance * (out_c - rest[1 if guide is not None else 0])
            if blind:
                out = out + image_guidance * (out_c - rest[-1])
            if given is not None:
                # at given pixels both halves should return the given frames, so their difference is only error,
                # and guidance would multiply it (frame-0 PSNR 4 dB lower at 2.5): keep the conditional prediction
                out = torch.where(given, out_c, out)
        else:
            out = model(x, t.expand(b), text, cond, mask, **copy)
        # a clean-clip prediction turns into a velocity: x_t = (1 - t) x0 + t e  =>  v = (x_t - x0) / t
        v = (x - out) / t.clamp(min=1e-3) if x_pred else out
        if on_state is not None:
            on_state(i, float(t), x, out if x_pred else x - t * v)  # x0 = x_t - t v on the straight path
        # Euler step towards t=0; the last one (t_next = 0) lands on the prediction, exactly (x - t (x - x0) / t
        # would leave rounding a decoder could turn into a level of difference)
        x = out if x_pred and float(t_next) == 0.0 else x + (t_next - t) * v
        if on_step is not None:
            on_step(i + 1, steps)
    # strength 0 is the source itself; through a latent it would come back as the autoencoder's reconstruction
    raw = init.copy() if init is not None and strength == 0 else space.decode(x)
    out = raw.copy()
    if known is not None and num_known > 0:
        out[:, where] = known[:, :num_known]
    return (out, raw) if return_raw else out
