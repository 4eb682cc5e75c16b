"""``kinema generate`` and ``kinema info``: a clip, its recipe, a re-run from it, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import kinema
from kinema.cli import app

runner = CliRunner()


def test_cli_generate_info_and_rerun_from_recipe(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    res = runner.invoke(
        app, ["generate", "a red ball bouncing on green grass", "-o", str(out), "--steps", "3", "--json"]
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["path"] == str(out) and out.is_file()
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0
    recipe = json.loads(info.stdout)
    assert recipe["prompt"] == "a red ball bouncing on green grass" and recipe["seed"] == result["seed"]
    again = tmp_path / "again.mp4"
    res2 = runner.invoke(app, ["generate", "--from", str(out), "-o", str(again)])
    assert res2.exit_code == 0, res2.output
    assert np.array_equal(kinema.Video.open(out).frames, kinema.Video.open(again).frames)
    assert kinema.read_metadata(again)["seed"] == result["seed"]


CLI_BAD = [
    (["generate", ""], "prompt"),
    (["generate"], "prompt"),
    (["generate", "ok", "--size", "big"], "size"),
    (["generate", "ok", "--size", "64x64"], "size"),
    (["generate", "ok", "--frames", "0"], "num_frames"),
    (["generate", "ok", "--frames", "17"], "num_frames"),
    (["generate", "ok", "--fps", "0"], "fps"),
    (["generate", "ok", "--seed", "-7"], "seed"),
    (["generate", "ok", "--steps", "0"], "num_inference_steps"),
    (["generate", "ok", "--guidance", "-2"], "guidance_scale"),
    (["generate", "ok", "--backend", "nope"], "backend"),
    (["generate", "ok", "--image", "/no/such.png"], "image"),
    (["generate", "ok", "--video", "/no/such.mp4"], "video"),
    (["generate", "ok", "--format", "avi"], "format"),
    (["generate", "ok", "--aspect-ratio", "7:3"], "aspect_ratio"),
    (["generate", "ok", "--option", "novalue"], "option"),
    (["generate", "ok", "--frames", "16", "--duration", "9", "--fps", "8"], "duration"),
    (["generate", "--from", "/no/such.mp4"], "path"),
    (["info", "/no/such.mp4"], "path"),
    (["train", "gpt"], "target"),
    (["train", "builtin", "--config", "tiny", "--steps", "5", "--stop-after", "9"], "stop_after"),
]


@pytest.mark.parametrize(("args", "field"), CLI_BAD)
def test_cli_bad_input_exits_2_naming_the_field(args: list[str], field: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert f"error: {field}:" in res.stderr.replace("\n", " ")
    assert "Traceback" not in res.output


def test_cli_failed_generation_exits_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KINEMA_BUILTIN_WEIGHTS", str(tmp_path / "missing.safetensors"))
    res = runner.invoke(app, ["generate", "a red ball", "-o", str(tmp_path / "x.mp4")])
    assert res.exit_code == 1
    assert "weights not found" in res.stderr
