"""The enhance, concat and thumbnail commands, checked with the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kinema.cli import app
from kinema.media.ffmpeg import media_info

runner = CliRunner()


def test_enhance_chain(real_clip: Path, tone: Path, tmp_path: Path) -> None:
    out = tmp_path / "big.mp4"
    args = [
        "--upscale",
        "2",
        "--interpolate",
        "2",
        "--denoise",
        "--sharpen",
        "--trim",
        "0.5:1.5",
        "--audio",
        str(tone),
    ]
    r = runner.invoke(app, ["enhance", str(real_clip), "-o", str(out), *args, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["audio"] is True
    info = media_info(out)
    assert info["video"] == {"frames": 16, "fps": 16.0, "width": 256, "height": 256, "duration": 1.0}
    assert info["audio"]["codec"] == "aac" and info["audio"]["duration"] == pytest.approx(1.0, abs=0.05)
    from kinema.video import read_metadata

    recipe = read_metadata(out)
    assert recipe["prompt"] == "a red ball bouncing on green grass"
    assert [s["op"] for s in recipe["postprocess"]] == [
        "trim",
        "denoise",
        "interpolate",
        "upscale",
        "sharpen",
        "audio",
    ]


def test_enhance_fps_loop_gif(real_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "loop.gif"
    r = runner.invoke(
        app, ["enhance", str(real_clip), "-o", str(out), "--fps", "12", "--loop", "--loop-mode", "pingpong"]
    )
    assert r.exit_code == 0, r.output
    assert media_info(out)["video"]["frames"] == 2 * 24 - 2


def test_enhance_errors(real_clip: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "x.mp4")
    for args, needle in (
        (["--audio", str(tmp_path / "none.wav")], "--audio"),
        (["--upscale", "20"], "--upscale"),
        (["--interpolate", "2", "--fps", "24"], "fps"),
        ([], "nothing to do"),
        (["--trim", "1"], "trim"),
        (["--loop", "--loop-mode", "spin"], "--loop"),
    ):
        r = runner.invoke(app, ["enhance", str(real_clip), "-o", out, *args])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output
    model = tmp_path / "x4.pth"
    model.write_bytes(b"0")
    r = runner.invoke(app, ["enhance", str(real_clip), "-o", out, "--upscale", "4", "--upscale-model", str(model)])
    try:
        import spandrel  # noqa: F401
    except ImportError:
        assert r.exit_code == 1 and "spandrel" in r.output


def test_concat_with_transition_and_audio(real_clip: Path, tone: Path, tmp_path: Path) -> None:
    out = tmp_path / "joined.mp4"
    r = runner.invoke(
        app,
        [
            "concat",
            str(real_clip),
            str(real_clip),
            str(real_clip),
            "--transition",
            "fade:0.5",
            "-o",
            str(out),
            "--audio",
            str(tone),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    info = media_info(out)
    assert info["video"]["frames"] == 48 - 2 * 4 and info["video"]["duration"] == pytest.approx(5.0)
    assert info["audio"]["duration"] == pytest.approx(5.0, abs=0.05)  # 3 s tone padded with silence
    r = runner.invoke(
        app,
        ["concat", str(real_clip), str(real_clip), str(real_clip), "-t", "dissolve:1", "-t", "cut", "-o", str(out)],
    )
    assert r.exit_code == 0, r.output
    assert media_info(out)["video"]["frames"] == 48 - 8
    r = runner.invoke(app, ["concat", str(real_clip), str(real_clip), "-t", "dissolve:9", "-o", str(out)])
    assert r.exit_code == 2 and "transition.duration" in r.output


def test_thumbnail_and_sheet(real_clip: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["thumbnail", str(real_clip), "-o", str(tmp_path / "t.jpg"), "--time", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["frame"] == 8
    assert media_info(tmp_path / "t.jpg")["video"]["width"] == 128
    r = runner.invoke(
        app, ["thumbnail", str(real_clip), "--sheet", "--columns", "3", "--count", "6", "-o", str(tmp_path / "s.png")]
    )
    assert r.exit_code == 0, r.output
    info = media_info(tmp_path / "s.png")["video"]
    assert (info["width"], info["height"]) == (3 * 128 + 4 * 2, 2 * 128 + 3 * 2)
    r = runner.invoke(app, ["thumbnail", str(real_clip), "--time", "9"])
    assert r.exit_code == 2 and "time" in r.output
