"""What every test shares, the tests in tests/ and the doctests in src/kinema alike (pyproject.toml collects both).

The built-in model is the fixture that lets every feature run for real. Tests run it with few denoising steps; when
the shipped weights are absent (a checkout without them, or while they are being trained) a tiny random-weight
checkpoint in the same format stands in, so the code path is the same.

Doctests run in a fresh temporary folder (a docstring's ``output="sunrise.mp4"`` lands there, not in the checkout),
and a module whose optional dependency is not installed is not collected for doctests (its tests skip or fail on
their own, with the extra named).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from functools import cache
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SRC = Path(__file__).parent / "src" / "kinema"
STAND_IN = "random tiny"  # the note of the stand-in checkpoint written when the shipped weights are absent


@cache
def _missing_imports(path: Path) -> tuple[str, ...]:
    """The third-party packages that ``path`` (or a package ``__init__`` above it) imports at module level and that
    are not installed."""
    files = [path, *(p / "__init__.py" for p in path.parents if SRC in (p, *p.parents))]
    missing = set()
    for file in files:
        if not file.is_file():
            continue
        for node in ast.parse(file.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "kinema" and importlib.util.find_spec(top) is None:
                    missing.add(top)
    return tuple(sorted(missing))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix == ".py" and SRC in collection_path.parents and _missing_imports(collection_path):
        return True  # a module of an extra that is not installed: nothing to import, so no doctest to run
    return None


@pytest.fixture(autouse=True)
def _doctests_run_in_a_temporary_folder(request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        request.getfixturevalue("monkeypatch").chdir(request.getfixturevalue("tmp_path"))


@pytest.fixture(scope="session", autouse=True)
def builtin_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kinema.builtin import DEFAULT_WEIGHTS, save_model

    if os.environ.get("KINEMA_BUILTIN_WEIGHTS"):
        return Path(os.environ["KINEMA_BUILTIN_WEIGHTS"])
    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS
    import torch

    from kinema.builtin.autoencoder import AE_CONFIGS, AEConfig, VideoAutoencoder
    from kinema.builtin.model import CONFIGS, ModelConfig, VideoDiT
    from kinema.builtin.world import CAMERAS

    torch.manual_seed(0)
    vocab = ["a", "red", "ball", "bouncing", "on", "green", "grass", "sunrise", "over", "mountains"]
    # the shipped model's kind: a latent model making 128x128 clips, trained with known last frames (p_keyframes)
    config = {**CONFIGS["tiny-v2"], "height": 128, "width": 128}
    model = VideoDiT(ModelConfig(vocab=vocab, cameras=list(CAMERAS), **config))  # type: ignore[arg-type]
    with torch.no_grad():  # a zero output head (DiT's init) would make every seed give the same grey clip
        for layer in (model.out, model.ada_out):
            layer.weight.normal_(std=0.02)
    autoencoder = VideoAutoencoder(AEConfig(**AE_CONFIGS["tiny"])).eval()
    info = {"note": STAND_IN, "train_config": {"p_keyframes": 0.1}}
    path = save_model(model, tmp_path_factory.mktemp("weights") / "builtin.safetensors", info, autoencoder=autoencoder)
    os.environ["KINEMA_BUILTIN_WEIGHTS"] = str(path)
    return path


@pytest.fixture(scope="session")
def trained_builtin(builtin_weights: Path) -> Path:
    """The built-in weights, for a test of what trained weights do (fidelity, steering): skipped on the random
    stand-in, whose random autoencoder draws noise wherever the DiT is right."""
    from kinema.builtin import _read_header

    if _read_header(builtin_weights)[1].get("note") == STAND_IN:
        pytest.skip("needs trained built-in weights; the random stand-in is in use")
    return builtin_weights
