"""Batches: bounded concurrency, failures isolated, resumable, validated before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kinema import InvalidRequest
from kinema.batch import REPORT_NAME, load_batch, run_batch
from kinema.media.ffmpeg import media_info

PROMPTS = ["a red ball bouncing on green grass", "sunrise over mountains", "green grass", "red ball on grass"]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_batch_of_20_with_two_bad_rows_then_rerun(tmp_path: Path, count_generations: list[Any]) -> None:
    rows: list[dict[str, Any]] = [{"prompt": PROMPTS[i % 4], "seed": i, "num_inference_steps": 2} for i in range(20)]
    rows[5]["num_frames"] = 17  # the built-in model makes 16 + 12k frames
    rows[12]["width"], rows[12]["height"] = 100, 100  # and only 64x64
    file = _write_jsonl(tmp_path / "batch.jsonl", rows)
    out = tmp_path / "out"
    runner = CliRunner()
    from kinema.cli import app

    # the backend's rules are checked when the file is read: the whole file is refused before anything runs
    result = runner.invoke(app, ["batch", str(file), "-o", str(out), "--concurrency", "2", "--json"])
    assert result.exit_code == 2, result.output
    assert "line 6.num_frames" in result.output and "line 13." in result.output and count_generations == []
    # with --skip-invalid the two rows fail alone and the rest run
    result = runner.invoke(app, ["batch", str(file), "-o", str(out), "--concurrency", "2", "--json", "--skip-invalid"])
    assert result.exit_code == 1, result.output  # some rows failed
    report = json.loads(result.stdout)
    assert report["counts"] == {"done": 18, "skipped": 0, "failed": 2}
    assert len(count_generations) == 18  # the two bad rows never reached a backend
    failed = {r["line"]: r for r in report["rows"] if r["status"] == "failed"}
    assert set(failed) == {6, 13}
    assert failed[6]["error"]["field"] == "line 6.num_frames" and "12k+4" in failed[6]["error"]["message"]
    assert failed[13]["error"]["field"].startswith("line 13.") and failed[13]["path"] is None
    done = [r for r in report["rows"] if r["status"] == "done"]
    for row in done:
        assert row["seed"] == row["line"] - 1 and row["time"] > 0 and "cost" in row
        assert media_info(row["path"])["video"]["frames"] == 16
    assert len({r["path"] for r in done}) == 18
    on_disk = json.loads((out / REPORT_NAME).read_text())
    assert on_disk["counts"] == report["counts"]

    # a re-run generates nothing new: the 18 are found by their hash, the 2 bad rows are refused again
    count_generations.clear()
    again = run_batch(file, out, concurrency=2, skip_invalid=True)
    assert again.counts == {"done": 0, "skipped": 18, "failed": 2}
    assert count_generations == []


def test_csv_batch_with_postprocess_and_duplicates(tmp_path: Path, tone: Path, count_generations: list[Any]) -> None:
    (tmp_path / "music.wav").write_bytes(tone.read_bytes())
    file = tmp_path / "batch.csv"
    file.write_text(
        "prompt,seed,num_inference_steps,name,postprocess\n"
        'sunrise over mountains,3,2,sun,"[""upscale:2"", {""op"": ""audio"", ""path"": ""music.wav""}]"\n'
        "green grass,4,2,,\n"
        "green grass,4,2,,\n",
        encoding="utf-8",
    )
    report = run_batch(file, tmp_path / "out", concurrency=1)
    assert report.counts == {"done": 3, "skipped": 0, "failed": 0}
    assert len(count_generations) == 2  # the repeated row is made once
    sun = next(r for r in report.rows if r["name"] == "sun")
    info = media_info(sun["path"])
    assert Path(sun["path"]).name.startswith("sun-")
    assert (info["video"]["width"], info["video"]["height"]) == (256, 256)
    assert info["audio"]["duration"] == pytest.approx(2.0, abs=0.05)
    assert report.rows[2]["duplicate_of_line"] == 3 and report.rows[2]["path"] == report.rows[1]["path"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"prompt": "a", "seed": 1}\n{"seed": 2}\n', "line 2.prompt"),
        ('{"prompt": "a"}\n\n{"prompt": "b", "colour": "red"}\n', "line 3.colour"),
        ('{"prompt": "a", "num_frames": "many"}\n', "line 1.num_frames"),
        ('{"prompt": "a"}\n{"prompt": "b",\n', "line 2"),
        ('{"prompt": "a", "image": "no-such.png"}\n', "line 1.image"),
        ('{"prompt": "a", "postprocess": [{"op": "audio", "path": "gone.wav"}]}\n', "line 1.postprocess[0].path"),
        ('{"prompt": "a", "backend": "nope"}\n', "line 1.backend"),
        ("[1, 2]\n", "line 1"),
    ],
)
def test_bad_jsonl_refused_before_generation(
    tmp_path: Path, count_generations: list[Any], text: str, field: str
) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidRequest) as exc:
        run_batch(file, tmp_path / "out")
    assert exc.value.field == field, exc.value
    assert count_generations == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("prompt,seed\nok,1\nok,x\n", "line 3.seed"),
        ("prompt,sed\nok,1\n", "line 1.sed"),
        ("prompt,guidance_scale\nok,lots\n", "line 2.guidance_scale"),
        ("seed\n3\n", "line 2.prompt"),
    ],
)
def test_bad_csv_refused(tmp_path: Path, text: str, field: str) -> None:
    file = tmp_path / "bad.csv"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidRequest) as exc:
        load_batch(file)
    assert exc.value.field == field, exc.value


def test_many_bad_rows_all_listed_and_skip_invalid(tmp_path: Path, count_generations: list[Any]) -> None:
    file = _write_jsonl(
        tmp_path / "b.jsonl",
        [{"prompt": "green grass", "seed": 1, "num_inference_steps": 2}, {"prompt": ""}, {"prompt": "x", "fps": 0}],
    )
    with pytest.raises(InvalidRequest) as exc:
        load_batch(file)
    assert "line 2.prompt" in str(exc.value) and "line 3.fps" in str(exc.value)
    report = run_batch(file, tmp_path / "out", skip_invalid=True)
    assert report.counts == {"done": 1, "skipped": 0, "failed": 2} and len(count_generations) == 1
    assert [r["error"]["field"] for r in report.rows[1:]] == ["line 2.prompt", "line 3.fps"]


def test_cli_refuses_bad_file_with_exit_2(tmp_path: Path) -> None:
    from kinema.cli import app

    file = _write_jsonl(tmp_path / "b.jsonl", [{"prompt": "a", "steps": 3}])
    result = CliRunner().invoke(app, ["batch", str(file), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "line 1.steps" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["batch", str(tmp_path / "b.txt"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2


def test_rows_take_every_input_relative_to_the_batch_file(tmp_path: Path) -> None:
    """A batch in another folder names its images and clips beside it, as a storyboard does: ``last_image``,
    ``references`` and ``source_video`` too, not only ``image``."""
    from PIL import Image

    folder = tmp_path / "jobs"
    folder.mkdir()
    for name in ("first.png", "last.png", "ref.png"):
        Image.new("RGB", (32, 32), (200, 40, 40)).save(folder / name)
    (folder / "clip.mp4").write_bytes(b"\0" * 64)  # the request checks only that the file is there
    rows = [
        {"prompt": "a red ball", "image": "first.png", "last_image": "last.png"},
        {"prompt": "a red ball", "references": ["ref.png"], "backend": "fal"},
        {"prompt": "a red ball", "source_video": "clip.mp4", "strength": 0.5},
        {"prompt": "a red ball", "source_video": "https://example.com/clip.mp4"},
    ]
    loaded = load_batch(_write_jsonl(folder / "b.jsonl", rows), skip_invalid=True)
    requests = [row.request for row in loaded]
    assert all(r is not None for r in requests), [row.error for row in loaded]
    first, refs, edit, url = requests
    assert first is not None and (first.image, first.last_image) == (
        str(folder / "first.png"),
        str(folder / "last.png"),
    )
    assert refs is not None and refs.references == [str(folder / "ref.png")]
    assert edit is not None and edit.source_video == str(folder / "clip.mp4")
    assert url is not None and url.source_video == "https://example.com/clip.mp4"
