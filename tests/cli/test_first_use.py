"""What a new user trips over (issue 23): the Hub out of reach, --debug after the command, the model listing at 80
columns, what `kinema backends` calls usable, lengths changed without a word, long work without progress."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import kinema
from kinema.cli import app
from kinema.cli.console import out, set_debug

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: connecting is refused at once


def test_pull_without_network_says_the_hub_cannot_be_reached_and_how_to_copy_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, `kinema pull` printed a 60-line traceback ending in a DNS error (httpx's ConnectError)."""
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")  # no server: the connection fails
    res = runner.invoke(app, ["pull", "wan2.1-t2v-1.3b"])
    assert res.exit_code == 1, res.output
    text = " ".join(res.stderr.split())
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert "cannot reach the Hugging Face Hub" in text
    # how to do it on another machine, and where the copy goes here
    assert "HF_HOME=/tmp/hf kinema pull wan2.1-t2v-1.3b" in text
    assert "models--Wan-AI--Wan2.1-T2V-1.3B-Diffusers" in text and str(tmp_path / "hf" / "hub") in text


def test_debug_is_accepted_after_the_command() -> None:
    """`kinema info missing.mp4 --debug` answered "No such option: --debug"."""
    try:
        res = runner.invoke(app, ["info", "missing.mp4", "--debug"])
        assert "No such option" not in res.output
        assert res.exit_code == 2 and "file not found" in res.stderr
        assert "Traceback" in res.stderr  # --debug took effect
        # after "--" it is an argument like any other, not the flag
        res = runner.invoke(app, ["info", "--", "--debug"])
        assert res.exit_code == 2 and "Traceback" not in res.stderr and "--debug" in res.stderr
    finally:
        set_debug(False)


def test_models_never_cuts_a_model_id_at_80_columns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """At 80 columns the id column read `wan2.1-…`: the one thing a user must copy."""
    pytest.importorskip("huggingface_hub")
    from kinema.backends.catalog import CATALOG

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(out, "width", 80)
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    first_cells = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
    for model_id in CATALOG:
        assert model_id in first_cells, model_id


def _seed_weights(hf_home: Path, repo: str) -> None:
    """A complete-looking snapshot in the Hub cache layout (refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    (snap / "transformer").mkdir(parents=True)
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    (snap / "model_index.json").write_text(json.dumps(index))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_backends_says_what_the_diffusers_backend_can_really_run_here(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """diffusers was "usable" on a CPU-only machine with no weights, and listed t2v only while `kinema models`
    listed i2v and extend."""
    for module in ("diffusers", "transformers", "huggingface_hub", "torch"):
        pytest.importorskip(module)
    from kinema.backends.catalog import CATALOG

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)

    def listed() -> kinema.BackendInfo:
        return {i.name: i for i in kinema.list_backends()}["diffusers"]

    info = listed()
    assert not info.usable and info.reason is not None
    assert "no model pulled" in info.reason and "kinema pull wan2.1-t2v-1.3b" in info.reason
    # the modes of every catalog model, as `kinema models` lists them
    every = {m for entry in CATALOG.values() for m in entry.modes}
    assert set(info.modes) == every == {"t2v", "i2v", "extend", "edit", "keyframes", "references"}

    from kinema.backends import readiness

    _seed_weights(tmp_path / "hf", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    monkeypatch.setattr(readiness, "accelerator", lambda: None)
    info = listed()
    assert info.usable and info.notes is not None
    assert "no GPU" in info.notes and "very slowly" in info.notes and "wan2.1-t2v-1.3b" in info.notes
    assert info.to_dict()["notes"] == info.notes
    monkeypatch.setattr(readiness, "accelerator", lambda: "cuda: Test GPU")
    info = listed()
    assert info.usable and "no GPU" not in (info.notes or "") and "cuda: Test GPU" in (info.notes or "")
    res = runner.invoke(app, ["backends"], terminal_width=200)
    assert "cuda: Test GPU" in res.stdout


@pytest.mark.parametrize(
    ("args", "frames", "fps", "needle"),
    [
        (["--duration", "3"], 28, 8.0, "duration: 3s at 8 fps is 24 frames"),
        (["--fps", "24"], 16, 24.0, "fps: 24 fps with the default 16 frames makes 0.667s"),
    ],
)
def test_generate_says_when_the_length_is_not_the_one_asked_for(
    args: list[str], frames: int, fps: float, needle: str
) -> None:
    """`--duration 3` made 3.5 s (28 frames) and `--fps 24` a 0.67 s clip, without a word."""
    res = runner.invoke(app, ["generate", "a red ball", *args, "--plan", "--json"])
    assert res.exit_code == 0, res.output
    planned = json.loads(res.stdout)
    assert (planned["num_frames"], planned["fps"]) == (frames, fps)
    assert any(needle in w for w in planned["warnings"]), planned["warnings"]
    res = runner.invoke(app, ["generate", "a red ball", *args, "--plan"])
    assert needle in " ".join(res.stderr.split()) and "warning:" in res.stderr
    # what was asked exactly gets no warning
    res = runner.invoke(app, ["generate", "a red ball", "--duration", "3.5", "--plan", "--json"])
    assert json.loads(res.stdout)["warnings"] == []


def test_the_frame_rule_is_stated_with_examples() -> None:
    """The error said "allowed: 12k+4, between 16 and 160", which reads as a typo: now examples and the rule."""
    res = runner.invoke(app, ["generate", "a red ball", "--frames", "20", "--plan"])
    assert res.exit_code == 2
    assert "16, 28, 40, ... up to 160 (12k+4: a multiple of 12, plus 4)" in " ".join(res.stderr.split())


def _terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=100), buffer


@pytest.mark.parametrize(
    ("extra", "terminal", "shown"), [([], True, True), (["--json"], True, False), ([], False, False)]
)
def test_eval_shows_a_progress_bar_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch, extra: list[str], terminal: bool, shown: bool
) -> None:
    """`kinema eval builtin` ran for minutes without a sign of life."""
    import kinema.builtin.evaluate as evaluate_module
    import kinema.cli.builtin as cli_builtin

    console, buffer = _terminal() if terminal else (Console(file=io.StringIO()), io.StringIO())
    monkeypatch.setattr(cli_builtin, "err", console)
    calls: list[tuple[int, int]] = []

    def fake_evaluate(**kwargs: Any) -> dict[str, Any]:
        for done in (4, 8, 10):
            kwargs["on_progress"](done, 10)
            calls.append((done, 10))
        return {"overall": 1.0}

    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    monkeypatch.setattr(evaluate_module, "format_report", lambda report: "report")
    res = runner.invoke(app, ["eval", "builtin", "--n", "10", *extra])
    assert res.exit_code == 0, res.output
    assert calls == [(4, 10), (8, 10), (10, 10)]
    assert ("evaluating" in buffer.getvalue()) is shown
    if extra:
        assert json.loads(res.stdout) == {"overall": 1.0}  # nothing but the JSON on stdout


def test_train_shows_a_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`kinema train builtin` printed a line every 25 steps and nothing in between."""
    import kinema.builtin.train as train_module
    import kinema.cli.builtin as cli_builtin

    console, buffer = _terminal()
    monkeypatch.setattr(cli_builtin, "err", console)

    def fake_train(cfg: Any, out_dir: Path, **kwargs: Any) -> dict[str, Any]:
        for step in range(1, 4):
            kwargs["on_step"](step, 3)
        return {"steps_run": 3, "train_seconds": 1.0, "hardware": "cpu", "path": str(out_dir)}

    monkeypatch.setattr(train_module, "train", fake_train)
    res = runner.invoke(app, ["train", "builtin", "--config", "tiny", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "training" in buffer.getvalue() and "3/3" in buffer.getvalue()


def test_train_reports_every_step_to_on_step(tmp_path: Path) -> None:
    from kinema.builtin.train import TRAIN_PRESETS, TrainConfig, train

    seen: list[tuple[int, int]] = []
    cfg = TrainConfig(**{**TRAIN_PRESETS["tiny"], "steps": 3, "initial_clips": 8})
    train(cfg, tmp_path, on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
