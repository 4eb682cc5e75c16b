"""The result cache (same fixed-seed request -> earlier output) and the prompt builder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema import InvalidRequest, Video, VideoRequest
from kinema.cache import ResultCache, request_key
from kinema.engine import run as run_cached
from kinema.prompts import CAMERA_MOVES, LIGHTING, MOODS, STYLES, TEMPLATES, VideoPrompt, from_template


def test_cache_hit_returns_the_earlier_output(tmp_path: Path, count_generations: list[Any]) -> None:
    cache = ResultCache(tmp_path / "cache")
    req = VideoRequest(prompt="green grass", seed=5, num_inference_steps=2)
    first = run_cached(req, cache=cache, output=tmp_path / "a.mp4")
    assert len(count_generations) == 1 and len(cache.entries()) == 1
    again = run_cached(
        VideoRequest(prompt="green grass", seed=5, num_inference_steps=2), cache=cache, output=tmp_path / "b.mp4"
    )
    assert len(count_generations) == 1  # nothing generated (nor paid) again
    assert again.recipe["cache"]["hit"] is True and again.cost is None and again.seed == 5
    assert again.path == tmp_path / "b.mp4" and first.path is not None
    assert again.path.read_bytes() == first.path.read_bytes()
    assert np.array_equal(again.video.frames, Video.open(first.path).frames)
    assert json.loads((tmp_path / "b.mp4.json").read_text())["cache"]["hit"] is True

    # anything in the recipe that differs misses: seed, steps, output format
    run_cached(VideoRequest(prompt="green grass", seed=6, num_inference_steps=2), cache=cache)
    run_cached(VideoRequest(prompt="green grass", seed=5, num_inference_steps=3), cache=cache)
    run_cached(
        VideoRequest(prompt="green grass", seed=5, num_inference_steps=2), cache=cache, output=tmp_path / "c.gif"
    )
    assert len(count_generations) == 4 and len(cache.entries()) == 4


def test_random_seed_never_hits(tmp_path: Path, count_generations: list[Any]) -> None:
    cache = ResultCache(tmp_path / "cache")
    req = VideoRequest(prompt="green grass", num_inference_steps=2)
    assert request_key(req) is None
    run_cached(req, cache=cache)
    run_cached(req, cache=cache)
    assert len(count_generations) == 2 and cache.entries() == []


def test_key_follows_input_file_content(tmp_path: Path) -> None:
    from kinema.media.thumbnail import save_image

    img = tmp_path / "start.png"
    save_image(np.zeros((64, 64, 3), np.uint8), img)
    k1 = request_key(VideoRequest(prompt="x", seed=1, image=str(img)))
    save_image(np.full((64, 64, 3), 9, np.uint8), img)
    k2 = request_key(VideoRequest(prompt="x", seed=1, image=str(img)))
    assert k1 and k2 and k1 != k2
    assert request_key(VideoRequest(prompt="x", seed=1)) == request_key(
        VideoRequest(prompt="x", seed=1, backend="builtin")
    )


def test_cache_prune_and_damaged_entry(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache")
    req = VideoRequest(prompt="green grass", seed=7, num_inference_steps=2)
    run_cached(req, cache=cache)
    entry = cache.entries()[0]
    (entry / "entry.json").write_text("{broken", encoding="utf-8")
    assert cache.get(req) is None  # a damaged entry is a miss, not a crash
    assert cache.prune(0) == 1 and cache.entries() == []


def test_prompt_builder_renders_parts_in_order() -> None:
    p = VideoPrompt(
        subject="a lighthouse",
        action="stands against crashing waves",
        setting="on a rocky coast",
        camera="orbit",
        lighting="Blue hour",
        style="vintage",
        mood="melancholic",
    )
    text = p.render()
    assert text.startswith("A lighthouse stands against crashing waves on a rocky coast.")
    order = [CAMERA_MOVES["orbit"], STYLES["vintage"], LIGHTING["blue-hour"], MOODS["melancholic"]]
    positions = [text.lower().index(phrase.lower()) for phrase in order]
    assert positions == sorted(positions)
    assert text.endswith("mood.") and ".." not in text
    free = VideoPrompt(subject="a cat", camera="slow push through the doorway").render()
    assert "Slow push through the doorway." in free  # free text passes through
    req = from_template("cinematic", subject="a knight").to_request(seed=3)
    assert req.prompt.startswith("A knight.") and req.negative_prompt == TEMPLATES["cinematic"]["negative"]


def test_prompt_builder_errors() -> None:
    with pytest.raises(InvalidRequest, match="^subject"):
        VideoPrompt(subject="   ")
    with pytest.raises(InvalidRequest, match="^colour"):
        VideoPrompt(subject="a", colour="red")
    with pytest.raises(InvalidRequest, match="^template"):
        from_template("western", subject="a")
    with pytest.raises(InvalidRequest, match="^camera"):
        VideoPrompt(subject="a", camera=3)


def test_prompt_cli() -> None:
    from kinema.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["prompt", "--subject", "a red fox", "--camera", "dolly-in", "--mood", "serene", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["prompt"] == "A red fox. Slow dolly in towards the subject. Serene, calm mood."
    assert data["parts"]["camera"] == "dolly-in"
    r = runner.invoke(app, ["prompt", "--template", "nature", "--subject", "a herd of elk"])
    assert r.exit_code == 0 and r.stdout.startswith("A herd of elk.")
    r = runner.invoke(app, ["prompt", "--list", "--json"])
    assert set(json.loads(r.stdout)["library"]) == {"camera", "style", "lighting", "mood"}
    r = runner.invoke(app, ["prompt", "--template", "nope", "--subject", "x"])
    assert r.exit_code == 2 and "template" in r.output
