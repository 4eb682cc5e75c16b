"""The backend registry: third-party entry points, registration, and missing extras."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

import kinema
from kinema import backends as registry
from kinema.backends.base import (
    Availability,
    BackendOutput,
    BaseBackend,
    Capabilities,
    GenerationContext,
    GenerationParams,
)


class SolidBackend(BaseBackend):
    """A third-party backend: one colour per frame, in the prompt's length."""

    name = "solid"
    description = "solid colours"

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(default_size=(16, 16), default_frames=4, default_fps=4)

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        ctx.progress("denoising", 1, 1)
        frames = np.full((params.num_frames, params.height, params.width, 3), len(params.prompt) % 256, np.uint8)
        return BackendOutput(video=kinema.Video(frames, fps=params.fps), cost={"usd": 0.0})


class _EntryPoint:
    name = "solid-ep"

    def load(self) -> Any:
        return SolidBackend


def test_entry_point_backends_are_found_and_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda group: [_EntryPoint()] if group == "kinema.backends" else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_instances", {})
    assert "solid-ep" in registry.backend_names()
    result = kinema.generate("abc", backend="solid-ep")
    assert result.video.frames.shape == (4, 16, 16, 3) and int(result.video.frames[0, 0, 0, 0]) == 3
    assert result.recipe["backend"] == "solid" and result.cost == {"usd": 0.0}
    assert any(i.name == "solid-ep" and i.usable for i in kinema.list_backends())


def test_register_backend_by_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_instances", {})
    kinema.register_backend("solid2", SolidBackend)
    assert isinstance(kinema.get_backend("solid2"), SolidBackend)


def test_missing_extra_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from kinema.backends.base import require_module

    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail, imported already or not
    with pytest.raises(kinema.MissingExtra) as info:
        require_module("fastapi", "server")
    assert "pip install 'kinema[server]'" in info.value.message
    assert isinstance(info.value, kinema.BackendUnavailable) and isinstance(info.value, ImportError)


def test_unusable_backend_is_refused_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNWAYML_API_SECRET", raising=False)
    with pytest.raises(kinema.BackendUnavailable, match="RUNWAYML_API_SECRET"):
        kinema.generate("a red ball", backend="runway", duration=5)
    info = {i.name: i for i in kinema.list_backends()}["runway"]
    assert not info.usable and "RUNWAYML_API_SECRET" in (info.reason or "")


class ProtocolOnly:
    """A backend written against the Backend protocol alone, without BaseBackend."""

    name = "protocol-only"
    description = "grey frames"

    def availability(self) -> Availability:
        return Availability.ok()

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(default_size=(16, 16), default_frames=2, max_frames=8)

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        frames = np.full((params.num_frames, params.height, params.width, 3), 128, np.uint8)
        return BackendOutput(video=kinema.Video(frames, fps=params.fps))


def test_protocol_only_backend_gets_the_shared_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_factories", {})
    monkeypatch.setattr(registry, "_instances", {})
    kinema.register_backend("protocol-only", ProtocolOnly)
    assert isinstance(kinema.get_backend("protocol-only"), kinema.Backend)
    assert kinema.generate("ok", backend="protocol-only").video.frames.shape == (2, 16, 16, 3)
    with pytest.raises(kinema.InvalidRequest, match="^num_frames: 9 is not allowed"):
        kinema.generate("ok", backend="protocol-only", num_frames=9)


def test_a_missing_optional_dependency_is_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kinema backends` said "failed to load: No module named 'huggingface_hub'" where every other backend names
    the extra to install."""
    monkeypatch.setattr(registry, "_instances", {})
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` now fails
    listed = {i.name: i for i in kinema.list_backends()}["diffusers"]
    assert not listed.usable and listed.reason == "extra 'local' not installed (pip install 'kinema[local]')"
    # the same when the backend's own module cannot import it
    monkeypatch.setitem(registry._KNOWN, "diffusers", "kinema_test_absent_dependency:Backend")
    monkeypatch.setattr(registry, "_instances", {})
    with pytest.raises(kinema.MissingExtra) as info:
        kinema.get_backend("diffusers")
    assert info.value.extra == "local" and "pip install 'kinema[local]'" in info.value.message
