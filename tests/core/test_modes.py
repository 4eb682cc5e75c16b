"""The modes beside text-to-video, image-to-video and extension (issue 27): edit, keyframes and references.

Each is asked for by its own field, checked against the backend's Capabilities at planning (naming the backends that
do support it), recorded by digest in the recipe and reproduced by ``--from`` when the same files are given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import kinema
from kinema import backends as registry
from kinema.backends.base import Availability, BackendOutput, Capabilities, GenerationContext, GenerationParams
from kinema.cli import app
from kinema.errors import InvalidRequest
from kinema.request import VideoRequest

runner = CliRunner()
PNG = b"\x89PNG fake"


class RefsBackend:
    """A backend that takes up to two reference images (no engine in the tree does yet)."""

    name = "refs"
    description = "grey frames from references"

    def availability(self) -> Availability:
        return Availability.ok()

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            modes=("t2v", "references"), max_references=2, default_size=(16, 16), default_frames=4, default_fps=4
        )

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        assert len(params.references) == len(params.reference_sources)  # the engine loaded every one
        frames = np.full((params.num_frames, params.height, params.width, 3), 128, np.uint8)
        return BackendOutput(video=kinema.Video(frames, fps=params.fps))


@pytest.fixture
def refs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_instances", dict(registry._instances))
    kinema.register_backend("refs", RefsBackend)
    yield "refs"


@pytest.fixture
def png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "last.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path)
    return path


# -- the request ----------------------------------------------------------------------------------------------------
def test_each_input_asks_for_its_mode(clip: Path) -> None:
    assert VideoRequest(prompt="x", source_video=str(clip), strength=0.3).mode == "edit"
    assert VideoRequest(prompt="x", last_image=PNG).mode == "keyframes"
    assert VideoRequest(prompt="x", image=PNG, last_image=PNG).mode == "keyframes"
    assert VideoRequest(prompt="x", references=[PNG, PNG]).mode == "references"
    assert VideoRequest(prompt="x", video=str(clip)).mode == "extend"  # unchanged: video still means "continue"


BAD = [
    ({"strength": 0.3}, "strength", "give source_video too"),
    ({"source": True, "strength": 1.5}, "strength", "from 0 (keep the source) to 1"),
    ({"source": True, "strength": True}, "strength", "a number from 0 to 1"),
    ({"source": True, "video": True}, "video", "cannot be combined with source_video"),
    ({"source": True, "image": PNG}, "image", "cannot be combined with source_video"),
    ({"video": True, "last_image": PNG}, "last_image", "cannot be combined with video"),
    ({"references": [PNG], "image": PNG}, "references", "cannot be combined with image"),
    ({"references": [PNG, None]}, "references[1]", "missing"),
    ({"references": [PNG, "/no/such.png"]}, "references[1]", "file not found"),
    ({"references": PNG}, "references", "a list of images"),
    ({"references": [PNG] * 17}, "references", "at most 16"),
    ({"last_image": "ftp://x/y.png"}, "last_image", "not supported"),
]


@pytest.mark.parametrize(("fields", "field", "phrase"), BAD)
def test_bad_mode_inputs_are_refused_naming_the_field(refused: Any, fields: dict, field: str, phrase: str) -> None:
    err = refused(fields)
    assert err.field == field and phrase in err.message


def test_result_cache_keys_change_when_the_source_file_does(clip: Path) -> None:
    """An edit's source is keyed by its content (a path alone would hand back an edit of the old file)."""
    from kinema.cache import request_key

    before = request_key(VideoRequest(prompt="x", source_video=str(clip), seed=1))
    clip.write_bytes(clip.read_bytes() + b"\0")
    assert request_key(VideoRequest(prompt="x", source_video=str(clip), seed=1)) != before


# -- planning -------------------------------------------------------------------------------------------------------
def test_builtin_refuses_references_and_names_the_backends_that_take_them(refs: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", references=[PNG]))
    assert info.value.field == "references" and "does not support reference images" in info.value.message
    allowed = info.value.allowed or ""
    assert "backends that do:" in allowed and "refs" in allowed and "kling (kling-v1-6)" in allowed


def test_without_any_backend_for_a_mode_the_refusal_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import kinema.planner

    monkeypatch.setattr(kinema.planner, "backend_names", lambda: ["builtin"])  # no provider that takes references
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", references=[PNG]))
    assert "no installed backend does yet" in (info.value.allowed or "")


def test_a_backend_without_edit_names_builtin(refs: str, clip: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", source_video=str(clip), backend="refs"))
    assert info.value.field == "source_video" and "backends that do: builtin" in (info.value.allowed or "")


def test_too_many_references_are_refused_with_the_limit(refs: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", references=[PNG] * 3, backend="refs"))
    assert info.value.field == "references" and "at most 2" in info.value.message
    assert kinema.plan(VideoRequest(prompt="x", references=[PNG] * 2, backend="refs")).params.mode == "references"


def test_edit_and_keyframes_are_one_builtin_segment(clip: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", source_video=str(clip), num_frames=28))
    assert info.value.field == "num_frames" and "at most 16 frames" in (info.value.allowed or "")
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", last_image=PNG, duration=3.5))
    assert info.value.field == "duration"


def test_plan_shows_the_mode_and_the_default_strength(clip: Path) -> None:
    p = kinema.plan(VideoRequest(prompt="x", source_video=str(clip)))
    assert p.params.strength == 0.6 and p.to_dict()["strength"] == 0.6
    assert f"mode         edit (video editing of {clip}, strength 0.6)" in str(p)
    k = kinema.plan(VideoRequest(prompt="x", image=PNG, last_image=PNG))
    assert "keyframes (first/last-frame keyframes: first and last)" in str(k)
    assert kinema.plan(VideoRequest(prompt="x")).params.strength is None  # only an edit has one


# -- recipes --------------------------------------------------------------------------------------------------------
def test_an_edit_is_recorded_by_digest_and_reproduced_from_its_recipe(clip: Path, tmp_path: Path) -> None:
    first = kinema.generate(
        "mountains at night", source_video=clip, strength=0.3, seed=5, num_inference_steps=4, output=tmp_path / "a.mp4"
    )
    data = clip.read_bytes()
    assert first.recipe["mode"] == "edit" and first.recipe["strength"] == 0.3
    assert first.recipe["source_video"] == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "name": "source.mp4",
    }
    assert str(tmp_path) not in json.dumps(first.recipe)
    recipe = kinema.read_metadata(first.path)
    with pytest.raises(InvalidRequest) as info:
        kinema.engine.request_from_recipe(recipe)
    assert info.value.field == "source_video" and "--edit" in info.value.message
    again = kinema.run(kinema.engine.request_from_recipe(recipe, source_video=str(clip)))
    assert np.array_equal(again.video.frames, first.video.frames)


def test_keyframes_and_references_are_recorded_by_digest(refs: str, png: Path) -> None:
    k = kinema.generate("a red ball", last_image=str(png), seed=1, num_inference_steps=2)
    assert k.recipe["mode"] == "keyframes" and k.recipe["last_image"]["sha256"] is not None
    assert not any("last image" in w for w in k.warnings)  # the shipped weights were trained with last frames
    with pytest.raises(InvalidRequest) as info:
        kinema.engine.request_from_recipe(k.recipe)
    assert info.value.field == "last_image" and "--last-image" in info.value.message
    data = png.read_bytes()
    r = kinema.generate("a red ball", references=[data, str(png)], backend="refs", seed=1)
    assert [d["sha256"] for d in r.recipe["references"]] == [hashlib.sha256(data).hexdigest()] * 2
    assert r.recipe["references"][1]["name"] == "last.png"
    with pytest.raises(InvalidRequest) as info:
        kinema.engine.request_from_recipe(r.recipe, references=[data])
    assert info.value.field == "references" and "2 reference images" in info.value.message


# -- the command line -----------------------------------------------------------------------------------------------
def test_cli_edit_plan_and_refusals(clip: Path, png: Path) -> None:
    res = runner.invoke(
        app, ["generate", "mountains at night", "--edit", str(clip), "--strength", "0.3", "--plan", "--json"]
    )
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert (shown["mode"], shown["strength"], shown["source_video"]) == ("edit", 0.3, str(clip))
    res = runner.invoke(app, ["generate", "a ball", "--last-image", str(png), "--plan"])
    assert res.exit_code == 0 and "keyframes" in res.stdout
    res = runner.invoke(app, ["generate", "a ball", "--reference", str(png), "--reference", str(png), "--plan"])
    assert res.exit_code == 2 and "references" in res.output and "reference images" in res.output


class NoStrengthEditor(RefsBackend):
    """An editing engine without a strength setting (as Runway's aleph2)."""

    name = "nostrength"

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            modes=("t2v", "edit"), default_strength=None, default_size=(16, 16), default_frames=4, default_fps=4
        )


def test_an_engine_without_strength_refuses_one_and_records_none(monkeypatch: pytest.MonkeyPatch, clip: Path) -> None:
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_instances", dict(registry._instances))
    kinema.register_backend("nostrength", NoStrengthEditor)
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", source_video=str(clip), strength=0.3, backend="nostrength"))
    assert info.value.field == "strength" and "no strength setting" in info.value.message
    planned = kinema.plan(VideoRequest(prompt="x", source_video=str(clip), backend="nostrength"))
    assert planned.params.mode == "edit" and planned.params.strength is None
    assert ", strength" not in str(planned) and planned.to_dict()["strength"] is None
