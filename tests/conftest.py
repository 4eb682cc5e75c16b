"""Shared test fixtures.

The built-in model is the fixture that lets every feature run for real. Tests run it with few denoising steps; when
the shipped weights are absent (a checkout without them, or while they are being trained) a tiny random-weight
checkpoint in the same format stands in, so the code path is the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session", autouse=True)
def builtin_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kinema.builtin import DEFAULT_WEIGHTS, save_model

    if os.environ.get("KINEMA_BUILTIN_WEIGHTS"):
        return Path(os.environ["KINEMA_BUILTIN_WEIGHTS"])
    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS
    import torch

    from kinema.builtin.model import CONFIGS, ModelConfig, VideoDiT
    from kinema.builtin.world import CAMERAS

    torch.manual_seed(0)
    vocab = ["red", "ball", "bouncing", "on", "green", "grass", "sunrise", "over", "mountains"]
    model = VideoDiT(ModelConfig(vocab=vocab, cameras=list(CAMERAS), **CONFIGS["tiny"]))  # type: ignore[arg-type]
    with torch.no_grad():  # a zero output head (DiT's init) would make every seed give the same grey clip
        for layer in (model.out, model.ada_out):
            layer.weight.normal_(std=0.02)
    path = save_model(model, tmp_path_factory.mktemp("weights") / "builtin.safetensors", {"note": "random tiny"})
    os.environ["KINEMA_BUILTIN_WEIGHTS"] = str(path)
    return path
