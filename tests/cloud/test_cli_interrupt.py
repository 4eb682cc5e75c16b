"""Ctrl-C on ``kinema generate`` stops the provider's bill: the provider's cancel is called once and the resume
file goes; with ``--keep-task-on-interrupt`` the task is left running for ``kinema resume``."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kinema.cli import app

runner = CliRunner()


@pytest.fixture
def runway(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from fakes.runway import FakeRunway

    with FakeRunway(b"not needed: the task never finishes") as fake:
        monkeypatch.setenv("RUNWAYML_API_SECRET", fake.key)
        monkeypatch.setenv("RUNWAYML_BASE_URL", fake.url)
        fake.polls_to_finish = 10_000  # still running when the user presses Ctrl-C
        yield fake


def ctrl_c_once_submitted(record: Path) -> threading.Thread:
    """Press Ctrl-C (SIGINT to this process, which the main thread's handler receives) once the task is recorded."""

    def press() -> None:
        deadline = time.monotonic() + 20
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def generate(out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "a red ball bouncing on green grass",
        "--backend",
        "runway",
        "--duration",
        "5",
        "--aspect-ratio",
        "16:9",
        "-o",
        str(out),
        "--option",
        "poll_interval=0.02",
        *extra,
    ]


def test_ctrl_c_cancels_the_providers_task(runway: object, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    record = Path(str(out) + ".task.json")
    presser = ctrl_c_once_submitted(record)
    result = runner.invoke(app, generate(out))
    presser.join(5)
    assert result.exit_code == 130, result.output
    assert runway.cancels == 1, "exactly one cancel call at the provider"  # type: ignore[attr-defined]
    assert runway.submissions == 1  # type: ignore[attr-defined]
    assert "cancel sent" in result.output
    assert not record.exists(), "a cancelled task leaves nothing to resume"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_keep_task_on_interrupt_leaves_it_for_resume(runway: object, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    record = Path(str(out) + ".task.json")
    presser = ctrl_c_once_submitted(record)
    result = runner.invoke(app, generate(out, "--keep-task-on-interrupt"))
    presser.join(5)
    assert result.exit_code == 130, result.output
    assert runway.cancels == 0  # type: ignore[attr-defined]
    assert record.exists() and "kinema resume" in result.output
