"""A contact sheet of the built-in model on the seeds' example prompts (``kinema eval builtin --sheet FILE``).

The product was conceived from prompts such as "A cinematic sunrise over mountains, clouds moving slowly"; the sheet
shows what the model in use draws for them, a row per prompt, a few frames each, so the model card can show whether
they are recognisable. The last rows ask for things the procedural world has no words for (a cat, a spaceship): the
model leaves unknown words out (and says which), so those rows show what it draws instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SEED_PROMPTS", "Sheet", "contact_sheet"]

#: the seeds' example prompts the world can express, then two it cannot
SEED_PROMPTS = (
    "A cinematic sunrise over mountains, clouds moving slowly",
    "A drone shot of ocean waves crashing on rocks",
    "Snow falling on a pine forest",
    "A red ball bouncing on green grass",
    "A city skyline at night with lights",
    "A cat playing with a ball of yarn",
    "A spaceship flying through space",
)
LABEL_H = 14  # pixels for a row's prompt
SCALE_TO = 128  # tiles are drawn at least this large (nearest neighbour), so a 64x64 model's pixels stay visible


@dataclass
class Sheet:
    """The sheet (H, W, 3) uint8, and per row the prompt and the words the model left out."""

    image: np.ndarray
    rows: list[dict[str, object]] = field(default_factory=list)


def contact_sheet(
    prompts: tuple[str, ...] | list[str] = SEED_PROMPTS,
    *,
    weights: str | None = None,
    seed: int = 0,
    steps: int = 20,
    frames: tuple[int, ...] = (0, 5, 10, 15),
) -> Sheet:
    """One row per prompt: ``frames`` of the clip the model makes for it (seed ``seed``, ``steps`` denoising steps,
    the model's default guidance), under the prompt; ``weights`` a checkpoint (default: the one in use)."""
    from PIL import Image, ImageDraw

    from . import load_model, motion_defaults, sampling_defaults
    from .sampling import sample

    model, tokenizer, info = load_model(weights)
    guidance, interval = sampling_defaults(info)
    motion, motion_interval = motion_defaults(info)
    clips = sample(
        model,
        tokenizer,
        list(prompts),
        steps=steps,
        seed=seed,
        guidance=guidance,
        guidance_interval=interval,
        motion_guidance=motion,
        motion_interval=motion_interval,
    )
    assert isinstance(clips, np.ndarray)  # (B, F, H, W, 3)
    if any(not 0 <= f < clips.shape[1] for f in frames):
        raise ValueError(f"frames: {frames} are not all among the clip's {clips.shape[1]}")
    scale = max(1, SCALE_TO // clips.shape[2])
    tile = clips.shape[2] * scale
    gap = 4
    width = len(frames) * (tile + gap) + gap
    height = len(prompts) * (LABEL_H + tile + gap) + gap
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    rows: list[dict[str, object]] = []
    for r, (prompt, clip) in enumerate(zip(prompts, clips, strict=True)):
        y = gap + r * (LABEL_H + tile + gap)
        unknown = tokenizer.unknown(prompt)
        label = prompt + (f"  (not known: {', '.join(unknown)})" if unknown else "")
        draw.text((gap, y), label, fill=(235, 235, 235))
        for c, f in enumerate(frames):
            big = np.repeat(np.repeat(clip[f], scale, axis=0), scale, axis=1)
            sheet.paste(Image.fromarray(big), (gap + c * (tile + gap), y + LABEL_H))
        rows.append({"prompt": prompt, "unknown_words": unknown})
    return Sheet(np.asarray(sheet), rows)
