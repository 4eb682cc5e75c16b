"""``kinema explain``: one picture of how the built-in model makes a clip, drawn by the model itself.

The sheet has four panels, each from the shipped weights (or ``KINEMA_BUILTIN_WEIGHTS``), so the guide
(docs/how-it-works.md) that shows them cannot drift from the model:

1. **Denoising.** Frame 0 of what the sampler holds at a few steps (x_t, from pure noise at t = 1) above what the
   model predicts the clean clip to be from it (x0_hat = x_t - t v on the straight rectified-flow path). The layout is
   decided in the first steps; the last ones only sharpen.
2. **The clip.** Evenly spaced frames of the result.
3. **Guidance.** The same seed at several classifier-free guidance scales (in the checkpoint's interval: the
   shipped v1 weights guide only while t >= 0.8), one frame each.
4. **Tokens.** Frame 0 with the patch grid the transformer cuts the clip into (each token is a patch of
   patch_t frames x patch_h x patch_w pixels, or latent cells in v2), and how many tokens a clip is.
5. **The latent** (v2 only). Frame 0's latent, one grey tile per channel (each scaled to its own range): what the
   transformer really denoises, and what the autoencoder's decoder turns into panel 2's pixels.

With a v2 checkpoint the sampler holds latents, so panel 1 shows them decoded to pixels by the autoencoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import load_model, motion_defaults, sampling_defaults
from .sampling import LatentSpace, sample, space_of

__all__ = ["Explanation", "explain"]

#: guidance scales the third panel compares beside the checkpoint's default (1.0: none)
GUIDANCES = (1.0, 3.0, 6.0)
SCALE = 2  # tiles are drawn at 2x, nearest-neighbour, so single pixels stay visible
LABEL_H = 14  # pixels for a line of text above a row


@dataclass
class Explanation:
    """The sheet (H, W, 3) uint8 and what is on it."""

    image: np.ndarray
    panels: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _tile(frame: np.ndarray) -> np.ndarray:
    """(h, w, 3) -> (SCALE h, SCALE w, 3), nearest neighbour."""
    return np.repeat(np.repeat(frame, SCALE, axis=0), SCALE, axis=1)


def _grid(frame: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Frame 0 at 2x with the patch borders drawn in white."""
    tile = _tile(frame).copy()
    tile[:: ph * SCALE, :] = 255
    tile[:, :: pw * SCALE] = 255
    return tile


def explain(
    prompt: str,
    *,
    seed: int = 0,
    steps: int = 20,
    columns: int = 6,
    weights: str | None = None,
) -> Explanation:
    """Draw the sheet for ``prompt`` (``seed``, ``steps`` as ``kinema generate`` takes them; ``columns``: how many
    denoising steps the first panel shows; ``weights``: a checkpoint, default the one in use)."""
    from PIL import Image, ImageDraw

    model, tokenizer, own = load_model(weights)
    default, interval = sampling_defaults(own)
    motion, motion_interval = motion_defaults(own)
    scales = sorted({*GUIDANCES, default})
    cfg = model.cfg
    if not 2 <= columns <= steps:
        raise ValueError(f"columns: {columns}; between 2 and steps ({steps})")
    shown = sorted({round(i * (steps - 1) / (columns - 1)) for i in range(columns)})
    states: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}
    space = space_of(model)
    latent: list[Any] = []  # v2: the last step's prediction of frame 0's latent, (C, h, w)

    def keep(i: int, t: float, x: Any, x0: Any) -> None:
        if i in shown:  # frame 0 only, as pixels (a v2 latent goes through the decoder)
            states[i] = (t, space.decode(x[:1, :, :1])[0, 0], space.decode(x0[:1, :, :1])[0, 0])
        if i == steps - 1:  # the last Euler step lands on this prediction: the clip's own latent
            latent.append(x0[0, :, 0].clone())

    clips: dict[float, np.ndarray] = {}
    for g in scales:
        out = sample(
            model,
            tokenizer,
            [prompt],
            steps=steps,
            guidance=g,
            seed=seed,
            guidance_interval=interval,
            motion_guidance=motion,
            motion_interval=motion_interval,
            on_state=keep if g == default else None,
        )
        assert isinstance(out, np.ndarray)
        clips[g] = out[0]
    clip = clips[default]
    f = clip.shape[0]
    frame_idx = sorted({round(i * (f - 1) / 4) for i in range(5)})
    mid = f // 2
    nt, nh, nw = cfg.grid
    f_lat = cfg.latent_factor
    token_h, token_w = cfg.token_pixels
    cells = "pixels" if f_lat == 1 else f"latent cells ({token_h}x{token_w} pixels)"

    panels: list[dict[str, Any]] = [
        {
            "title": "1. denoising, frame 0: what the sampler holds (x_t) above what the model predicts (x0_hat)",
            "columns": [f"step {i + 1}, t={states[i][0]:.2f}" for i in shown],
            "rows": [[states[i][1] for i in shown], [states[i][2] for i in shown]],
        },
        {
            "title": f"2. the clip ({f} frames)",
            "columns": [f"frame {i}" for i in frame_idx],
            "rows": [[clip[i] for i in frame_idx]],
        },
        {
            "title": f"3. guidance scale (frame {mid}; guidance acts while t >= {interval[0]:g})",
            "columns": [f"{g:g}" + (" (default)" if g == default else "") for g in scales],
            "rows": [[clips[g][mid] for g in scales]],
        },
        {
            "title": f"4. tokens: {cfg.patch_t} frames x {cfg.patch_h}x{cfg.patch_w} {cells}, {nt}x{nh}x{nw} = "
            f"{nt * nh * nw} per clip",
            "columns": ["frame 0, patch grid"],
            "rows": [[_grid(clip[0], token_h, token_w)]],
        },
    ]
    if isinstance(space, LatentSpace):
        z = latent[0].float().numpy()  # (C, h, w)
        lo, hi = z.min(axis=(1, 2), keepdims=True), z.max(axis=(1, 2), keepdims=True)
        grey = ((z - lo) / np.maximum(hi - lo, 1e-6) * 255).round().astype(np.uint8)
        tiles = [np.repeat(np.repeat(g[..., None], f_lat, 0), f_lat, 1).repeat(3, axis=2) for g in grey]
        panels.append(
            {
                "title": f"5. the latent of frame 0: {z.shape[0]} channels at {z.shape[1]}x{z.shape[2]} "
                f"(the decoder draws panel 2 from it)",
                "columns": [f"channel {c}" for c in range(z.shape[0])],
                "rows": [tiles],
            }
        )

    tile_w, tile_h = cfg.width * SCALE, cfg.height * SCALE
    gap = 4
    width = max(len(p["columns"]) for p in panels) * (tile_w + gap) + gap
    height = sum(LABEL_H * 2 + len(p["rows"]) * (tile_h + gap) for p in panels) + gap
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    y = gap
    for p in panels:
        draw.text((gap, y), p["title"], fill=(235, 235, 235))
        y += LABEL_H
        for c, name in enumerate(p["columns"]):
            draw.text((gap + c * (tile_w + gap), y), name, fill=(170, 170, 170))
        y += LABEL_H
        for row in p["rows"]:
            for c, frame in enumerate(row):
                tile = frame if frame.shape[0] == tile_h else _tile(frame)
                sheet.paste(Image.fromarray(tile), (gap + c * (tile_w + gap), y))
            y += tile_h + gap
    described = [{"title": p["title"], "columns": p["columns"]} for p in panels]
    info = {
        "prompt": prompt,
        "seed": seed,
        "steps": steps,
        "guidances": list(scales),
        "tokens": nt * nh * nw,
        "size": f"{cfg.width}x{cfg.height}",
        "frames": f,
        "latent": None if f_lat == 1 else f"{cfg.channels}x{cfg.space[1]}x{cfg.space[2]} per frame",
    }
    return Explanation(np.asarray(sheet), described, info)
