"""VideoRequest validation and the backend Capabilities checks: every bad input names its field."""

from __future__ import annotations

import numpy as np
import pytest

import kinema
from kinema import InvalidRequest, VideoRequest
from kinema.backends.base import BaseBackend, Capabilities

BAD_REQUESTS = [
    # (fields, the field the error must name, a phrase the message must contain)
    ({"prompt": ""}, "prompt", "empty"),
    ({"prompt": "   \n\t "}, "prompt", "empty"),
    ({"prompt": "x" * 5001}, "prompt", "5000"),
    ({"prompt": "bad\x00byte"}, "prompt", "control character"),
    ({"prompt": "bell\x07"}, "prompt", "control character"),
    ({"prompt": "esc\x1b[31m"}, "prompt", "control character"),
    ({"prompt": 42}, "prompt", "text"),
    ({"prompt": None}, "prompt", "text"),
    ({"prompt": "ok", "negative_prompt": "a\x01"}, "negative_prompt", "control character"),
    ({"prompt": "ok", "negative_prompt": 3}, "negative_prompt", "text"),
    ({"prompt": "ok", "num_frames": 0}, "num_frames", "between 1 and 10000"),
    ({"prompt": "ok", "num_frames": -5}, "num_frames", "between 1 and 10000"),
    ({"prompt": "ok", "num_frames": 2.5}, "num_frames", "whole number"),
    ({"prompt": "ok", "num_frames": True}, "num_frames", "whole number"),
    ({"prompt": "ok", "num_frames": "many"}, "num_frames", "many"),
    ({"prompt": "ok", "duration": 0}, "duration", "more than 0"),
    ({"prompt": "ok", "duration": 10_000}, "duration", "600"),
    ({"prompt": "ok", "duration": float("nan")}, "duration", "finite"),
    ({"prompt": "ok", "fps": 0}, "fps", "between 1 and 240"),
    ({"prompt": "ok", "fps": 1000}, "fps", "between 1 and 240"),
    ({"prompt": "ok", "num_frames": 16, "duration": 5, "fps": 8}, "duration", "disagree"),
    ({"prompt": "ok", "num_frames": 16, "duration": 2}, "duration", "without fps"),
    ({"prompt": "ok", "width": 64}, "height", "together"),
    ({"prompt": "ok", "height": 64}, "width", "together"),
    ({"prompt": "ok", "width": 4, "height": 64}, "width", "between 8 and 8192"),
    ({"prompt": "ok", "width": 64, "height": 100_000}, "height", "between 8 and 8192"),
    ({"prompt": "ok", "width": 64, "height": 64, "aspect_ratio": "16:9"}, "aspect_ratio", "not both"),
    ({"prompt": "ok", "aspect_ratio": "5:1"}, "aspect_ratio", "16:9"),
    ({"prompt": "ok", "resolution": "8k"}, "resolution", "720p"),
    ({"prompt": "ok", "num_inference_steps": 0}, "num_inference_steps", "between 1 and 1000"),
    ({"prompt": "ok", "num_inference_steps": 5000}, "num_inference_steps", "between 1 and 1000"),
    ({"prompt": "ok", "guidance_scale": -1}, "guidance_scale", "between 0 and 100"),
    ({"prompt": "ok", "guidance_scale": float("inf")}, "guidance_scale", "finite"),
    ({"prompt": "ok", "seed": -2}, "seed", "-1 (random)"),
    ({"prompt": "ok", "seed": 2**40}, "seed", "between 0 and"),
    ({"prompt": "ok", "seed": 1.5}, "seed", "whole number"),
    ({"prompt": "ok", "format": "avi"}, "format", "mp4, webm, gif, png"),
    ({"prompt": "ok", "backend": ""}, "backend", "non-empty"),
    ({"prompt": "ok", "model": "  "}, "model", "non-empty"),
    ({"prompt": "ok", "image": "/no/such/file.png"}, "image", "file not found"),
    ({"prompt": "ok", "image": "ftp://example.com/x.png"}, "image", "scheme"),
    ({"prompt": "ok", "image": b""}, "image", "empty"),
    ({"prompt": "ok", "image": 12}, "image", "path, an http(s) URL"),
    ({"prompt": "ok", "image": np.zeros((4, 4), np.uint8)}, "image", "shape (H, W, 3)"),
    ({"prompt": "ok", "image": np.zeros((4, 4, 3), np.float32)}, "image", "uint8"),
    ({"prompt": "ok", "video": "/no/such/clip.mp4"}, "video", "file not found"),
    ({"prompt": "ok", "video": 3}, "video", "path of a video"),
    ({"prompt": "ok", "options": ["cache"]}, "options", "mapping"),
    ({"prompt": "ok", "promt": "typo"}, "promt", "not a known field"),
]


@pytest.mark.parametrize(
    ("fields", "field", "phrase"), BAD_REQUESTS, ids=[f"{i:02d}-{c[1]}" for i, c in enumerate(BAD_REQUESTS)]
)
def test_bad_request_names_its_field(fields: dict[str, object], field: str, phrase: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        VideoRequest(**fields)
    assert info.value.field == field
    assert info.value.message.startswith(f"{field}:")
    assert phrase in info.value.message


def test_there_are_at_least_30_distinct_bad_inputs() -> None:
    assert len({repr(f) for f, _, _ in BAD_REQUESTS}) >= 30


def test_image_and_video_together_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    with pytest.raises(InvalidRequest, match="^video: give either image"):
        VideoRequest(prompt="ok", image=str(f), video=str(f))


def test_good_request_keeps_values_and_trims_prompt() -> None:
    r = VideoRequest(prompt="  a red ball \n", num_frames=28, seed=-1, guidance_scale=3, fps=8)
    assert r.prompt == "a red ball"
    assert r.seed is None  # -1 means random
    assert r.num_frames == 28 and r.guidance_scale == 3.0
    assert r.mode == "t2v"


def test_prompt_keeps_newlines_and_tabs() -> None:
    assert VideoRequest(prompt="line one\n\tline two").prompt == "line one\n\tline two"


def test_duration_and_frames_that_agree_are_fine() -> None:
    r = VideoRequest(prompt="ok", num_frames=16, duration=2, fps=8)
    assert r.num_frames == 16


def test_recipe_names_bytes_images_by_hash() -> None:
    r = VideoRequest(prompt="ok", image=b"\x89PNG fake")
    assert r.recipe()["image"].startswith("sha256:")
    assert r.mode == "i2v"


class _Caps(BaseBackend):
    name = "capstest"

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            modes=("t2v",),
            default_size=(832, 480),
            size_multiple=16,
            min_size=256,
            max_size=1280,
            default_frames=81,
            min_frames=5,
            max_frames=121,
            frame_step=4,
            frame_offset=1,
            default_fps=16,
            default_steps=30,
            max_steps=100,
            max_guidance=20,
        )


CAPS_BAD = [
    ({"num_frames": 80}, "num_frames", "4k+1"),
    ({"num_frames": 200}, "num_frames", "5, 9, 13, ... up to 121 (4k+1: a multiple of 4, plus 1)"),
    ({"width": 830, "height": 480}, "width", "multiple of 16"),
    ({"width": 832, "height": 4000}, "height", "256 to 1280"),
    ({"num_inference_steps": 500}, "num_inference_steps", "1 to 100"),
    ({"guidance_scale": 50}, "guidance_scale", "0 to 20"),
    ({"image": b"png"}, "image", "does not support image-to-video"),
]


@pytest.mark.parametrize(("fields", "field", "phrase"), CAPS_BAD)
def test_capabilities_refuse_with_allowed_values(fields: dict[str, object], field: str, phrase: str) -> None:
    req = VideoRequest(prompt="ok", **fields)
    with pytest.raises(InvalidRequest) as info:
        _Caps().resolve(req, seed=1)
    assert info.value.field == field
    assert phrase in info.value.message
    assert "capstest" in info.value.message


def test_capabilities_fill_defaults_and_round_duration_up_to_the_frame_rule() -> None:
    p = _Caps().resolve(VideoRequest(prompt="ok", duration=3), seed=5)
    assert (p.width, p.height, p.fps, p.num_inference_steps) == (832, 480, 16, 30)
    assert p.num_frames == 49  # 48 frames rounded up to 4k+1
    p = _Caps().resolve(VideoRequest(prompt="ok", aspect_ratio="9:16", resolution="480p"), seed=5)
    assert (p.width, p.height) == (480, 848)


def test_fixed_durations_are_checked() -> None:
    class Fixed(BaseBackend):
        name = "fixed"

        def capabilities(self, model: str | None = None) -> Capabilities:
            return Capabilities(
                durations=(5.0, 10.0),
                default_fps=24,
                sizes=((1280, 720), (720, 1280)),
                default_size=(1280, 720),
                aspect_ratios=("16:9", "9:16"),
            )

    with pytest.raises(InvalidRequest, match="^duration: 7s is not offered.*5s, 10s"):
        Fixed().resolve(VideoRequest(prompt="ok", duration=7), seed=1)
    with pytest.raises(InvalidRequest, match="^size: 640x480 is not offered"):
        Fixed().resolve(VideoRequest(prompt="ok", width=640, height=480), seed=1)
    with pytest.raises(InvalidRequest, match="^aspect_ratio: '1:1' is not offered"):
        Fixed().resolve(VideoRequest(prompt="ok", aspect_ratio="1:1"), seed=1)
    p = Fixed().resolve(VideoRequest(prompt="ok", duration=10, aspect_ratio="9:16"), seed=1)
    assert (p.num_frames, p.width, p.height, p.aspect_ratio) == (240, 720, 1280, "9:16")


def test_builtin_refuses_sizes_and_frame_counts_it_cannot_make() -> None:
    with pytest.raises(InvalidRequest, match="^size: 64x64 is not offered by backend 'builtin'.*128x128"):
        kinema.generate("a red ball", width=64, height=64)
    with pytest.raises(InvalidRequest, match="^num_frames: 20 is not allowed.*12k\\+4"):
        kinema.generate("a red ball", num_frames=20)


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(InvalidRequest, match="^backend: unknown backend 'nope'.*builtin"):
        kinema.generate("ok", backend="nope")


def test_source_video_may_be_an_http_url_kept_as_given() -> None:
    url = "https://example.com/clips/street.mp4"
    request = VideoRequest(prompt="the same street at night", source_video=url, strength=0.3)
    assert request.source_video == url and request.mode == "edit"
    assert request.recipe()["source_video"] == url  # a URL is named as given, never fetched to digest it
    assert VideoRequest(prompt="x", source_video="http://example.com/a.mp4").source_video == "http://example.com/a.mp4"


@pytest.mark.parametrize(
    "fields, phrase",
    [
        ({"source_video": "ftp://example.com/a.mp4"}, "URL scheme of 'ftp'"),
        ({"source_video": "s3://bucket/a.mp4"}, "URL scheme of 's3'"),
        ({"source_video": 42}, "path of a video file or an http(s) URL"),
        ({"source_video": "/no/such/clip.mp4"}, "file not found"),
    ],
)
def test_source_video_refuses_other_urls_and_missing_files(fields: dict[str, object], phrase: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        VideoRequest(prompt="x", **fields)
    assert info.value.field == "source_video" and phrase in info.value.message


def test_video_to_extend_stays_a_local_file() -> None:
    # extension needs the clip's last frames on this machine: only source_video takes a URL
    with pytest.raises(InvalidRequest) as info:
        VideoRequest(prompt="x", video="https://example.com/a.mp4")
    assert info.value.field == "video" and "file not found" in info.value.message
