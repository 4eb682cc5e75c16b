"""Timed keyframes (issue 27): images at given times inside the clip (``keyframes=[{"time": 1.5, "image": ...}]``).

The request checks each keyframe (naming ``keyframes[i].time`` or ``keyframes[i].image``); resolving against the
backend puts each on the frame nearest its time and refuses a time past the clip's end or two on one frame; planning
refuses them on a backend whose Capabilities say ``max_keyframes`` 0, naming the backends that take them, before a
provider sees anything. The built-in model writes each in at its frame; the recipe records each image by digest with
its time and frame, and ``--from`` makes the same frames when the images are given again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import kinema
from kinema import backends as registry
from kinema.backends.base import Availability, BackendOutput, Capabilities, GenerationContext, GenerationParams
from kinema.cli import app
from kinema.errors import InvalidRequest
from kinema.request import Keyframe, VideoRequest

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the provider fakes (tests/fakes) are shared

from fakes.kling import FakeKling  # noqa: E402
from fakes.luma import FakeLuma  # noqa: E402
from fakes.runway import FakeRunway  # noqa: E402

runner = CliRunner()
PNG = b"\x89PNG fake"
PROMPT = "a red ball bouncing on green grass"


def _kf(*times: float, image: Any = PNG) -> list[dict[str, Any]]:
    return [{"time": t, "image": image} for t in times]


@pytest.fixture
def png(tmp_path: Path) -> Path:
    from PIL import Image

    arr = np.zeros((128, 128, 3), np.uint8)  # the built-in model's size: written in unchanged
    arr[:, :, 0] = np.linspace(0, 255, 128, dtype=np.uint8)[None, :]
    arr[40:88, 40:88] = (240, 240, 40)
    path = tmp_path / "mid.png"
    Image.fromarray(arr).save(path)
    return path


# -- the request ----------------------------------------------------------------------------------------------------
def test_keyframes_ask_for_the_keyframes_mode_in_every_form() -> None:
    arr = np.zeros((8, 8, 3), np.uint8)
    r = VideoRequest(prompt="x", keyframes=[{"time": 0.5, "image": PNG}, (1, arr), Keyframe(time=1.5, image=PNG)])
    assert r.mode == "keyframes" and [k.time for k in r.keyframes] == [0.5, 1.0, 1.5]
    assert VideoRequest(prompt="x", image=PNG, last_image=PNG, keyframes=_kf(1)).mode == "keyframes"
    assert VideoRequest(prompt="x", keyframes=[]).mode == "t2v"
    assert VideoRequest(prompt="x", keyframes=[[1, PNG]]).keyframes[0].time == 1.0  # a JSON or YAML pair
    # the recipe names each image by content, with its time; a request without keyframes keeps its old keys
    assert r.recipe()["keyframes"][0] == {"time": 0.5, "image": "sha256:" + hashlib.sha256(PNG).hexdigest()}
    assert "keyframes" not in VideoRequest(prompt="x").recipe()


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"keyframes": "mid.png"}, "keyframes", "must be a list"),
    ({"keyframes": _kf(*[i / 8 for i in range(17)])}, "keyframes", "at most 16"),
    ({"keyframes": [*_kf(0.5), 3]}, "keyframes[1]", "must be {'time'"),
    ({"keyframes": [{"time": 1}]}, "keyframes[0].image", "is missing"),
    ({"keyframes": [{"image": PNG}]}, "keyframes[0].time", "is missing"),
    ({"keyframes": [{"time": 1, "image": PNG, "frame": 8}]}, "keyframes[0].frame", "not a keyframe field"),
    ({"keyframes": _kf("1")}, "keyframes[0].time", "must be a number of seconds"),
    ({"keyframes": _kf(True)}, "keyframes[0].time", "must be a number of seconds"),
    ({"keyframes": _kf(float("nan"))}, "keyframes[0].time", "must be a number of seconds"),
    ({"keyframes": _kf(-0.5)}, "keyframes[0].time", "outside the clip"),
    ({"keyframes": _kf(601)}, "keyframes[0].time", "outside the clip"),
    ({"keyframes": _kf(1, 1)}, "keyframes[1].time", "not after keyframes[0].time (1s)"),
    ({"keyframes": _kf(0.5, 1.5, 1)}, "keyframes[2].time", "not after keyframes[1].time (1.5s)"),
    ({"keyframes": _kf(1, image="/no/such.png")}, "keyframes[0].image", "file not found"),
    ({"keyframes": [*_kf(0.5), {"time": 1, "image": "ftp://x/y.png"}]}, "keyframes[1].image", "not supported"),
    ({"keyframes": [*_kf(0.5), {"time": 1, "image": None}]}, "keyframes[1].image", "is missing"),
    ({"keyframes": _kf(1, image=3.5)}, "keyframes[0].image", "must be a path"),
    ({"keyframes": _kf(0, 1), "image": PNG}, "keyframes[0].time", "ambiguous"),
    ({"keyframes": _kf(1, 2.5), "duration": 2}, "keyframes[1].time", "past the end of the clip (duration 2s)"),
    ({"keyframes": _kf(1), "video": True}, "keyframes", "cannot be combined with video"),
    ({"keyframes": _kf(1), "source": True}, "keyframes", "cannot be combined with source_video"),
    ({"keyframes": _kf(1), "references": [PNG]}, "keyframes", "cannot be combined with references"),
]


@pytest.mark.parametrize(("fields", "field", "phrase"), BAD)
def test_bad_keyframes_are_refused_naming_the_field_and_index(
    refused: Any, fields: dict, field: str, phrase: str
) -> None:
    err = refused(fields)
    assert err.field == field and phrase in err.message, err
    assert err.allowed  # and what would be accepted


# -- resolving: times to frames -------------------------------------------------------------------------------------
def test_each_time_lands_on_the_nearest_frame_at_the_clips_fps() -> None:
    p = kinema.plan(VideoRequest(prompt="x", keyframes=_kf(0, 1, 1.3, 2), seed=1))
    assert p.params.keyframe_frames == [0, 8, 10, 15]  # 8 fps; the clip's end (2 s) is its last frame
    assert p.params.keyframe_times == [0.0, 1.0, 1.3, 2.0]
    assert p.params.warnings == ["keyframes[2].time: 1.3s is frame 10.4 at 8 fps; placed on frame 10 (1.25s)"]
    assert [k["frame"] for k in p.to_dict()["keyframes"]] == [0, 8, 10, 15]
    assert "keyframes: at 0s (frame 0), 1s (frame 8), 1.3s (frame 10), 2s (frame 15)" in str(p)
    fast = kinema.plan(VideoRequest(prompt="x", keyframes=_kf(0.5), fps=16, num_frames=16, seed=1))  # 1 s
    assert fast.params.keyframe_frames == [8] and fast.params.warnings == []
    ends = kinema.plan(VideoRequest(prompt="x", image=PNG, last_image=PNG, keyframes=_kf(1), seed=1))
    assert "keyframes: first and at 1s (frame 8) and last" in str(ends)


@pytest.mark.parametrize(
    ("fields", "field", "phrase", "allowed"),
    [
        (
            {"keyframes": _kf(1, 2.5)},
            "keyframes[1].time",
            "past the end of the clip (16 frames at 8 fps = 2s)",
            "at most 16 frames with keyframes",
        ),
        (
            {"keyframes": _kf(1, 1.05)},
            "keyframes[1].time",
            "lands on frame 8 at 8 fps, as keyframes[0] (1s) does",
            "0.125s) apart",
        ),
        (
            {"keyframes": _kf(0.05), "image": PNG},
            "keyframes[0].time",
            "frame 0, which image gives already",
            "leave image out",
        ),
        (
            {"keyframes": _kf(1.95), "last_image": PNG},
            "keyframes[0].time",
            "frame 15, which last_image gives",
            "leave last_image out",
        ),
        ({"keyframes": _kf(1), "num_frames": 28}, "num_frames", "28 frames is more than", "at most 16 frames"),
    ],
)
def test_times_the_clip_cannot_place_are_refused_at_planning(
    fields: dict, field: str, phrase: str, allowed: str
) -> None:
    request = VideoRequest(prompt="x", **fields)  # the request alone cannot know the clip's length and fps
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(request)
    assert info.value.field == field and phrase in info.value.message, info.value
    assert allowed in (info.value.allowed or ""), info.value


# -- planning: backends without them --------------------------------------------------------------------------------
class FirstLastOnly:
    """A backend with first/last-frame keyframes but none at given times (as Runway's veo3.1, Luma, Kling)."""

    name = "firstlast"
    description = "grey frames"
    max_keyframes = 0

    def availability(self) -> Availability:
        return Availability.ok()

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            modes=("t2v", "i2v", "keyframes"),
            max_keyframes=self.max_keyframes,
            default_size=(16, 16),
            default_frames=8,
            default_fps=4,
        )

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        assert len(params.keyframes) == len(params.keyframe_frames)  # the engine loaded every image
        frames = np.full((params.num_frames, params.height, params.width, 3), 128, np.uint8)
        return BackendOutput(video=kinema.Video(frames, fps=params.fps))


class OneTimed(FirstLastOnly):
    name = "onetimed"
    max_keyframes = 1


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_instances", dict(registry._instances))
    kinema.register_backend("firstlast", FirstLastOnly)
    kinema.register_backend("onetimed", OneTimed)
    yield


def test_a_backend_without_timed_keyframes_refuses_them_naming_the_ones_that_take_them(fakes: None) -> None:
    request = VideoRequest(prompt="x", keyframes=_kf(1), backend="firstlast")
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(request)
    assert info.value.field == "keyframes" and "does not take keyframes at given times" in info.value.message
    assert "only a first and/or last image" in info.value.message
    allowed = info.value.allowed or ""
    assert "backends that take 1:" in allowed and "builtin" in allowed and "onetimed" in allowed
    assert "firstlast" not in allowed.split("take 1:")[1] and "runway" not in allowed
    with pytest.raises(InvalidRequest) as info:  # the backend's own resolve() refuses the same, for direct callers
        registry.get_backend("firstlast").resolve(request, 0)
    assert info.value.field == "keyframes"
    assert kinema.plan(VideoRequest(prompt="x", last_image=PNG, backend="firstlast")).params.mode == "keyframes"


def test_more_keyframes_than_a_backend_takes_are_refused_with_its_limit(fakes: None, png: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(VideoRequest(prompt="x", keyframes=_kf(0.5, 1), backend="onetimed"))
    assert info.value.field == "keyframes" and "has 2 images; backend 'onetimed' takes at most 1" in info.value.message
    allowed = info.value.allowed or ""
    assert allowed.startswith("1 to 1 keyframes; backends that take 2: builtin") and "onetimed" not in allowed
    result = kinema.generate("x", keyframes=_kf(1, image=str(png)), backend="onetimed", seed=1)
    assert result.recipe["keyframes"][0]["frame"] == 4  # 4 fps


PROVIDERS = [
    ("runway", FakeRunway, lambda f: {"RUNWAYML_API_SECRET": f.key, "RUNWAYML_BASE_URL": f.url}, "veo3.1"),
    ("luma", FakeLuma, lambda f: {"LUMAAI_API_KEY": f.key, "LUMAAI_BASE_URL": f.url + "/dream-machine/v1"}, "ray-2"),
    (
        "kling",
        FakeKling,
        lambda f: {"KLING_ACCESS_KEY": f.key, "KLING_SECRET_KEY": f.secret, "KINEMA_KLING_BASE_URL": f.url},
        "kling-v1-6",
    ),
]


@pytest.mark.parametrize(("backend", "fake_class", "env", "model"), PROVIDERS)
def test_providers_refuse_timed_keyframes_before_any_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, png: Path, backend: str, fake_class: Any, env: Any, model: str
) -> None:
    """Runway's promptImage positions are "first"/"last" only, Luma's keyframes frame0/frame1, Kling's image and
    image_tail: none takes an image at a time inside the clip, so the request never reaches the provider."""
    fake = fake_class(b"not used")
    try:
        for var, value in env(fake).items():
            monkeypatch.setenv(var, value)
        monkeypatch.setenv("HOME", str(tmp_path))
        for chosen in (model, None):  # the model that does first/last keyframes, and the backend's own choice
            with pytest.raises(InvalidRequest) as info:
                kinema.generate(
                    PROMPT,
                    keyframes=_kf(1, image=str(png)),
                    backend=backend,
                    model=chosen,
                    seed=1,
                    output=tmp_path / "out.mp4",
                )
            assert info.value.field == "keyframes", info.value
            assert "does not take keyframes at given times" in info.value.message
            assert "builtin" in (info.value.allowed or "")
        assert fake.log == [] and fake.submissions == 0  # nothing was sent, nothing paid
    finally:
        fake.close()


# -- the built-in model ---------------------------------------------------------------------------------------------
def test_the_builtin_model_hands_a_middle_keyframe_back_and_steers_the_next_frames(trained_builtin: Path) -> None:
    """Four held-out world clips, their real frame 8 given at index 8: the model's own frame 8 matches it (measured
    30.9 dB at 6 steps) and frame 9, in the same temporal patch, moves towards the real clip's (18.4 dB against
    16.2 dB without the keyframe)."""
    from kinema.builtin import load_model, world
    from kinema.builtin.evaluate import psnr
    from kinema.builtin.sampling import sample

    model, tokenizer, _ = load_model()
    cfg = model.cfg
    rng = np.random.default_rng(1234)
    scenes = [world.sample_scene(rng, split="heldout") for _ in range(4)]
    captions = [world.caption(s, rng) for s in scenes]
    real = world.render_batch(scenes, seed=1234, num_frames=cfg.frames, height=cfg.height, width=cfg.width)
    out, raw = sample(
        model, tokenizer, captions, steps=6, seed=11, known=real[:, [8]], num_known=1, known_index=[8], return_raw=True
    )
    without = sample(model, tokenizer, captions, steps=6, seed=11)
    assert isinstance(without, np.ndarray)
    assert np.array_equal(out[:, 8], real[:, 8])  # written in unchanged
    assert np.mean([psnr(raw[i, 8], real[i, 8]) for i in range(4)]) >= 26.0
    steered = np.mean([psnr(out[i, 9], real[i, 9]) for i in range(4)])
    assert steered > np.mean([psnr(without[i, 9], real[i, 9]) for i in range(4)]) + 1.0


def test_generate_puts_the_image_on_its_frame_and_changes_the_frames_after_it(
    png: Path, trained_builtin: Path
) -> None:
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB"))
    with_it = kinema.generate(PROMPT, keyframes=[{"time": 1.0, "image": str(png)}], seed=3, num_inference_steps=4)
    without = kinema.generate(PROMPT, seed=3, num_inference_steps=4)
    frames = with_it.video.frames
    assert np.array_equal(frames[8], image)  # 1 s at 8 fps: frame 8
    assert np.abs(frames[9].astype(int) - without.video.frames[9]).mean() > 2.0
    assert any(w.startswith("keyframes: the built-in weights were trained") for w in with_it.warnings)
    assert with_it.recipe["mode"] == "keyframes"


# -- recipes and the command line -----------------------------------------------------------------------------------
def test_the_recipe_records_each_keyframe_by_digest_and_from_reproduces_it(png: Path, tmp_path: Path) -> None:
    first = kinema.generate(
        PROMPT, keyframes=_kf(0.5, 1.5, image=str(png)), seed=5, num_inference_steps=3, output=tmp_path / "a.mp4"
    )
    data = png.read_bytes()
    digest = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "name": "mid.png"}
    assert first.recipe["keyframes"] == [
        {"time": 0.5, "frame": 4, "image": digest},
        {"time": 1.5, "frame": 12, "image": digest},
    ]
    assert str(tmp_path) not in json.dumps(first.recipe)
    recipe = kinema.read_metadata(first.path)
    with pytest.raises(InvalidRequest) as info:
        kinema.engine.request_from_recipe(recipe)
    assert info.value.field == "keyframes" and "--keyframe TIME=IMAGE for each (times 0.5, 1.5)" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        kinema.engine.request_from_recipe(recipe, keyframes=_kf(0.5, image=str(png)))
    assert info.value.field == "keyframes" and "the recipe has 2 keyframes; 1 were given again" in info.value.message
    again = kinema.run(kinema.engine.request_from_recipe(recipe, keyframes=_kf(0.5, 1.5, image=str(png))))
    assert np.array_equal(again.video.frames, first.video.frames)
    # the command line: --from with the images given again makes the same frames
    res = runner.invoke(
        app,
        [
            "generate",
            "--from",
            str(first.path),
            "--keyframe",
            f"0.5={png}",
            "--keyframe",
            f"1.5={png}",
            "-o",
            str(tmp_path / "b.mp4"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert np.array_equal(kinema.Video.open(tmp_path / "b.mp4").frames, kinema.Video.open(first.path).frames)
    url = {"time": 1.0, "frame": 8, "image": "https://example.com/mid.png"}  # a URL is kept, and taken back as is
    assert kinema.engine.request_from_recipe({"prompt": "x", "keyframes": [url]}).keyframes[0].image == url["image"]


def test_cli_keyframe_flag(png: Path) -> None:
    res = runner.invoke(
        app, ["generate", PROMPT, "--keyframe", f"1={png}", "--keyframe", f"1.5={png}", "--plan", "--json"]
    )
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["mode"] == "keyframes" and [(k["time"], k["frame"]) for k in shown["keyframes"]] == [
        (1, 8),
        (1.5, 12),
    ]
    res = runner.invoke(app, ["generate", PROMPT, "--keyframe", f"1={png}", "--plan"])
    assert res.exit_code == 0 and "at 1s (frame 8)" in res.stdout
    for flag, field in (
        (f"1:{png}", "keyframes[0]"),
        (f"soon={png}", "keyframes[0]"),
        ("1=", "keyframes[0]"),
        ("3=/no/such.png", "keyframes[0].image"),
    ):
        res = runner.invoke(app, ["generate", PROMPT, "--keyframe", flag, "--plan"])
        assert res.exit_code == 2 and field in res.output, res.output
    res = runner.invoke(app, ["generate", PROMPT, "--keyframe", f"1={png}", "--backend", "runway", "--plan"])
    assert res.exit_code == 2 and "keyframes" in res.output and "builtin" in res.output, res.output


def test_batch_rows_take_keyframes_with_paths_relative_to_the_file(png: Path, tmp_path: Path) -> None:
    from kinema.batch import load_batch, row_key

    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "mid.png").write_bytes(png.read_bytes())
    (folder / "b.jsonl").write_text(json.dumps({"prompt": PROMPT, "seed": 1, "keyframes": _kf(1, image="mid.png")}))
    row = load_batch(folder / "b.jsonl")[0]
    assert row.request is not None and row.request.keyframes[0].image == str(folder / "mid.png")
    (folder / "b.csv").write_text('prompt,seed,keyframes\n"a ball",1,"[{""time"": 1.5, ""image"": ""mid.png""}]"\n')
    csv_row = load_batch(folder / "b.csv")[0]
    assert csv_row.request is not None and csv_row.request.keyframes[0].time == 1.5
    (folder / "mid.png").write_bytes(png.read_bytes() + b"\0")  # a changed image is another row
    assert row_key(load_batch(folder / "b.jsonl")[0].request) != row.key  # type: ignore[arg-type]
    (folder / "bad.jsonl").write_text(json.dumps({"prompt": PROMPT, "keyframes": _kf(1, 3, image="mid.png")}))
    with pytest.raises(InvalidRequest) as info:
        load_batch(folder / "bad.jsonl")
    assert info.value.field == "line 1.keyframes[1].time" and "past the end" in info.value.message
