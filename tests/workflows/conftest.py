"""Fixtures for the workflow tests: a real clip from the built-in model, a smooth synthetic clip, a sine tone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinema import Video


def smooth_clip(frames: int = 16, size: int = 32, fps: float = 8.0, seed: int = 0) -> Video:
    """A moving colour gradient: compressible, so decoded frames stay close to the originals."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 215, size=3)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        phase = t / max(1, frames)
        for c in range(3):
            out[t, :, :, c] = np.clip(base[c] + 40 * np.sin(2 * np.pi * (x + phase + c / 3)) + 30 * y, 0, 255)
    return Video(out, fps=fps, metadata={"prompt": "smooth test clip", "seed": seed})


@pytest.fixture(scope="session")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s 440 Hz sine tone (WAV), made with the bundled ffmpeg."""
    from kinema.media.ffmpeg import make_tone

    return make_tone(tmp_path_factory.mktemp("audio") / "tone.wav", 3)


@pytest.fixture(scope="session")
def long_tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kinema.media.ffmpeg import make_tone

    return make_tone(tmp_path_factory.mktemp("audio") / "long.wav", 12, 330)


@pytest.fixture(scope="session")
def real_clip(tmp_path_factory: pytest.TempPathFactory, builtin_weights: Path) -> Path:
    """A clip made by the built-in model (16 frames, 128x128, 8 fps), saved as MP4 with its recipe."""
    import kinema

    path = tmp_path_factory.mktemp("clips") / "real.mp4"
    kinema.generate("a red ball bouncing on green grass", seed=1, num_inference_steps=2, output=path)
    return path


@pytest.fixture
def count_generations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The requests that were generated (not served from a cache): every generation of batches and storyboards
    ends in kinema.engine.finish, the one finish."""
    import kinema.engine as engine

    calls: list[Any] = []
    real: Callable[..., Any] = engine.finish

    def counting(plan: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(plan.request)
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(engine, "finish", counting)
    yield calls


def block_diff(a: np.ndarray, b: np.ndarray, k: int = 8) -> float:
    """Mean difference of k x k block averages: robust to codec noise (the DC of each block survives H.264), yet
    two different frames of the built-in model's output differ clearly."""
    h, w = a.shape[0] // k * k, a.shape[1] // k * k
    fa = a[:h, :w].astype(np.float64).reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))
    fb = b[:h, :w].astype(np.float64).reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))
    return float(np.abs(fa - fb).mean())
