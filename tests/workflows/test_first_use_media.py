"""What a new user trips over in the media commands (issue 23): flags named wrongly in errors, settings that did
nothing, a sheet wider than asked, a join that shrank a clip without a word, and `info` describing the recipe rather
than the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema import Video
from kinema.cli import app
from kinema.errors import InvalidRequest
from kinema.media.enhance import validate_chain
from kinema.media.ffmpeg import media_info

from .conftest import smooth_clip

runner = CliRunner()


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A 32x32, 16-frame, 8 fps clip with a recipe."""
    clip = smooth_clip()
    clip.metadata = {"prompt": "smooth test clip", "seed": 0, "width": 32, "height": 32, "num_frames": 16, "fps": 8.0}
    return clip.save(tmp_path / "small.mp4")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upscale-model", "missing.pth"], "--upscale-model: file not found: missing.pth"),
        (
            ["--denoise", "--denoise-method", "foo"],
            "--denoise-method: 'foo' is not one of the choices (allowed: nlmeans, hqdn3d)",
        ),
        (["--denoise-method", "foo"], "--denoise-method: 'foo' is not one of the choices"),
        (["--sharpen-amount", "9"], "--sharpen-amount: must be between 0 and 5, got 9"),
        (["--denoise-strength", "11"], "--denoise-strength: must be between 0 and 10"),
        (["--loop-mode", "spin"], "--loop-mode: 'spin' is not one of the choices (allowed: crossfade, pingpong"),
    ],
)
def test_enhance_errors_name_the_flag_that_was_wrong(
    small: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    """`--upscale-model missing.pth` reported `--upscale: file not found`; `--denoise-method foo` reported
    `--denoise: Input should be...`, or "nothing to do" without --denoise."""
    res = runner.invoke(app, ["enhance", str(small), "-o", str(tmp_path / "x.mp4"), *args])
    assert res.exit_code == 2, res.output
    assert message in _one_line(res.stderr)
    assert "Input should be" not in res.stderr


def test_a_setting_alone_asks_for_its_operation(small: Path, tmp_path: Path) -> None:
    """`--sharpen-amount 2` alone said "nothing to do"."""
    out = tmp_path / "sharp.mp4"
    res = runner.invoke(app, ["enhance", str(small), "-o", str(out), "--sharpen-amount", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == [{"op": "sharpen", "amount": 2.0}]
    res = runner.invoke(app, ["enhance", str(small), "-o", str(out), "--denoise-method", "hqdn3d", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == [{"op": "denoise", "strength": 1.0, "method": "hqdn3d"}]


def test_a_chain_choice_error_lists_the_choices_not_pydantic_text() -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_chain([{"op": "denoise", "method": "foo"}])
    assert info.value.field == "postprocess[0].method" and info.value.allowed == "nlmeans, hqdn3d"
    assert "Input should be" not in info.value.message


def test_sheet_width_is_the_width_of_the_sheet(small: Path, tmp_path: Path) -> None:
    """`thumbnail --sheet --width 800` made a 3210x2408 sheet: the width went to every tile."""
    out = tmp_path / "sheet.png"
    res = runner.invoke(app, ["thumbnail", str(small), "--sheet", "--width", "800", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["width"] == 800
    assert media_info(out)["video"]["width"] == 800
    res = runner.invoke(app, ["thumbnail", str(small), "--sheet", "--width", "9", "-o", str(out)])
    assert res.exit_code == 2 and "fewer --columns" in _one_line(res.stderr)


def test_concat_warns_when_it_scales_or_retimes_a_clip(small: Path, tmp_path: Path) -> None:
    """`concat` shrank a 256x256 clip to 64x64 without a word."""
    big = Video(np.repeat(np.repeat(smooth_clip().frames, 4, axis=1), 4, axis=2), fps=16).save(tmp_path / "big.mp4")
    res = runner.invoke(app, ["concat", str(small), str(big), "-o", str(tmp_path / "j.mp4"), "--json"])
    assert res.exit_code == 0, res.output
    (warning,) = json.loads(res.stdout)["warnings"]
    assert "scaled from 128x128 to 32x32" in warning and "retimed from 16 to 8 fps" in warning
    assert "scaled from 128x128 to 32x32" in _one_line(res.stderr)
    res = runner.invoke(app, ["concat", str(small), str(small), "-o", str(tmp_path / "k.mp4"), "--json"])
    assert json.loads(res.stdout)["warnings"] == [] and "warning" not in res.stderr


def test_info_describes_the_file_as_it_is(small: Path, tmp_path: Path) -> None:
    """After post-processing (128x128, 32 frames, 16 fps on disk) `info` reported the generated 32x32 at 8 fps."""
    out = tmp_path / "big.mp4"
    res = runner.invoke(app, ["enhance", str(small), "-o", str(out), "--upscale", "4", "--interpolate", "2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["info", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["file"] == {
        "width": 128,
        "height": 128,
        "num_frames": 32,
        "fps": 16.0,
        "duration": 2.0,
        "audio": False,
    }
    assert (data["width"], data["num_frames"]) == (32, 16)  # the recipe keeps what was generated
    res = runner.invoke(app, ["info", str(out)], terminal_width=200)
    lines = {line.split()[0]: line for line in res.stdout.splitlines() if line.strip()}
    assert "128x128, 32 frames at 16 fps" in lines["file"]
    assert "32x32, 16 frames at 8 fps" in lines["generated"] and "upscale" in lines["generated"]
    # a file as generated shows no separate "generated" line
    res = runner.invoke(app, ["info", str(small)], terminal_width=200)
    assert "generated" not in res.stdout and "32x32, 16 frames at 8 fps" in res.stdout


def test_batch_lists_each_allowed_field_once_and_names_set(tmp_path: Path) -> None:
    """The allowed list of a bad field repeated `postprocess`; a bad --set key was called `defaults.<key>`."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a red ball", "colour": "red"}\n')
    res = runner.invoke(app, ["batch", str(rows), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    allowed = _one_line(res.stderr).split("(allowed: ")[1].rstrip(")").split(", ")
    assert allowed.count("postprocess") == 1 and len(allowed) == len(set(allowed))
    rows.write_text('{"prompt": "a red ball"}\n')
    res = runner.invoke(app, ["batch", str(rows), "-o", str(tmp_path / "out"), "--set", "colour=red"])
    assert res.exit_code == 2 and "--set colour: is not a known field" in _one_line(res.stderr)


def test_enhance_describes_a_png_folder_it_wrote(small: Path, tmp_path: Path) -> None:
    """`kinema enhance clip.mp4 -o frames/` answered "saved frames (None frames, NonexNone, 0 fps)"."""
    res = runner.invoke(app, ["enhance", str(small), "-o", str(tmp_path / "frames"), "--upscale", "2", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["frames"], data["width"], data["height"], data["fps"]) == (16, 64, 64, 8.0)
