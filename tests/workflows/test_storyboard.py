"""Storyboards: a film of the expected length, transitions, continuity, soundtrack; resumable; bad files refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kinema import InvalidRequest, Video
from kinema.media.ffmpeg import media_info
from kinema.media.io import load_image
from kinema.storyboard import check_storyboard, render_storyboard

from .conftest import block_diff

BOARD: dict[str, Any] = {
    "title": "Three shots",
    "defaults": {"backend": "builtin", "num_inference_steps": 2, "fps": 8},
    "title_card": {"text": "Three shots", "duration": 1, "transition": "fade:0.5"},
    "audio": {"path": "music.wav", "fade_out": 0.5},
    "scenes": [
        {"prompt": "sunrise over mountains", "duration": 2, "seed": 11, "transition": "dissolve:0.5"},
        {"prompt": "a red ball bouncing on green grass", "duration": 2.5, "seed": 22},
        {
            "prompt": "green grass",
            "duration": 2,
            "seed": 33,
            "continuity": True,
            "transition": {"type": "fade", "duration": 0.5},
        },
    ],
}


def _write(folder: Path, board: dict[str, Any], name: str = "film.yaml") -> Path:
    path = folder / name
    if name.endswith(".json"):
        path.write_text(json.dumps(board), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(board, sort_keys=False), encoding="utf-8")
    return path


def test_three_scene_film(tmp_path: Path, long_tone: Path, count_generations: list[Any]) -> None:
    shutil.copy(long_tone, tmp_path / "music.wav")
    board = _write(tmp_path, BOARD)
    film = tmp_path / "film.mp4"
    events: list[tuple[int, Any]] = []
    manifest = render_storyboard(board, film, on_progress=lambda i, e: events.append((i, e)))
    assert len(count_generations) == 3
    # every scene's own denoising steps reach the caller, tagged with the scene (scene 2 is two 2-step segments)
    steps = {i: [(e.step, e.total) for j, e in events if j == i and e.stage == "denoising"] for i in range(3)}
    assert steps == {0: [(1, 2), (2, 2)], 1: [(1, 4), (2, 4), (3, 4), (4, 4)], 2: [(1, 2), (2, 2)]}, steps
    assert [i for i, _ in events] == sorted(i for i, _ in events)

    # 1 (title) + 2 + 2.5 + 2 - 0.5 (title fade) - 0.5 (dissolve) = 6.5 s; the last scene's fade does not overlap
    info = media_info(film)
    assert info["video"]["frames"] == 52 and info["video"]["fps"] == 8
    assert info["video"]["duration"] == pytest.approx(6.5)
    assert info["audio"] is not None and info["audio"]["duration"] == pytest.approx(6.5, abs=0.05)
    assert manifest["duration"] == pytest.approx(6.5)

    scenes = manifest["scenes"]
    assert [s["start"] for s in scenes] == [0.5, 2.0, 4.5]
    assert [s["frames"] for s in scenes] == [16, 20, 16]
    assert [s["transition"] for s in scenes] == ["dissolve:0.5", "cut", "fade:0.5"]
    for s in scenes:  # every scene's clip and full recipe are kept
        assert media_info(s["clip"])["video"]["frames"] == s["frames"]
        assert s["recipe"]["seed"] == s["seed"] and s["recipe"]["backend"] == "builtin"
    # scene 2 was made 28 frames long (16 + 12k) and trimmed to its 2.5 s
    assert scenes[1]["recipe"]["num_frames"] == 28
    assert scenes[2]["recipe"]["mode"] == "i2v" and scenes[0]["recipe"]["mode"] == "t2v"

    frames = Video.open(film).frames
    last2 = load_image(scenes[1]["last_frame"])
    clip3 = Video.open(scenes[2]["clip"]).frames
    # continuity: scene 3 starts from scene 2's last frame, so the cut holds that frame across the boundary
    assert block_diff(clip3[0], last2) < 4
    b = round(scenes[2]["start"] * 8)
    assert block_diff(frames[b], last2) < 4 and block_diff(frames[b - 1], last2) < 4
    # scene 2 had no continuity: its first frame is not scene 1's last (so the check above can fail)
    clip2 = Video.open(scenes[1]["clip"]).frames
    assert block_diff(clip2[0], load_image(scenes[0]["last_frame"])) > 6
    # the dissolve: the frames of the overlap mix both shots, the fade ends on black, the title fades in from black
    assert frames[-1].max() < 40
    assert frames[:4].mean() > frames[-1].mean()

    # a re-run generates nothing and makes the same film
    count_generations.clear()
    events.clear()
    again = render_storyboard(board, film, on_progress=lambda i, e: events.append((i, e)))
    assert count_generations == [] and events == []
    assert [s["status"] for s in again["scenes"]] == ["reused"] * 3
    assert media_info(film)["video"]["frames"] == 52


def test_cli_storyboard_and_check(tmp_path: Path, count_generations: list[Any]) -> None:
    from kinema.cli import app

    board = {
        "title": "Short",
        "defaults": {"num_inference_steps": 2, "seed": 1},
        "scenes": [
            {"prompt": "green grass", "duration": 2, "transition": "wipe:0.5"},
            {"prompt": "sunrise over mountains", "duration": 2},
        ],
    }
    path = _write(tmp_path, board, "short.json")
    result = CliRunner().invoke(app, ["storyboard", str(path), "--check", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["duration"] == pytest.approx(3.5) and count_generations == []
    result = CliRunner().invoke(app, ["storyboard", str(path), "-o", str(tmp_path / "short.mp4"), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["frames"] == 28
    assert json.loads((tmp_path / "short.manifest.json").read_text())["title"] == "Short"
    assert media_info(tmp_path / "short.mp4")["audio"] is None


BAD = [
    ({"scenes": [{"prompt": "x"}]}, "title"),
    ({"title": "t"}, "scenes"),
    ({"title": "t", "scenes": []}, "scenes"),
    ({"title": "t", "scenes": [{"prompt": "x", "lenght": 2}]}, "scenes[0].lenght"),
    ({"title": "t", "scenes": [{"prompt": "x"}, {"duration": 2}]}, "scenes[1].prompt"),
    ({"title": "t", "scenes": [{"prompt": "x", "duration": "long"}]}, "scenes[0].duration"),
    ({"title": "t", "scenes": [{"prompt": "x", "seed": "7"}]}, "scenes[0].seed"),
    ({"title": "t", "scenes": [{"prompt": "x", "continuity": True}]}, "scenes[0].continuity"),
    ({"title": "t", "scenes": [{"prompt": "x", "transition": "spin:1"}]}, "scenes[0].transition"),
    (
        {"title": "t", "scenes": [{"prompt": "x", "duration": 2, "transition": "fade:3"}, {"prompt": "y"}]},
        "scenes[0].transition.duration",
    ),
    ({"title": "t", "scenes": [{"prompt": "x", "duration": 100}]}, "scenes[0].duration"),
    ({"title": "t", "audio": "missing.wav", "scenes": [{"prompt": "x"}]}, "audio.path"),
    ({"title": "t", "audio": {"path": "missing.wav", "volume": "loud"}, "scenes": [{"prompt": "x"}]}, "audio.volume"),
    ({"title": "t", "defaults": {"steps": 2}, "scenes": [{"prompt": "x"}]}, "defaults.steps"),
    ({"title": "t", "defaults": {"fps": 0}, "scenes": [{"prompt": "x"}]}, "defaults.fps"),
    ({"title": "t", "title_card": {"text": "t", "color": "blurple"}, "scenes": [{"prompt": "x"}]}, "title_card.color"),
    (
        {"title": "t", "scenes": [{"prompt": "x", "postprocess": [{"op": "upscale", "factor": 0}]}]},
        "scenes[0].postprocess[0].factor",
    ),
    ({"title": "t", "colour": "red", "scenes": [{"prompt": "x"}]}, "colour"),
]


@pytest.mark.parametrize(("board", "field"), BAD)
def test_bad_storyboards_refused_before_generation(
    tmp_path: Path, count_generations: list[Any], board: dict[str, Any], field: str
) -> None:
    path = _write(tmp_path, board)
    with pytest.raises(InvalidRequest) as exc:
        render_storyboard(path, tmp_path / "film.mp4")
    assert exc.value.field == field, exc.value
    assert str(exc.value).startswith(field)
    assert count_generations == [] and not (tmp_path / "film.mp4").exists()


def test_bad_yaml_and_file_types(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\nscenes:\n  - prompt: [unclosed\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="line"):
        check_storyboard(bad)
    other = tmp_path / "board.txt"
    other.write_text("title: t", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="unknown storyboard file type"):
        check_storyboard(other)
    sound = _write(tmp_path, {"title": "t", "audio": "x.wav", "scenes": [{"prompt": "x"}]})
    (tmp_path / "x.wav").write_bytes(b"not audio")
    with pytest.raises(InvalidRequest, match="audio"):
        render_storyboard(sound, tmp_path / "film.gif")


def test_examples_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    boards = sorted(root.glob("*.yaml")) + sorted(root.glob("storyboard*.json"))
    assert boards
    for board in boards:
        plan = check_storyboard(board)
        assert plan.duration > 0
    from kinema.batch import load_batch

    for batch in sorted(root.glob("*.jsonl")) + sorted(root.glob("*.csv")):
        assert load_batch(batch)
