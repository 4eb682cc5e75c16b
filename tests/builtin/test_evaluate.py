"""The built-in model's evaluation runs end to end on a few prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.builtin import load_model
from kinema.builtin.evaluate import (
    STATIC_LEVELS,
    evaluate,
    format_report,
    grid_score,
    paired_difference,
    psnr,
    static_psnr,
)
from kinema.cli import app
from kinema.errors import InvalidRequest


def test_psnr() -> None:
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[0, 0, 0] = 255
    assert psnr(a, b) == pytest.approx(10 * np.log10(255.0**2 / (255.0**2 / 192)))


def test_evaluate_on_a_few_prompts() -> None:
    report = evaluate(n=4, steps=2, batch_size=4, n_i2v=2)
    assert 0.0 <= report["adherence"] <= 1.0
    assert report["n"] == 4 and report["checks"] >= 12  # time, weather, camera at least, per clip
    assert set(report["per_attribute"]) >= {"time", "weather", "camera"}
    # every motion check is in the breakdown by the motion asked, with what was drawn instead
    kinds = report["motion_by_kind"]
    assert kinds  # the four held-out scenes of seed 1234 all have a subject
    motion_checks = round(report["per_attribute"].get("motion", 0) * sum(k["asked"] for k in kinds.values()))
    assert sum(k["right"] for k in kinds.values()) == motion_checks
    assert all(sum(k["drawn"].values()) == k["asked"] and k["drawn"].get(m, 0) == k["right"] for m, k in kinds.items())
    # the detectors agree with the truth on the real clips of the same scenes
    assert report["detector_accuracy_on_real"]["overall"] >= 0.75
    assert report["i2v_samples"] == 2 and report["i2v_psnr_db"] > 0
    assert report["temporal"]["real"] > 0
    cfg = load_model()[0].cfg  # the grid is measured at the shipped model's token size in pixels (v2: 16)
    assert report["grid"]["cell"] == cfg.patch_h * cfg.latent_factor == cfg.token_pixels[0]
    assert report["grid"]["generated"] > 0
    for key in ("i2v_whole_clip", "extend_whole_clip"):
        whole = report[key]
        assert set(whole) == {"static_psnr_db", "floor_t2v_db", "ceiling_frozen_db", "clips"} and whole["clips"] <= 2
    along = report["i2v_along_path"]  # clear, subject-free scenes: the ceiling is frame 0 moved along the real path
    assert along["clips"] == 2 and 0 <= along["camera_right"] <= 2
    assert along["ceiling_moved_db"] > along["floor_t2v_db"]  # the moved frame 0 is nearer the real clip than noise is
    assert "along the camera path" in format_report(report)
    distinct = report["i2v_distinct"]
    assert distinct["first_frame_diff"] > 0 and distinct["real_late_diff"] > 0  # two different scenes' images
    # the per-clip checks a paired comparison reads add up to the shares
    clips = report["clip_checks"]
    assert len(clips) == 4 and sum(len(c) for c in clips) == report["checks"]
    for attr, share in report["per_attribute"].items():
        asked = [c[attr] for c in clips if attr in c]
        assert share == pytest.approx(sum(asked) / len(asked), abs=1e-4)
    assert json.loads(json.dumps(report)) == report


def _report(checks: list[dict[str, bool]], digest: str = "abc") -> dict[str, object]:
    return {"n": len(checks), "seed": 1, "prompts_sha256": digest, "clip_checks": checks}


def test_paired_difference_counts_clip_by_clip() -> None:
    base = _report([{"camera": True, "motion": False}, {"camera": True, "motion": False}, {"camera": False}] * 2)
    new = _report([{"camera": True, "motion": True}, {"camera": False, "motion": True}, {"camera": False}] * 2)
    paired = paired_difference(base, new)
    assert paired["clips"] == 6
    motion, camera, overall = paired["per_attribute"]["motion"], paired["per_attribute"]["camera"], paired["adherence"]
    assert (motion["base"], motion["new"], motion["gained"], motion["lost"]) == (0.0, 1.0, 4, 0)
    assert motion["difference"] == 1.0 and motion["se"] == 0.0  # every pair moved the same way: no doubt left
    assert (camera["base"], camera["new"], camera["difference"], camera["gained"], camera["lost"]) == (
        round(4 / 6, 4),
        round(2 / 6, 4),
        round(-2 / 6, 4),
        0,
        2,
    )
    # overall: each clip's change in checks right (+1, 0, 0, +1, 0, 0) over the 10 checks; the error is per clip
    assert overall["checks"] == 10 and overall["difference"] == pytest.approx(0.2)
    changes = np.array([1, 0, 0, 1, 0, 0], dtype=float)
    assert overall["se"] == pytest.approx(changes.std(ddof=1) * np.sqrt(6) / 10, abs=1e-4)
    assert paired_difference(base, base)["adherence"]["difference"] == 0.0
    with pytest.raises(InvalidRequest, match="prompts differ") as info:
        paired_difference(base, _report(new["clip_checks"], digest="other"))  # type: ignore[arg-type]
    assert info.value.field == "against"
    with pytest.raises(InvalidRequest, match="no per-clip checks"):
        paired_difference({"n": 6, "seed": 1}, new)


def test_grid_score_sees_squares_and_not_smooth_clips() -> None:
    from kinema.builtin import world

    ramp = 4 * np.arange(32)[None, :] + 2 * np.arange(32)[:, None]  # smooth: every step the same
    smooth = np.repeat(ramp[None, None, :, :, None], 3, axis=4).clip(0, 255).astype(np.uint8)  # (1, 1, 32, 32, 3)
    blocks = np.repeat(np.repeat(smooth[:, :, ::8, ::8], 8, axis=2), 8, axis=3)  # the same, drawn in 8x8 squares
    assert grid_score(smooth, 8) == pytest.approx(1.0)
    assert grid_score(blocks, 8) > 10  # every step sits on a border
    assert grid_score(blocks, 16) < grid_score(blocks, 8)  # half the borders are not a 16-pixel grid's
    real = world.make_dataset(16, seed=1234, split="heldout", num_frames=16, height=64, width=64)[0]
    assert grid_score(real, 8) < 1.1  # the world draws no grid (a few clips' edges may fall on a border)


def test_static_psnr_counts_only_the_pixels_that_stay_still() -> None:
    rng = np.random.default_rng(0)
    real = np.full((4, 8, 8, 3), 100, np.uint8)
    real[:, :, :2] = rng.integers(0, 255, (4, 8, 2, 3), dtype=np.uint8)  # two moving columns: not background
    good = real.copy()
    good[:, :, :2] = 0  # wrong where things move: ignored
    assert static_psnr(good, real, start=2) == float("inf")
    bad = good.copy()
    bad[2, :, 5] = 100 + 2 * STATIC_LEVELS  # wrong on the background in a late frame: counted
    assert 20 < static_psnr(bad, real, start=2) < 40  # type: ignore[operator]
    assert static_psnr(bad, real, start=3) == float("inf")  # frames before start do not count
    everything_moves = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
    assert static_psnr(everything_moves, everything_moves, start=2) is None  # no background to measure


def test_eval_cli_json_and_bad_input() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "builtin", "--n", "2", "--steps", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert 0.0 <= json.loads(res.stdout)["adherence"] <= 1.0
    bad = runner.invoke(app, ["eval", "builtin", "--n", "0"])
    assert bad.exit_code == 2 and "n: must be at least 1" in bad.stderr
    other = runner.invoke(app, ["eval", "gpt"])
    assert other.exit_code == 2 and "target:" in other.stderr
    for args, field in (
        (["--guidance", "0"], "guidance: must be above 0"),
        (["--guidance-interval", "0.8"], "guidance_interval: must be two numbers"),
        (["--guidance-interval", "0.9,0.2"], "guidance_interval: must be (lo, hi)"),
        (["--shift", "0"], "shift: must be above 0"),
    ):
        res = runner.invoke(app, ["eval", "builtin", "--n", "1", *args])
        assert res.exit_code == 2 and field in res.stderr, (args, res.output)


def test_eval_cli_compares_with_an_earlier_report(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["eval", "builtin", "--n", "2", "--steps", "1", "--json"])
    assert first.exit_code == 0, first.output
    earlier = tmp_path / "earlier.json"
    earlier.write_text(first.stdout)
    again = runner.invoke(app, ["eval", "builtin", "--n", "2", "--steps", "1", "--json", "--against", str(earlier)])
    assert again.exit_code == 0, again.output
    against = json.loads(again.stdout)["against"]
    assert against["clips"] == 2 and against["path"] == str(earlier)
    assert against["adherence"]["difference"] == 0.0 and against["adherence"]["gained"] == 0  # the same draw
    text = runner.invoke(app, ["eval", "builtin", "--n", "2", "--steps", "1", "--against", str(earlier)])
    assert text.exit_code == 0 and "against the earlier report, the same 2 prompts" in text.stdout
    # refused before anything is drawn: another seed or n, a missing file, not JSON, a report without clip checks
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"n": 2, "seed": 1234, "adherence": 0.5}))
    notjson = tmp_path / "x.json"
    notjson.write_text("adherence 0.9")
    for args, message in (
        (["--n", "3"], "drawn with n 2 and seed 1234, not n 3 and seed 1234"),
        (["--n", "2", "--seed", "5"], "not n 2 and seed 5"),
    ):
        res = runner.invoke(app, ["eval", "builtin", *args, "--against", str(earlier)])
        said = " ".join(res.stderr.split())  # the console wraps long lines
        assert res.exit_code == 2 and "against:" in said and message in said, res.output
    for path, message in ((tmp_path / "none.json", "cannot read"), (notjson, "is not JSON"), (old, "no per-clip")):
        res = runner.invoke(app, ["eval", "builtin", "--n", "2", "--against", str(path)])
        said = " ".join(res.stderr.split())
        assert res.exit_code == 2 and "against:" in said and message in said, res.output
        assert "Traceback" not in res.output


def test_eval_cli_passes_the_guidance_settings_on() -> None:
    res = CliRunner().invoke(
        app,
        [
            *("eval", "builtin", "--n", "1", "--steps", "1", "--json", "--guidance", "1"),
            *("--guidance-interval", "0.5,1", "--shift", "5"),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["guidance"] == 1.0 and report["guidance_interval"] == [0.5, 1.0] and report["shift"] == 5.0


def test_eval_writes_the_seeds_contact_sheet(tmp_path: Path) -> None:
    from PIL import Image

    from kinema.builtin.sheet import SEED_PROMPTS

    out = tmp_path / "sheet.png"
    res = CliRunner().invoke(app, ["eval", "builtin", "--n", "1", "--steps", "2", "--json", "--sheet", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["sheet"]["rows"]
    assert [r["prompt"] for r in rows] == list(SEED_PROMPTS)
    # the world has no words for cats and spaceships: the sheet says which words were left out
    assert "cat" in rows[5]["unknown_words"] and "spaceship" in rows[6]["unknown_words"]
    assert rows[3]["unknown_words"] == []  # a red ball bouncing on green grass: every word known
    with Image.open(out) as im:
        assert im.width >= 4 * 128 and im.height >= len(SEED_PROMPTS) * 128
    bad = CliRunner().invoke(app, ["eval", "builtin", "--n", "1", "--sheet", str(tmp_path / "s.jpg")])
    assert bad.exit_code != 0 and "sheet" in bad.output and "Traceback" not in bad.output
