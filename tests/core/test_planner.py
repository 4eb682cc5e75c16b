"""The planner: one place a request meets its backend, and every front door resolves models through it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import kinema
from kinema import backends as registry
from kinema.backends.base import Availability, BackendOutput, Capabilities, GenerationContext, GenerationParams
from kinema.planner import backend_for

SRC = Path(kinema.__file__).parent


class GreyBackend:
    """A third-party backend written against the Backend protocol alone (no BaseBackend, no models())."""

    name = "grey"
    description = "grey frames"

    def availability(self) -> Availability:
        return Availability.ok()

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(modes=("t2v", "i2v"), default_size=(16, 16), default_frames=4, max_frames=8, default_fps=4)

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        ctx.progress("denoising", 1, 1)
        frames = np.full((params.num_frames, params.height, params.width, 3), 128, np.uint8)
        return BackendOutput(video=kinema.Video(frames, fps=params.fps))


@pytest.fixture
def grey(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_instances", dict(registry._instances))
    kinema.register_backend("grey", GreyBackend)
    yield "grey"


# -- the plan ---------------------------------------------------------------------------------------------------
def test_plan_shows_what_would_run_without_running() -> None:
    plan = kinema.plan(kinema.VideoRequest(prompt="a red ball", num_inference_steps=4))
    assert (plan.backend.name, plan.params.width, plan.params.num_frames, plan.format) == ("builtin", 128, 16, "mp4")
    assert plan.to_dict()["seed"] is None and plan.to_dict()["seed_random"] is True
    text = str(plan)
    assert "builtin" in text and "128x128, 16 frames at 8 fps" in text and "seed         random" in text
    # a length for people: "0.666667 s" was printed for 16 frames at 24 fps; the JSON keeps the exact number
    fast = kinema.plan(kinema.VideoRequest(prompt="a red ball", fps=24))
    assert "16 frames at 24 fps (0.67 s)" in str(fast) and fast.to_dict()["duration"] == 0.666667
    fixed = kinema.plan(kinema.VideoRequest(prompt="a red ball", seed=7), output="clip.webm")
    assert fixed.params.seed == 7 and fixed.format == "webm" and fixed.to_dict()["output"] == "clip.webm"


def test_plan_refuses_what_the_backend_refuses() -> None:
    with pytest.raises(kinema.InvalidRequest, match="^num_frames: 17 is not allowed") as info:
        kinema.plan(kinema.VideoRequest(prompt="x", num_frames=17))
    assert "12k+4" in (info.value.allowed or "")
    with pytest.raises(kinema.InvalidRequest) as info:
        kinema.plan(kinema.VideoRequest(prompt="x", format="gif"), output="clip.mp4")
    assert info.value.field == "format"
    with pytest.raises(kinema.InvalidRequest) as info:
        kinema.plan(kinema.VideoRequest(prompt="x"), output="clip.avi")
    assert info.value.field == "output" and ".webm" in (info.value.allowed or "")


def test_python_dry_run_prints_the_plan() -> None:
    code = "import kinema; print(kinema.plan(kinema.VideoRequest(prompt='a red ball')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.startswith("backend      builtin") and "seed         random" in out.stdout


def test_cli_plan_json_prints_the_plan_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kinema.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["generate", "a red ball", "--plan", "--json", "--steps", "3", "--size", "128x128"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["backend"] == "builtin" and plan["num_inference_steps"] == 3 and plan["num_frames"] == 16
    assert plan["output"] is None and list(tmp_path.iterdir()) == []
    res = CliRunner().invoke(app, ["generate", "a red ball", "--plan", "-o", "x.gif"])
    assert res.exit_code == 0 and "format       gif -> x.gif" in res.stdout and list(tmp_path.iterdir()) == []


# -- model references: the same at every front door ---------------------------------------------------------------
def test_model_id_without_backend_picks_the_backend_that_serves_it() -> None:
    backend, request = backend_for(kinema.VideoRequest(prompt="x", model="wan2.1-t2v-1.3b"))
    assert backend.name == "diffusers" and (request.backend, request.model) == ("diffusers", "wan2.1-t2v-1.3b")
    backend, request = backend_for(kinema.VideoRequest(prompt="x", model="builtin"))
    assert backend.name == "builtin" and request.model is None
    backend, request = backend_for(kinema.VideoRequest(prompt="x", model="diffusers/Org/Repo"))
    assert backend.name == "diffusers" and request.model == "Org/Repo"


@pytest.mark.parametrize("model", ["nosuch", "my/builtin.safetensors"])
def test_unknown_model_is_refused_naming_the_field_at_every_front_door(tmp_path: Path, model: str) -> None:
    from kinema.batch import load_batch
    from kinema.cli import app
    from kinema.storyboard import check_storyboard

    with pytest.raises(kinema.InvalidRequest) as info:
        kinema.generate("a red ball", model=model)
    assert info.value.field == "model" and model in info.value.message and info.value.allowed

    res = CliRunner().invoke(app, ["generate", "a red ball", "--model", model, "-o", str(tmp_path / "o.mp4")])
    assert res.exit_code == 2 and "model:" in res.output and not (tmp_path / "o.mp4").exists()

    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps({"prompt": "a red ball", "model": model}) + "\n", encoding="utf-8")
    with pytest.raises(kinema.InvalidRequest) as info:
        load_batch(batch)
    assert info.value.field == "line 1.model"

    board = tmp_path / "board.json"
    board.write_text(
        json.dumps({"title": "t", "defaults": {"model": model}, "scenes": [{"prompt": "green grass"}]}), "utf-8"
    )
    with pytest.raises(kinema.InvalidRequest) as info:
        check_storyboard(board)
    assert info.value.field == "scenes[0].model"


def _other_checkpoint(folder: Path) -> Path:
    """A built-in checkpoint that is not the shipped one (random tiny weights), with a revision of its own."""
    import torch

    from kinema.builtin import load_model, save_model
    from kinema.builtin.model import CONFIGS, ModelConfig, VideoDiT

    shipped, _, _ = load_model()
    torch.manual_seed(1)
    cfg = ModelConfig(vocab=list(shipped.cfg.vocab), cameras=list(shipped.cfg.cameras), **CONFIGS["tiny"])
    model = VideoDiT(cfg)
    with torch.no_grad():
        for layer in (model.out, model.ada_out):
            layer.weight.normal_(std=0.02)
    return save_model(model, folder / "mine.safetensors", {"revision": "mine-1"})


def test_builtin_weights_file_is_loaded_and_its_revision_recorded(tmp_path: Path) -> None:
    from kinema.cli import app

    path = _other_checkpoint(tmp_path)
    default = kinema.generate("a red ball bouncing", seed=3, num_inference_steps=2)
    mine = kinema.generate("a red ball bouncing", seed=3, num_inference_steps=2, model=str(path))
    assert mine.recipe["backend"] == "builtin" and mine.recipe["model"] == str(path.resolve())
    assert mine.recipe["model_revision"] == "mine-1" != default.recipe["model_revision"]
    assert not np.array_equal(mine.video.frames, default.video.frames)  # the file was used, not just recorded
    # the recipe reproduces it
    again = kinema.run(kinema.engine.request_from_recipe(mine.recipe))
    assert np.array_equal(again.video.frames, mine.video.frames)
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "a red ball bouncing",
            "--model",
            str(path),
            "--seed",
            "3",
            "--steps",
            "2",
            "-o",
            str(tmp_path / "cli.mp4"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["recipe"]["model_revision"] == "mine-1"


def test_builtin_revision_without_one_in_the_header_is_the_files_hash(tmp_path: Path) -> None:
    """Without a revision in its header a checkpoint is named by its file's sha256: two fine-tunes of the same length
    (steps_run alike, which once named them) get different revisions."""
    import hashlib

    import torch

    from kinema.builtin import load_model, save_model

    path = _other_checkpoint(tmp_path)
    model, _, _ = load_model(path)
    twins = []
    for i in range(2):
        with torch.no_grad():
            model.out.bias.fill_(0.01 * i)
        twins.append(save_model(model, tmp_path / f"twin{i}.safetensors", {"steps_run": 1800}))
    revisions = [
        kinema.generate("a red ball", seed=3, num_inference_steps=1, model=str(p)).recipe["model_revision"]
        for p in twins
    ]
    assert revisions == [f"sha256:{hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16]}" for p in twins]
    assert revisions[0] != revisions[1]


# -- a protocol-only backend through every front door of the library and the CLI ---------------------------------
def test_protocol_only_backend_through_generate_cli_batch_and_storyboard(tmp_path: Path, grey: str) -> None:
    from kinema.batch import run_batch
    from kinema.cli import app
    from kinema.storyboard import render_storyboard

    backend = kinema.get_backend(grey)
    assert isinstance(backend, kinema.BaseBackend) and backend.models() == [] and backend.default_model() is None
    assert kinema.generate("ok", backend=grey).video.frames.shape == (4, 16, 16, 3)
    assert kinema.generate("ok", model=grey).recipe["backend"] == grey  # a backend name as the model reference
    assert any(i.name == grey and i.usable and i.modes == ("t2v", "i2v") for i in kinema.list_backends())

    res = CliRunner().invoke(app, ["generate", "ok", "-b", grey, "-o", str(tmp_path / "c.mp4"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_frames"] == 4
    res = CliRunner().invoke(app, ["backends", "--json"])
    assert any(b["name"] == grey and b["usable"] for b in json.loads(res.stdout))

    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"prompt": p, "backend": grey, "seed": 1}) for p in ("a", "b")) + "\n")
    report = run_batch(rows, tmp_path / "batch")
    assert report.counts == {"done": 2, "skipped": 0, "failed": 0}

    board = {
        "title": "t",
        "defaults": {"backend": grey},
        "scenes": [{"prompt": "one", "duration": 0.5}, {"prompt": "two", "continuity": True}],
    }
    manifest = render_storyboard(board, tmp_path / "film.mp4")
    assert [s["frames"] for s in manifest["scenes"]] == [2, 4] and manifest["frames"] == 6


# -- the one caller of resolve() and availability() ----------------------------------------------------------------
def _calls(path: Path, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names:
            # Path.resolve() takes no request: a backend's resolve(request, seed) always has arguments
            if node.func.attr == "resolve" and not node.args:
                continue
            found.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.func.attr}()")
    return found


def test_only_the_planner_calls_resolve_and_availability() -> None:
    allowed = {SRC / "planner.py"}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path in allowed or (SRC / "backends") in path.parents:
            continue
        offenders += _calls(path, {"resolve", "availability"})
    assert offenders == [], "\n".join(offenders)


def test_front_doors_share_one_alias_table() -> None:
    from kinema.vocabulary import request_fields

    assert request_fields(
        {"prompt": "x", "steps": 3, "guidance": 2, "seconds": "1.5", "size": "32x16", "frames": 4, "negative": "blur"}
    ) == {
        "prompt": "x",
        "num_inference_steps": 3,
        "guidance_scale": 2,
        "duration": 1.5,
        "width": 32,
        "height": 16,
        "num_frames": 4,
        "negative_prompt": "blur",
    }
    with pytest.raises(kinema.InvalidRequest) as info:
        request_fields({"size": "big"})
    assert info.value.field == "size"
    with pytest.raises(kinema.InvalidRequest) as info:
        request_fields({"steps": 3, "num_inference_steps": 4})
    assert info.value.field == "steps"


def test_the_printed_plan_leaves_the_backends_private_notes_to_json() -> None:
    pytest.importorskip("diffusers")
    the_plan = kinema.plan(
        kinema.VideoRequest(prompt="a fox", model="wan2.1-t2v-1.3b", options={"cache": "none"}), check_available=False
    )
    private = [k for k in the_plan.to_dict()["options"] if k.startswith("_")]
    assert private  # the diffusers backend's resolved settings ride along for --plan --json
    text = str(the_plan)
    assert "options      {'cache': 'none'}" in text and not any(k in text for k in private)
