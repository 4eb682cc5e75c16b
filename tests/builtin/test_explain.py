"""``kinema explain``: the sampler's per-step state, and the sheet drawn from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from kinema.builtin import load_model
from kinema.builtin.sampling import sample, space_of
from kinema.cli import app


def test_on_state_sees_every_step_and_the_last_prediction_is_the_clip() -> None:
    model, tokenizer, _ = load_model()
    space = space_of(model)  # the shipped v2 samples latents: the clip is the last one decoded
    seen: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []

    def keep(i: int, t: float, x: torch.Tensor, x0: torch.Tensor) -> None:
        seen.append((i, t, x.clone(), x0.clone()))

    clip = sample(model, tokenizer, ["a red ball bouncing on green grass"], steps=4, seed=3, on_state=keep)
    assert isinstance(clip, np.ndarray)
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    ts = [s[1] for s in seen]
    assert ts[0] == 1.0 and ts == sorted(ts, reverse=True)  # from pure noise towards clean
    # the last Euler step lands on the model's prediction (t_next = 0): x0_hat there, decoded, is the clip itself
    assert np.array_equal(space.decode(seen[-1][3]), clip)
    # x_t at t = 1 is noise: far from the final clip; the prediction from it is already a picture, much closer
    final = seen[-1][3]
    noise_err = float((seen[0][2] - final).abs().mean())
    pred_err = float((seen[0][3] - final).abs().mean())
    assert noise_err > 3 * pred_err


def test_explain_writes_the_sheet(tmp_path: Path) -> None:
    out = tmp_path / "steps.png"
    result = CliRunner().invoke(
        app, ["explain", "a red ball bouncing", "-o", str(out), "--steps", "4", "--columns", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["output"] == str(out) and info["steps"] == 4 and info["tokens"] == 256
    cfg = load_model()[0].cfg  # a latent model adds panel 5, its latent's channels
    latent = [cfg.channels] if cfg.latent_factor > 1 else []
    assert [len(p["columns"]) for p in info["panels"]] == [3, 5, 4, 1, *latent]
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 3 * 128 and im.height > 4 * 128
    bad = CliRunner().invoke(app, ["explain", "x", "--columns", "9", "--steps", "4"])
    assert bad.exit_code != 0 and "columns" in bad.output and "Traceback" not in bad.output


def test_explain_a_v2_checkpoint_decodes_the_latent_and_shows_it(tmp_path: Path) -> None:
    """With a v2 model the sampler holds latents: panel 1 shows them decoded, panel 5 the latent's channels."""
    from kinema.builtin import save_model, world
    from kinema.builtin.autoencoder import AE_CONFIGS, AEConfig, VideoAutoencoder
    from kinema.builtin.explain import explain
    from kinema.builtin.model import CONFIGS, ModelConfig, VideoDiT

    torch.manual_seed(0)
    cfg = ModelConfig(vocab=world.vocabulary(), cameras=list(world.CAMERAS), **CONFIGS["tiny-v2"])  # type: ignore[arg-type]
    ae = VideoAutoencoder(AEConfig(**AE_CONFIGS["tiny"])).eval()
    path = save_model(VideoDiT(cfg), tmp_path / "v2.safetensors", autoencoder=ae)
    result = explain("a red ball bouncing", steps=3, columns=2, weights=str(path))
    assert [len(p["columns"]) for p in result.panels] == [2, 5, 4, 1, cfg.channels]
    assert result.info["latent"] == f"{cfg.channels}x8x8 per frame"
    assert result.info["size"] == "64x64" and "latent cells (32x32 pixels)" in result.panels[3]["title"]
    assert result.image.shape[1] >= cfg.channels * 64 * 2  # the latent's row: one 2x tile per channel
