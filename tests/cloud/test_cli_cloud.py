"""The cloud side of the command line: `kinema backends` names the variable to set, `kinema generate` records
the provider's task id next to its output, and `kinema resume` finishes the same paid generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kinema.cli import app

from .cases import CASES
from .conftest import PROVIDER_VARS

runner = CliRunner()
# the variable a fresh machine must set first: the key, or for the /v1/videos client the server it talks to
CLOUD = {c.backend: c.key_vars[0] for c in CASES} | {"openai": "KINEMA_OPENAI_VIDEOS_BASE_URL"}


def test_backends_lists_every_provider_with_the_variable_to_set() -> None:
    result = runner.invoke(app, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    listed = {b["name"]: b for b in json.loads(result.stdout)}
    for name, var in CLOUD.items():
        assert name in listed, f"{name} is not listed"
        assert listed[name]["usable"] is False
        assert var in listed[name]["reason"], listed[name]["reason"]
    table = runner.invoke(app, ["backends"])
    assert table.exit_code == 0
    for name in CLOUD:
        assert name in table.stdout


def test_backends_shows_a_provider_usable_once_its_key_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWAYML_API_SECRET", "key_not_shown_anywhere_0123456789")
    result = runner.invoke(app, ["backends", "--json"])
    listed = {b["name"]: b for b in json.loads(result.stdout)}
    assert listed["runway"]["usable"] is True
    assert "key_not_shown_anywhere" not in result.output


def test_generate_records_the_task_and_resume_finishes_it(
    video_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakes.runway import FakeRunway

    assert "RUNWAYML_API_SECRET" in PROVIDER_VARS
    with FakeRunway(video_bytes) as fake:
        monkeypatch.setenv("RUNWAYML_API_SECRET", fake.key)
        monkeypatch.setenv("RUNWAYML_BASE_URL", fake.url)
        fake.polls_to_finish = 10_000  # the provider is slow: our deadline passes first
        out = tmp_path / "clip.mp4"
        args = [
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
            "poll_interval=0.01",
            "--option",
            "timeout=0.3",
        ]
        first = runner.invoke(app, args)
        assert first.exit_code == 1, first.output
        assert "resume" in first.output
        record_path = Path(str(out) + ".task.json")
        record = json.loads(record_path.read_text())
        assert record["backend"] == "runway" and record["task_id"] in fake.tasks
        assert fake.key not in record_path.read_text()
        assert not out.exists() and fake.submissions == 1

        fake.polls_to_finish = 1  # it finished while we were away
        second = runner.invoke(app, ["resume", str(out), "--option", "timeout=10", "--json"])
        assert second.exit_code == 0, second.output
        data = json.loads(second.stdout.strip().splitlines()[-1])
        assert data["provider_task_id"] == record["task_id"]
        assert out.is_file() and not record_path.exists()
        assert fake.submissions == 1, "resume must not submit again"


def test_generate_removes_the_resume_file_after_success(
    video_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakes.luma import FakeLuma

    with FakeLuma(video_bytes) as fake:
        monkeypatch.setenv("LUMAAI_API_KEY", fake.key)
        monkeypatch.setenv("LUMAAI_BASE_URL", fake.url + "/dream-machine/v1")
        out = tmp_path / "ok.mp4"
        result = runner.invoke(
            app,
            [
                "generate",
                "a fox",
                "--backend",
                "luma",
                "--duration",
                "5",
                "-o",
                str(out),
                "--option",
                "poll_interval=0.01",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        assert out.is_file() and not Path(str(out) + ".task.json").exists()
        assert json.loads(result.stdout.strip().splitlines()[-1])["provider_task_id"] in fake.tasks


def test_resume_without_a_record_is_a_clear_input_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["resume", str(tmp_path / "missing.mp4")])
    assert result.exit_code == 2
    assert "task.json" in result.output


def test_bad_request_exits_2_before_anything_is_sent(video_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakes.runway import FakeRunway

    with FakeRunway(video_bytes) as fake:
        monkeypatch.setenv("RUNWAYML_API_SECRET", fake.key)
        monkeypatch.setenv("RUNWAYML_BASE_URL", fake.url)
        result = runner.invoke(app, ["generate", "a fox", "--backend", "runway", "--duration", "11"])
        assert result.exit_code == 2
        assert "duration" in result.output and "10s" in result.output
        assert fake.submit_attempts == 0


@pytest.mark.parametrize(
    ("mode", "field"),
    [
        ("i2v", "image"),
        ("keyframes", "last_image"),
        ("edit", "source_video"),
        ("references", "references"),
        ("extend", "video"),
    ],
)
def test_resume_refuses_a_mode_whose_input_was_data(tmp_path: Path, mode: str, field: str) -> None:
    """A resume file keeps inputs given as paths or URLs only; one given as data cannot be rebuilt, and the request
    must not silently become another mode."""
    from kinema.backends.remote import write_resume_file

    record = {
        "task_id": "t1",
        "backend": "kling",
        "output": str(tmp_path / "out.mp4"),
        "info": {"mode": mode, "request": {"prompt": "a fox", "backend": "kling"}},
    }
    path = write_resume_file(tmp_path / "out.mp4.task.json", record)
    result = runner.invoke(app, ["resume", str(path)])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"{field}:" in said and "does not hold" in said and "Traceback" not in said
