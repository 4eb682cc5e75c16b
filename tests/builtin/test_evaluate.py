"""The built-in model's evaluation runs end to end on a few prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.builtin.evaluate import evaluate, psnr
from kinema.cli import app


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
    # the detectors agree with the truth on the real clips of the same scenes
    assert report["detector_accuracy_on_real"]["overall"] >= 0.75
    assert report["i2v_samples"] == 2 and report["i2v_psnr_db"] > 0
    assert report["temporal"]["real"] > 0
    assert json.loads(json.dumps(report)) == report


def test_eval_cli_json_and_bad_input() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "builtin", "--n", "2", "--steps", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert 0.0 <= json.loads(res.stdout)["adherence"] <= 1.0
    bad = runner.invoke(app, ["eval", "builtin", "--n", "0"])
    assert bad.exit_code == 2 and "n: must be at least 1" in bad.stderr
    other = runner.invoke(app, ["eval", "gpt"])
    assert other.exit_code == 2 and "target:" in other.stderr
    for args, field in ((["--guidance", "0"], "guidance: must be above 0"),
                        (["--guidance-interval", "0.8"], "guidance_interval: must be two numbers"),
                        (["--guidance-interval", "0.9,0.2"], "guidance_interval: must be (lo, hi)")):  # fmt: skip
        res = runner.invoke(app, ["eval", "builtin", "--n", "1", *args])
        assert res.exit_code == 2 and field in res.stderr, (args, res.output)


def test_eval_cli_passes_the_guidance_settings_on() -> None:
    res = CliRunner().invoke(app, ["eval", "builtin", "--n", "1", "--steps", "1", "--json", "--guidance", "1",
                                   "--guidance-interval", "0.5,1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["guidance"] == 1.0 and report["guidance_interval"] == [0.5, 1.0]
