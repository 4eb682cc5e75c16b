"""The one generate path and the public API (the CLI's commands are tested in tests/cli)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import kinema


def test_public_api_is_pinned() -> None:
    assert sorted(kinema.__all__) == sorted(
        [
            "__version__",
            "generate",
            "plan",
            "Plan",
            "run",
            "finish",
            "Result",
            "VideoRequest",
            "Video",
            "read_metadata",
            "ProgressEvent",
            "CancelToken",
            "Backend",
            "BaseBackend",
            "BackendInfo",
            "Capabilities",
            "get_backend",
            "list_backends",
            "register_backend",
            "KinemaError",
            "InvalidRequest",
            "BackendUnavailable",
            "MissingExtra",
            "ModelNotFound",
            "ContentRejected",
            "ProviderError",
            "RateLimited",
            "ProviderTimeout",
            "Cancelled",
            "GenerationFailed",
            "RankLost",
        ]
    )
    for name in kinema.__all__:
        assert getattr(kinema, name) is not None


def test_error_tree() -> None:
    assert issubclass(kinema.RateLimited, kinema.ProviderError)
    assert issubclass(kinema.ProviderTimeout, kinema.ProviderError)
    assert issubclass(kinema.RankLost, kinema.GenerationFailed)  # a split run's dead rank: retried by the service
    for cls in (
        kinema.InvalidRequest,
        kinema.BackendUnavailable,
        kinema.ModelNotFound,
        kinema.ContentRejected,
        kinema.ProviderError,
        kinema.Cancelled,
        kinema.GenerationFailed,
    ):
        assert issubclass(cls, kinema.KinemaError)


def test_generate_records_recipe_seed_and_progress(tmp_path: Path) -> None:
    events: list[kinema.ProgressEvent] = []
    r = kinema.generate(
        "a red ball bouncing on green grass",
        seed=-1,
        num_inference_steps=3,
        output=tmp_path / "x.mp4",
        on_progress=events.append,
    )
    assert 0 <= r.seed < 2**32 and r.recipe["seed"] == r.seed
    assert r.recipe["prompt"] == "a red ball bouncing on green grass"
    assert r.recipe["backend"] == "builtin" and r.recipe["num_inference_steps"] == 3
    assert r.recipe["kinema_version"] == kinema.__version__
    assert set(r.timings) >= {"generate", "save", "total"}
    stages = [e.stage for e in events]
    assert "denoising" in stages and stages[-1] == "done"
    denoise = [e for e in events if e.stage == "denoising"]
    assert [e.step for e in denoise] == [1, 2, 3] and all(e.total == 3 for e in denoise)
    assert denoise[-1].eta == 0.0 and all(e.eta is not None for e in denoise)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert kinema.read_metadata(r.path)["seed"] == r.seed


def test_progress_eta_counts_a_stages_first_step() -> None:
    import time

    from kinema.progress import ProgressTracker

    events: list[kinema.ProgressEvent] = []
    track = ProgressTracker(events.append)
    track("loading", 1, 1)
    time.sleep(0.05)  # step 1 of denoising ran before its first event
    track("denoising", 1, 4)
    assert events[-1].eta is not None and events[-1].eta >= 3 * 0.05 * 0.9, events[-1]


def test_same_seed_same_frames_and_other_seed_differs() -> None:
    a = kinema.generate("a red ball", seed=11, num_inference_steps=2).video.frames
    b = kinema.generate("a red ball", seed=11, num_inference_steps=2).video.frames
    c = kinema.generate("a red ball", seed=12, num_inference_steps=2).video.frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_builtin_says_when_a_negative_prompt_cannot_act() -> None:
    plain = kinema.generate("a red ball", negative_prompt="green", guidance_scale=1.0, num_inference_steps=1)
    assert any("negative_prompt has no effect at guidance_scale 1" in w for w in plain.warnings)
    default = kinema.generate("a red ball", negative_prompt="green", num_inference_steps=1)
    assert not any("no effect" in w for w in default.warnings)


def test_builtin_camera_option_names_the_move_and_other_options_are_refused() -> None:
    from kinema.builtin import load_model, sampling_defaults
    from kinema.builtin.sampling import sample

    got = kinema.generate("a red ball", seed=4, num_inference_steps=2, options={"camera": "zoom_out"}).video.frames
    model, tok, info = load_model()
    guidance, interval = sampling_defaults(info)  # the checkpoint's own, as the backend samples with
    want = sample(
        model,
        tok,
        ["a red ball"],
        steps=2,
        seed=4,
        cameras=["zoom_out"],
        guidance=guidance,
        guidance_interval=interval,
    )[0]
    assert np.array_equal(got, want)
    with pytest.raises(kinema.InvalidRequest, match="options.camera: 'orbit' is not a camera move") as bad:
        kinema.generate("a red ball", options={"camera": "orbit"})
    assert "pan_left" in str(bad.value.allowed)
    with pytest.raises(kinema.InvalidRequest, match="options.fps_boost: is not an option of backend 'builtin'"):
        kinema.generate("a red ball", options={"fps_boost": 2})


def test_cancel_before_start_raises_cancelled() -> None:
    token = kinema.CancelToken()
    token.cancel()
    with pytest.raises(kinema.Cancelled):
        kinema.generate("a red ball", num_inference_steps=2, cancel=token)


def test_cancel_during_denoising_stops_within_a_step() -> None:
    token = kinema.CancelToken()
    seen: list[int] = []

    def on_progress(e: kinema.ProgressEvent) -> None:
        if e.stage == "denoising":
            seen.append(e.step)
            if e.step == 2:
                token.cancel()

    with pytest.raises(kinema.Cancelled):
        kinema.generate("a red ball", num_inference_steps=10, cancel=token, on_progress=on_progress)
    assert max(seen) <= 3


def test_image_to_video_keeps_the_given_first_frame() -> None:
    img = np.zeros((128, 128, 3), np.uint8)  # the built-in model's size: handed back as given
    img[:, :64] = (200, 30, 30)
    r = kinema.generate("a red ball", image=img, seed=1, num_inference_steps=2)
    assert np.array_equal(r.video.frames[0], img)
    assert r.recipe["mode"] == "i2v" and r.recipe["image"]["sha256"] == hashlib.sha256(img.tobytes()).hexdigest()


def test_duration_adjustment_reaches_result_warnings_and_the_recipe() -> None:
    """The rounding of a duration to the frame rule was on the plan only: Python, batches and the service never
    saw it (only the CLI printed it from the plan)."""
    r = kinema.generate("a red ball bouncing on green grass", duration=3, seed=1, num_inference_steps=1)
    assert r.video.num_frames == 28
    (warning,) = [w for w in r.warnings if w.startswith("duration: 3s")]
    assert "28 frames" in warning and warning in r.recipe["warnings"] and warning in r.to_dict()["warnings"]
    exact = kinema.generate("a red ball bouncing on green grass", duration=3.5, seed=1, num_inference_steps=1)
    assert exact.warnings == []


def test_recipe_names_inputs_by_digest_not_by_path(tmp_path: Path) -> None:
    """A recipe showed the path of its input image (a service's stored upload); it now shows the digest, which
    still identifies the input, and a re-run from the recipe asks for the file again."""
    from PIL import Image

    folder = tmp_path / "private-server-folder"
    folder.mkdir()
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = (30, 200, 30)
    src = folder / "start.png"
    Image.fromarray(img).save(src)
    data = src.read_bytes()
    r = kinema.generate("a green field", image=str(src), seed=4, num_inference_steps=2, output=tmp_path / "o.mp4")
    assert r.recipe["image"] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "name": "start.png"}
    assert str(folder) not in json.dumps(r.recipe)
    assert r.path is not None and str(folder) not in json.dumps(kinema.read_metadata(r.path), default=str)
    assert str(folder) not in (tmp_path / "o.mp4.json").read_text()

    with pytest.raises(kinema.InvalidRequest) as info:
        kinema.engine.request_from_recipe(r.recipe)
    assert info.value.field == "image" and "--image" in info.value.message
    assert hashlib.sha256(data).hexdigest() in info.value.message
    again = kinema.run(kinema.engine.request_from_recipe(r.recipe, image=str(src)))
    assert np.array_equal(again.video.frames, r.video.frames)  # the recipe plus its input reproduces the output

    ext = kinema.generate("a green field", video=str(r.path), seed=5, num_inference_steps=1)
    clip = r.path.read_bytes()
    assert ext.recipe["video"] == {"sha256": hashlib.sha256(clip).hexdigest(), "bytes": len(clip), "name": "o.mp4"}
    with pytest.raises(kinema.InvalidRequest, match="^video: .*--video"):
        kinema.engine.request_from_recipe(ext.recipe)
    url = kinema.engine.input_digest("https://example.com/a.png")
    assert url == "https://example.com/a.png"  # a URL is what the user gave, and anyone can fetch it


def test_extension_and_long_clips(tmp_path: Path) -> None:
    first = kinema.generate("a red ball", seed=2, num_inference_steps=2, output=tmp_path / "a.mp4")
    ext = kinema.generate("a red ball", video=str(first.path), seed=3, num_inference_steps=2)
    assert ext.recipe["mode"] == "extend" and ext.video.num_frames == 16
    long = kinema.generate("a red ball", num_frames=40, seed=4, num_inference_steps=2)
    assert long.video.num_frames == 40


def test_output_extension_and_format_must_agree(tmp_path: Path) -> None:
    with pytest.raises(kinema.InvalidRequest, match="^format: 'gif' disagrees"):
        kinema.generate("ok", format="gif", output=tmp_path / "a.mp4", num_inference_steps=1)
    with pytest.raises(kinema.InvalidRequest, match="^output: unknown video extension"):
        kinema.generate("ok", output=tmp_path / "a.mov2", num_inference_steps=1)


def test_backends_listing_says_why_not() -> None:
    infos = {i.name: i for i in kinema.list_backends()}
    assert infos["builtin"].usable and infos["builtin"].default
    for info in infos.values():
        assert info.usable or info.reason
