"""Fixtures shared by the core tests: a source clip, and the refusal of a request built around it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.errors import InvalidRequest
from kinema.request import VideoRequest


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    frames = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    return kinema.Video(frames, fps=8).save(tmp_path / "source.mp4")


@pytest.fixture
def refused(clip: Path) -> Callable[[dict[str, Any]], InvalidRequest]:
    """``VideoRequest(prompt="x", **fields)``'s refusal, where ``"source": True`` and ``"video": True`` stand for the
    clip (as source_video and video); fails the test if the request is accepted."""

    def build(fields: dict[str, Any]) -> InvalidRequest:
        data = dict(fields)
        if data.pop("source", False):
            data["source_video"] = str(clip)
        if data.get("video") is True:
            data["video"] = str(clip)
        with pytest.raises(InvalidRequest) as info:
            VideoRequest(prompt="x", **data)
        return info.value

    return build
