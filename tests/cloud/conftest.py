"""Fixtures of the cloud-backend tests: a tiny real MP4 for the fakes to serve, clean provider env vars, and one
running fake per provider case (see cases.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .cases import CASES, Case

#: every variable a cloud backend reads; cleared so a developer's real keys are never used by a test
PROVIDER_VARS = (
    "RUNWAYML_API_SECRET",
    "RUNWAYML_BASE_URL",
    "LUMAAI_API_KEY",
    "LUMAAI_BASE_URL",
    "KLING_ACCESS_KEY",
    "KLING_SECRET_KEY",
    "KINEMA_KLING_BASE_URL",
    "FAL_KEY",
    "FAL_KEY_ID",
    "FAL_KEY_SECRET",
    "KINEMA_FAL_BASE_URL",
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_VERTEX_BASE_URL",
    "KINEMA_VEO_BASE_URL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "PICTORY_API_KEY",
    "KINEMA_PICTORY_BASE_URL",
    "MODELSLAB_API_KEY",
    "KINEMA_MODELSLAB_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "KINEMA_OPENAI_VIDEOS_BASE_URL",
    "KINEMA_POLL_INTERVAL",
    "KINEMA_REMOTE_TIMEOUT",
    "K_SERVICE",
    "CLOUD_RUN_JOB",
    "FUNCTION_TARGET",
    "GAE_SERVICE",
    "GCE_METADATA_HOST",
    "GCE_METADATA_ROOT",
    "GCE_METADATA_IP",
)


@pytest.fixture(scope="session")
def video_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import kinema

    frames = np.zeros((8, 32, 32, 3), np.uint8)
    frames[:, :, :, 1] = np.arange(8, dtype=np.uint8)[:, None, None] * 30  # frames differ, so decoding is checked
    path = tmp_path_factory.mktemp("fake-video") / "result.mp4"
    kinema.Video(frames, fps=8).save(path)
    return path.read_bytes()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in PROVIDER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud ADC file of the developer's is found
    monkeypatch.setenv("NO_GCE_CHECK", "1")  # nor a GCE host's metadata-server credentials


@pytest.fixture(params=[c.backend for c in CASES])
def provider(
    request: pytest.FixtureRequest, video_bytes: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Case, object]]:
    case = next(c for c in CASES if c.backend == request.param)
    fake = case.fake(video_bytes)
    try:
        for var, value in case.env(fake, tmp_path).items():
            monkeypatch.setenv(var, value)
        yield case, fake
    finally:
        fake.close()
