"""The cloud providers' edit, keyframe and reference endpoints (docs/providers.md, "Editing, keyframes and
references"), each against its provider's fake: what goes over the wire, and every refusal made before a paid call
(the fake then saw no request at all).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema import engine
from kinema.errors import InvalidRequest
from kinema.request import VideoRequest

from .cases import CASES, FAST, Case

PROMPT = "the same street at night, neon signs glowing"
CASE = {c.backend: c for c in CASES}


@pytest.fixture
def start(video_bytes: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """start(backend) -> the provider's fake, running, with the SDK pointed at it."""
    fakes: list[Any] = []

    def _start(backend: str) -> Any:
        case: Case = CASE[backend]
        fake = case.fake(video_bytes)
        fakes.append(fake)
        for var, value in case.env(fake, tmp_path).items():
            monkeypatch.setenv(var, value)
        return fake

    yield _start
    for fake in fakes:
        fake.close()


def _clip(tmp_path: Path, seconds: float = 2.0, fps: float = 8.0, name: str = "source.mp4") -> Path:
    """A small real clip to edit: frames that differ, so a decode is a real decode."""
    n = int(round(seconds * fps))
    frames = np.zeros((n, 64, 96, 3), np.uint8)
    frames[..., 2] = (np.arange(n, dtype=np.uint8) * 7)[:, None, None]
    path = tmp_path / name
    kinema.Video(frames, fps=fps).save(path)
    return path


def _png(tmp_path: Path, name: str, shade: int = 0) -> str:
    from PIL import Image

    arr = np.full((64, 64, 3), shade, np.uint8)
    arr[:, :, 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    path = tmp_path / name
    Image.fromarray(arr).save(path)
    return str(path)


def _run(tmp_path: Path, **fields: Any) -> kinema.Result:
    options = {**FAST, **fields.pop("options", {})}
    request = kinema.VideoRequest(prompt=fields.pop("prompt", PROMPT), seed=7, options=options, **fields)
    return engine.run(request, output=tmp_path / "out.mp4")


def _refused(tmp_path: Path, fake: Any, field: str, **fields: Any) -> InvalidRequest:
    """The request is refused naming ``field``, before any request reaches the provider."""
    with pytest.raises(InvalidRequest) as info:
        _run(tmp_path, **fields)
    assert info.value.field == field, info.value
    assert fake.log == [], "nothing may reach the provider before a refusal"
    assert fake.submissions == 0
    return info.value


def _runway_post(fake: Any, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """A raw call to the Runway fake (bodies the SDK's types would not let through)."""
    import httpx

    from fakes.runway import VERSION

    answer = httpx.post(
        fake.url + path, json=body, headers={"Authorization": f"Bearer {fake.key}", "X-Runway-Version": VERSION}
    )
    return answer.status_code, answer.json()


def _data_uri_bytes(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


def _generate_planned(**fields: Any) -> Any:
    """Plan a request and run its backend, without the engine's input loading: the engine does not fetch a
    source_video given as a URL yet (docs/editing.md), and a provider that takes the URL needs no frames."""
    from kinema.backends.base import GenerationContext
    from kinema.progress import ProgressTracker

    request = kinema.VideoRequest(prompt=PROMPT, seed=7, options=FAST, **fields)
    the_plan = kinema.plan(request)
    output = the_plan.backend.generate(the_plan.params, GenerationContext(progress=ProgressTracker(None)))
    return the_plan, output


CLIP_URL = "https://example.com/clips/street.mp4"


# -- Runway: aleph2 edits (video_to_video) --------------------------------------------------------------------------


def test_runway_edit_sends_the_clip_to_video_to_video(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    clip = _clip(tmp_path, seconds=2.0, fps=8.0)
    result = _run(tmp_path, backend="runway", source_video=str(clip))  # no model: aleph2 is the edit model
    assert fake.submissions == 1 and result.path is not None
    (task,) = fake.tasks.values()
    body = task.input
    assert body["model"] == "aleph2" and body["promptText"] == PROMPT and body["seed"] == 7
    assert "ratio" not in body and "duration" not in body  # the output keeps the source's framing and length
    assert body["videoUri"].startswith("data:video/mp4;base64,")
    assert _data_uri_bytes(body["videoUri"]) == clip.read_bytes()
    assert [r.path for r in fake.log if r.method == "POST"] == ["/v1/video_to_video"]
    assert result.recipe["mode"] == "edit" and result.recipe["model"] == "aleph2"
    assert result.recipe["num_frames"] == 16 and result.recipe["width"] == 96 and result.recipe["height"] == 64
    assert result.recipe["strength"] is None  # aleph2 has no strength: none is recorded (not a default it ignores)
    planned = kinema.plan(VideoRequest(prompt=PROMPT, backend="runway", source_video=str(clip), seed=7))
    assert planned.params.strength is None and ", strength" not in str(planned)


def test_runway_edit_uploads_a_clip_too_large_for_a_data_uri(
    start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinema.backends.runway as runway

    fake = start("runway")
    clip = _clip(tmp_path)
    monkeypatch.setattr(runway, "DATA_URI_LIMIT", 1000)  # stands in for a clip over Runway's 5 MB
    _run(tmp_path, backend="runway", source_video=str(clip))
    (task,) = fake.tasks.values()
    uri = task.input["videoUri"]
    assert uri.startswith("runway://") and fake.uploads[uri] == ("source.mp4", clip.read_bytes())
    assert [r.path for r in fake.log if r.method == "POST"][0] == "/v1/uploads"  # uploaded before the paid call


def test_runway_edit_refuses_a_strength(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    err = _refused(tmp_path, fake, "strength", backend="runway", source_video=str(_clip(tmp_path)), strength=0.3)
    assert "no strength" in err.message


@pytest.mark.parametrize("field, value", [("duration", 5), ("aspect_ratio", "16:9")])
def test_runway_edit_refuses_a_length_or_size(start: Any, tmp_path: Path, field: str, value: Any) -> None:
    fake = start("runway")
    _refused(tmp_path, fake, field, backend="runway", source_video=str(_clip(tmp_path)), **{field: value})


def test_runway_edit_refuses_a_source_clip_outside_aleph2s_length(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    err = _refused(tmp_path, fake, "source_video", backend="runway", source_video=str(_clip(tmp_path, seconds=1.0)))
    assert "2 to 30 s" in err.message


def test_runway_edit_refuses_a_clip_given_by_url(start: Any, tmp_path: Path) -> None:
    """aleph2's limits are checked on a local file before the paid call: a URL is refused, saying so."""
    fake = start("runway")
    err = _refused(tmp_path, fake, "source_video", backend="runway", source_video="https://example.invalid/c.mp4")
    assert "local file" in err.message


def test_runway_edit_refuses_a_model_without_video_to_video(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    _refused(tmp_path, fake, "source_video", backend="runway", model="gen4.5", source_video=str(_clip(tmp_path)))


def test_runway_gen4_aleph_is_retired_locally_and_at_the_fake(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    err = _refused(tmp_path, fake, "model", backend="runway", model="gen4_aleph", source_video=str(_clip(tmp_path)))
    assert "aleph2" in err.message
    status, answer = _runway_post(
        fake, "/v1/video_to_video", {"model": "gen4_aleph", "videoUri": "https://example.com/a.mp4", "promptText": "x"}
    )
    assert status == 400 and "gen4_aleph" in answer["error"]
    status, answer = _runway_post(
        fake,
        "/v1/video_to_video",  # a strength is not a field of aleph2
        {"model": "aleph2", "videoUri": "https://example.com/a.mp4", "strength": 0.5},
    )
    assert status == 400 and "strength" in answer["error"]
    assert fake.submissions == 0


# -- Runway: first and last frames (promptImage positions) ---------------------------------------------------------


def test_runway_keyframes_send_first_and_last_positions(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    first, last = _png(tmp_path, "first.png", 0), _png(tmp_path, "last.png", 200)
    result = _run(tmp_path, backend="runway", image=first, last_image=last, duration=4)  # no model: veo3.1
    (task,) = fake.tasks.values()
    assert task.input["model"] == "veo3.1" and result.recipe["mode"] == "keyframes"
    images = task.input["promptImage"]
    assert [i["position"] for i in images] == ["first", "last"]
    assert all(i["uri"].startswith("data:image/png;base64,") for i in images)
    assert _data_uri_bytes(images[1]["uri"]) != _data_uri_bytes(images[0]["uri"])


def test_runway_keyframes_refuse_a_last_frame_alone(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    _refused(
        tmp_path,
        fake,
        "image",
        backend="runway",
        model="veo3.1_fast",
        duration=4,
        last_image=_png(tmp_path, "last.png"),
    )


def test_runway_keyframes_refused_by_a_first_frame_only_model(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    _refused(
        tmp_path,
        fake,
        "last_image",
        backend="runway",
        model="gen4.5",
        image=_png(tmp_path, "a.png"),
        last_image=_png(tmp_path, "b.png"),
    )


def test_runway_fake_refuses_a_last_position_where_the_model_has_none(start: Any) -> None:
    fake = start("runway")
    frame = "https://example.com/frame.png"
    both = [{"uri": frame, "position": "first"}, {"uri": frame, "position": "last"}]
    status, answer = _runway_post(
        fake, "/v1/image_to_video", {"model": "gen4_turbo", "ratio": "1280:720", "duration": 5, "promptImage": both}
    )
    assert status == 400 and "'last' is not supported by gen4_turbo" in answer["error"]
    status, answer = _runway_post(
        fake, "/v1/image_to_video", {"model": "veo3.1", "ratio": "1280:720", "duration": 4, "promptImage": both[1:]}
    )
    assert status == 400 and "only a last frame" in answer["error"]
    assert fake.submissions == 0


def test_runway_refuses_references(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    _refused(tmp_path, fake, "references", backend="runway", references=[_png(tmp_path, "ref.png")])


# -- Kling: image_tail (keyframes) and multi-image2video (references) ---------------------------------------------


def _raw_png_b64(path: str) -> str:
    """What the backend sends for a local image: the PNG re-encoded, as raw base64."""
    from kinema.backends.remote import encode_png
    from kinema.media.io import load_image

    return base64.b64encode(encode_png(load_image(path))).decode("ascii")


def test_kling_keyframes_send_image_tail_in_mode_pro(start: Any, tmp_path: Path) -> None:
    fake = start("kling")
    first, last = _png(tmp_path, "first.png", 0), _png(tmp_path, "last.png", 200)
    result = _run(tmp_path, backend="kling", image=first, last_image=last, duration=5)
    (task,) = fake.tasks.values()
    body = task.input
    assert task.extra["family"] == "image2video" and body["model_name"] == "kling-v2-6"
    assert body["image"] == _raw_png_b64(first) and body["image_tail"] == _raw_png_b64(last)
    assert body["mode"] == "pro"  # the only mode kling-v2-6 takes a last frame in: 1080p by default
    assert (result.recipe["width"], result.recipe["height"]) == (1920, 1080)
    assert result.recipe["mode"] == "keyframes"


def test_kling_keyframes_last_frame_alone_on_v1_6(start: Any, tmp_path: Path) -> None:
    fake = start("kling")
    _run(tmp_path, backend="kling", model="kling-v1-6", last_image=fake.image_url, duration=10)
    (task,) = fake.tasks.values()
    assert "image" not in task.input and task.input["image_tail"] == fake.image_url
    assert task.input["mode"] == "pro" and task.input["duration"] == "10"


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"model": "kling-v2-6"}, "image"),  # a last frame alone: kling-v1-6 only
        ({"model": "kling-v2-6", "image": "F", "resolution": "720p"}, "resolution"),  # std: no tail
        ({"model": "kling-v1", "image": "F", "duration": 10}, "duration"),  # kling-v1 takes a tail at 5 s only
        ({"model": "kling-v2-master", "image": "F"}, "last_image"),  # no start/end frames at all
        ({"model": "kling-v2-6", "image": "F", "options": {"sound": "on"}}, "options.sound"),
        (
            {"model": "kling-v2-5-turbo", "image": "F", "options": {"camera_control": {"type": "simple"}}},
            "options.camera_control",
        ),
    ],
)
def test_kling_keyframes_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("kling")
    if fields.get("image") == "F":
        fields["image"] = _png(tmp_path, "first.png")
    _refused(tmp_path, fake, field, backend="kling", last_image=_png(tmp_path, "last.png"), **fields)


def test_kling_references_go_to_multi_image2video(start: Any, tmp_path: Path) -> None:
    fake = start("kling")
    local = _png(tmp_path, "style.png", 90)
    result = _run(tmp_path, backend="kling", references=[fake.image_url, local], duration=5)
    (task,) = fake.tasks.values()
    assert task.extra["family"] == "multi-image2video" and task.input["model_name"] == "kling-v1-6"
    assert task.input["image_list"] == [{"image": fake.image_url}, {"image": _raw_png_b64(local)}]
    assert result.recipe["mode"] == "references"
    polls = [r.path for r in fake.log if r.method == "GET" and "/v1/videos/" in r.path]
    assert polls and all(p.startswith("/v1/videos/multi-image2video/") for p in polls)


def test_kling_references_refuse_more_than_four(start: Any, tmp_path: Path) -> None:
    fake = start("kling")
    refs = [_png(tmp_path, f"r{i}.png", i * 40) for i in range(5)]
    err = _refused(tmp_path, fake, "references", backend="kling", references=refs)
    assert "at most 4" in err.message


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"model": "kling-v2-6"}, "references"),  # multi-image2video is kling-v1-6 only
        ({"options": {"cfg_scale": 0.5}}, "options.cfg_scale"),  # not a field of multi-image2video
    ],
)
def test_kling_references_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("kling")
    _refused(tmp_path, fake, field, backend="kling", references=[_png(tmp_path, "ref.png")], **fields)


@pytest.mark.parametrize(
    "body, words",
    [
        ({"image_list": [{"image": "https://e.com/a.png"}] * 5}, "1 to 4"),
        ({"image_list": [{"image": "data:image/png;base64,AAAA"}]}, "without data: prefix"),
        ({"image_list": [{"image": "https://e.com/a.png"}], "cfg_scale": 0.5}, "cfg_scale"),
        ({"image_list": [{"image": "https://e.com/a.png"}], "model_name": "kling-v2-6"}, "model_name"),
    ],
)
def test_kling_fake_refuses_what_multi_image2video_refuses(start: Any, body: dict[str, Any], words: str) -> None:
    from kinema.backends.kling import KlingBackend
    from kinema.errors import ProviderError

    fake = start("kling")
    backend = KlingBackend()
    client = backend.make_client(backend.loop_options({}))
    with pytest.raises(ProviderError) as info:
        backend._request(client, "POST", "/v1/videos/multi-image2video", {"prompt": PROMPT, **body})
    assert words in info.value.message and fake.submissions == 0


# -- Luma: keyframes.frame0 / frame1 --------------------------------------------------------------------------------


def test_luma_keyframes_send_frame0_and_frame1(start: Any, tmp_path: Path) -> None:
    fake = start("luma")
    last = fake.image_url + "?last"
    result = _run(tmp_path, backend="luma", image=fake.image_url, last_image=last, duration=5)
    (task,) = fake.tasks.values()
    assert task.input["keyframes"] == {
        "frame0": {"type": "image", "url": fake.image_url},
        "frame1": {"type": "image", "url": last},
    }
    assert result.recipe["mode"] == "keyframes"


def test_luma_keyframes_last_frame_alone(start: Any, tmp_path: Path) -> None:
    fake = start("luma")
    _run(tmp_path, backend="luma", last_image=fake.image_url, duration=5)
    (task,) = fake.tasks.values()
    assert task.input["keyframes"] == {"frame1": {"type": "image", "url": fake.image_url}}


def test_luma_keyframes_refuse_a_local_last_frame(start: Any, tmp_path: Path) -> None:
    fake = start("luma")
    err = _refused(
        tmp_path, fake, "last_image", backend="luma", image=fake.image_url, last_image=_png(tmp_path, "last.png")
    )
    assert "public URL" in err.message


@pytest.mark.parametrize(
    "fields, field",
    [
        (
            {"source_video": "CLIP"},
            "source_video",
        ),  # modify-video takes the clip as a URL only: a local file is refused
        ({"references": ["REF"]}, "references"),
    ],
)
def test_luma_refuses_edit_and_references(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("luma")
    if "source_video" in fields:
        fields["source_video"] = str(_clip(tmp_path))
    else:
        fields["references"] = [fake.image_url]
    _refused(tmp_path, fake, field, backend="luma", **fields)


@pytest.mark.parametrize(
    "strength, mode",
    [
        (0.0, "adhere_1"),
        (0.2, "adhere_2"),
        (0.5, "flex_2"),
        (0.75, "reimagine_1"),
        (1.0, "reimagine_3"),
        (None, "flex_2"),  # no strength: the middle mode (Luma's API has no default)
    ],
)
def test_luma_edit_from_a_url_goes_to_modify_video(start: Any, strength: float | None, mode: str) -> None:
    fake = start("luma")
    the_plan, output = _generate_planned(backend="luma", source_video=CLIP_URL, strength=strength)
    (task,) = fake.tasks.values()
    body = task.input
    assert [r.path for r in fake.log if r.method == "POST"] == ["/dream-machine/v1/generations/video/modify"]
    assert body["media"] == {"url": CLIP_URL} and body["mode"] == mode and body["model"] == "ray-2"
    assert body["generation_type"] == "modify_video" and body["prompt"] == PROMPT
    assert not {"duration", "aspect_ratio", "resolution", "keyframes"} & set(body)  # the output keeps the source's
    assert the_plan.params.mode == "edit" and the_plan.params.strength == (0.5 if strength is None else strength)
    assert any("nominal" in w for w in the_plan.params.warnings)
    assert output.provider_task_id == task.id


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"duration": 9}, "duration"),  # modify-video keeps the source's length and framing: these would be dropped
        ({"aspect_ratio": "9:16"}, "aspect_ratio"),
        ({"width": 640, "height": 360}, "width"),
    ],
)
def test_luma_edit_refuses_a_length_or_size(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("luma")
    _refused(tmp_path, fake, field, backend="luma", source_video=CLIP_URL, **fields)


@pytest.mark.parametrize("backend", ["luma", "replicate", "fal"])
def test_a_url_edit_is_rebuilt_from_its_recorded_request(start: Any, backend: str) -> None:
    """`kinema resume` rebuilds the request from the recorded one, which carries the plan's size and length: they
    are the nominal ones, so the rebuilt edit plans again, with its strength."""
    from kinema.backends.remote import _request_record

    start(backend)
    first = kinema.plan(
        kinema.VideoRequest(prompt=PROMPT, backend=backend, source_video=CLIP_URL, strength=0.3, seed=7, options=FAST)
    )
    record = _request_record(first.params)
    assert record["source_video"] == CLIP_URL and record["strength"] == 0.3
    again = kinema.plan(kinema.VideoRequest(**{k: v for k, v in record.items() if v is not None}))
    assert again.params.mode == "edit" and again.params.strength == 0.3 and again.params.model == first.params.model
    assert (again.params.width, again.params.num_frames) == (first.params.width, first.params.num_frames)


@pytest.mark.parametrize(
    "body, words",
    [
        ({"media": {"url": "data:video/mp4;base64,AAAA"}, "mode": "flex_1"}, "media.url"),
        ({"media": {"url": CLIP_URL}, "mode": "flex_4"}, "mode"),
        ({"media": {"url": CLIP_URL}}, "mode"),
    ],
)
def test_luma_fake_refuses_a_malformed_modify(start: Any, body: dict[str, Any], words: str) -> None:
    import httpx

    fake = start("luma")
    answer = httpx.post(
        fake.url + "/dream-machine/v1/generations/video/modify",
        json={"generation_type": "modify_video", "model": "ray-2", "prompt": PROMPT, **body},
        headers={"Authorization": f"Bearer {fake.key}"},
    )
    assert answer.status_code == 400 and words in answer.json()["detail"]
    assert fake.submissions == 0


def test_luma_fake_refuses_a_malformed_frame1(start: Any) -> None:
    import httpx

    fake = start("luma")
    url = fake.url + "/dream-machine/v1/generations/video"
    for keyframes in (
        {"frame1": {"type": "image", "url": "data:image/png;base64,AAAA"}},
        {"frame2": {"type": "image", "url": fake.image_url}},
    ):
        answer = httpx.post(
            url,
            json={"model": "ray-2", "prompt": PROMPT, "keyframes": keyframes},
            headers={"Authorization": f"Bearer {fake.key}"},
        )
        assert answer.status_code == 400 and "keyframes" in answer.json()["detail"]
    assert fake.submissions == 0


# -- fal: Kling 2.5 Turbo Pro's tail_image_url ---------------------------------------------------------------------


def test_fal_keyframes_send_tail_image_url(start: Any, tmp_path: Path) -> None:
    fake = start("fal")
    first, last = _png(tmp_path, "first.png", 0), _png(tmp_path, "last.png", 200)
    result = _run(tmp_path, backend="fal", image=first, last_image=last, duration=5)
    (task,) = fake.tasks.values()
    assert task.extra["endpoint"] == "fal-ai/kling-video/v2.5-turbo/pro/image-to-video"
    assert task.input["image_url"].startswith("data:image/png;base64,")
    assert task.extra["tail"].startswith("data:image/png;base64,")
    assert _data_uri_bytes(task.extra["tail"]) != _data_uri_bytes(task.input["image_url"])
    assert result.recipe["mode"] == "keyframes"


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"model": "fal-ai/kling-video/v2.1/master", "image": "F"}, "last_image"),  # its page lists no tail
        ({"model": "fal-ai/kling-video/v2.5-turbo/pro/text-to-video", "image": "F"}, "last_image"),
        ({}, "image"),  # image_url is required on the endpoint: no last frame alone
    ],
)
def test_fal_keyframes_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("fal")
    if fields.get("image") == "F":
        fields["image"] = _png(tmp_path, "first.png")
    _refused(tmp_path, fake, field, backend="fal", last_image=_png(tmp_path, "last.png"), **fields)


# -- fal: Wan 2.2 video-to-video (edit), Kling 1.6 elements (references) ------------------------------------------


def _fal_post(fake: Any, endpoint: str, body: dict[str, Any]) -> tuple[int, Any]:
    """A raw call to the fal fake (bodies Kinema itself would refuse before sending)."""
    import httpx

    answer = httpx.post(f"{fake.url}/{endpoint}", json=body, headers={"Authorization": f"Key {fake.key}"})
    return answer.status_code, answer.json()


def test_fal_edit_sends_the_clip_and_strength_to_wan_video_to_video(start: Any, tmp_path: Path) -> None:
    fake = start("fal")
    clip = _clip(tmp_path)
    result = _run(tmp_path, backend="fal", source_video=str(clip), strength=0.35, num_frames=33)  # no model: Wan
    (task,) = fake.tasks.values()
    body = task.input
    assert task.extra["endpoint"] == "fal-ai/wan/v2.2-a14b/video-to-video"
    assert body["video_url"].startswith("data:video/mp4;base64,")
    assert _data_uri_bytes(body["video_url"]) == clip.read_bytes()
    assert body["strength"] == 0.35 and body["num_frames"] == 33 and body["frames_per_second"] == 16
    assert body["num_interpolated_frames"] == 0 and body["seed"] == 7
    assert body["resolution"] == "720p" and body["aspect_ratio"] == "16:9"
    assert result.recipe["mode"] == "edit" and result.recipe["strength"] == 0.35
    assert result.recipe["model"] == "fal-ai/wan/v2.2-a14b"


def test_fal_edit_records_fals_default_strength(start: Any, tmp_path: Path) -> None:
    fake = start("fal")
    result = _run(tmp_path, backend="fal", source_video=str(_clip(tmp_path)))
    (task,) = fake.tasks.values()
    assert task.input["strength"] == 0.9 and result.recipe["strength"] == 0.9  # what Wan would use anyway
    assert task.input["num_frames"] == 81


def test_fal_edit_passes_a_url_as_given(start: Any) -> None:
    fake = start("fal")
    _generate_planned(backend="fal", source_video=CLIP_URL, strength=0.5)
    (task,) = fake.tasks.values()
    assert task.input["video_url"] == CLIP_URL and task.input["strength"] == 0.5


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"num_frames": 200}, "num_frames"),  # Wan makes 17 to 161 frames
        ({"num_frames": 9}, "num_frames"),
        ({"fps": 12.5}, "fps"),  # frames_per_second is a whole number
        ({"fps": 90}, "fps"),
        ({"model": "fal-ai/kling-video/v2.5-turbo/pro"}, "source_video"),  # no edit endpoint in that family
        ({"options": {"cfg_scale": 0.5}}, "options.cfg_scale"),
    ],
)
def test_fal_edit_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("fal")
    _refused(tmp_path, fake, field, backend="fal", source_video=str(_clip(tmp_path)), **fields)


def test_fal_edit_refuses_a_clip_too_large_to_send_inline(
    start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinema.backends.fal as fal

    fake = start("fal")
    monkeypatch.setattr(fal, "VIDEO_DATA_URI_LIMIT", 1000)  # stands in for a clip over 10 MB
    err = _refused(tmp_path, fake, "source_video", backend="fal", source_video=str(_clip(tmp_path)))
    assert "URL" in err.message


def test_fal_references_go_to_kling_elements(start: Any, tmp_path: Path) -> None:
    fake = start("fal")
    local = _png(tmp_path, "style.png", 90)
    # the fake's image is served over http: re-sent inline, as only https URLs are passed on as given
    result = _run(tmp_path, backend="fal", references=[fake.image_url, local], duration=10, aspect_ratio="9:16")
    (task,) = fake.tasks.values()
    assert task.extra["endpoint"] == "fal-ai/kling-video/v1.6/standard/elements"
    images = task.input["input_image_urls"]
    assert len(images) == 2 and all(i.startswith("data:image/png;base64,") for i in images)
    assert _data_uri_bytes(images[0]) != _data_uri_bytes(images[1])
    assert task.input["duration"] == "10" and task.input["aspect_ratio"] == "9:16"
    assert "image_url" not in task.input and result.recipe["mode"] == "references"


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"references": 5}, "references"),  # up to 4 images
        ({"options": {"cfg_scale": 0.5}}, "options.cfg_scale"),  # not a field of the elements endpoint
        ({"model": "fal-ai/pika/v2.2"}, "references"),
        ({"duration": 7}, "duration"),
    ],
)
def test_fal_references_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("fal")
    count = fields.pop("references", 1)
    refs = [_png(tmp_path, f"r{i}.png", i * 40) for i in range(count)]
    _refused(tmp_path, fake, field, backend="fal", references=refs, **fields)


@pytest.mark.parametrize(
    "endpoint, body, loc",
    [
        ("fal-ai/wan/v2.2-a14b/video-to-video", {}, "video_url"),
        ("fal-ai/wan/v2.2-a14b/video-to-video", {"video_url": "data:image/png;base64,AAAA"}, "video_url"),
        ("fal-ai/wan/v2.2-a14b/video-to-video", {"video_url": "https://e.com/a.mp4", "strength": 1.5}, "strength"),
        ("fal-ai/wan/v2.2-a14b/video-to-video", {"video_url": "https://e.com/a.mp4", "num_frames": 200}, "num_frames"),
        (
            "fal-ai/wan/v2.2-a14b/video-to-video",
            {"video_url": "https://e.com/a.mp4", "resolution": "1080p"},
            "resolution",
        ),
        ("fal-ai/kling-video/v1.6/standard/elements", {}, "input_image_urls"),
        (
            "fal-ai/kling-video/v1.6/standard/elements",
            {"input_image_urls": ["https://e.com/a.png"] * 5},
            "input_image_urls",
        ),
    ],
)
def test_fal_fake_refuses_bad_edit_and_elements_bodies(
    start: Any, endpoint: str, body: dict[str, Any], loc: str
) -> None:
    fake = start("fal")
    status, answer = _fal_post(fake, endpoint, {"prompt": PROMPT, **body})
    assert status == 422 and answer["detail"][0]["loc"] == ["body", loc]
    assert fake.submissions == 0


# -- Replicate: kwaivgi/kling-v2.1's end_image ---------------------------------------------------------------------


def test_replicate_keyframes_send_end_image_in_pro_mode(start: Any, tmp_path: Path) -> None:
    fake = start("replicate")
    first, last = _png(tmp_path, "first.png", 0), _png(tmp_path, "last.png", 200)
    result = _run(tmp_path, backend="replicate", image=first, last_image=last, duration=5)
    (task,) = fake.tasks.values()
    assert task.extra["model"] == "kwaivgi/kling-v2.1" and task.input["mode"] == "pro"
    assert task.input["start_image"].startswith("data:image/png;base64,")
    assert _data_uri_bytes(task.input["end_image"]) != _data_uri_bytes(task.input["start_image"])
    assert (result.recipe["width"], result.recipe["height"]) == (1920, 1080)


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"image": "F", "resolution": "720p"}, "resolution"),  # end_image needs pro mode
        ({}, "image"),  # start_image is required
        ({"model": "minimax/video-01", "image": "F"}, "last_image"),
    ],
)
def test_replicate_keyframes_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("replicate")
    if fields.get("image") == "F":
        fields["image"] = _png(tmp_path, "first.png")
    _refused(tmp_path, fake, field, backend="replicate", last_image=_png(tmp_path, "last.png"), duration=5, **fields)


def test_replicate_fake_refuses_end_image_outside_pro_mode(start: Any) -> None:
    import replicate

    fake = start("replicate")
    client = replicate.Client(api_token=fake.key, base_url=fake.url)
    with pytest.raises(replicate.exceptions.ReplicateError) as info:
        client.models.predictions.create(
            model="kwaivgi/kling-v2.1",
            input={
                "prompt": PROMPT,
                "start_image": "https://e.com/a.png",
                "end_image": "https://e.com/b.png",
                "mode": "standard",
            },
        )
    assert "pro" in str(info.value) and fake.submissions == 0


# -- Replicate: luma/modify-video (edit) ---------------------------------------------------------------------------


def test_replicate_edit_uploads_the_clip_then_runs_modify_video(start: Any, tmp_path: Path) -> None:
    fake = start("replicate")
    clip = _clip(tmp_path, seconds=2.0, fps=8.0)
    result = _run(tmp_path, backend="replicate", source_video=str(clip), strength=0.8)  # no model: modify-video
    (task,) = fake.tasks.values()
    assert task.extra["model"] == "luma/modify-video"
    assert task.input["mode"] == "reimagine_2" and task.input["prompt"] == PROMPT
    assert fake.uploads[task.input["video"]] == ("source.mp4", clip.read_bytes())
    posts = [r.path for r in fake.log if r.method == "POST"]
    assert posts == ["/v1/files", "/v1/models/luma/modify-video/predictions"]  # uploaded before the paid create
    assert "seed" not in task.input and "duration" not in task.input
    assert result.recipe["mode"] == "edit" and result.recipe["strength"] == 0.8
    assert (result.recipe["width"], result.recipe["height"], result.recipe["num_frames"]) == (96, 64, 16)


def test_replicate_edit_passes_a_url_as_given(start: Any) -> None:
    fake = start("replicate")
    the_plan, _ = _generate_planned(backend="replicate", source_video=CLIP_URL)
    (task,) = fake.tasks.values()
    assert task.input["video"] == CLIP_URL and task.input["mode"] == "flex_2"  # the default strength, 0.5
    assert fake.uploads == {} and the_plan.params.strength == 0.5


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"duration": 5}, "duration"),  # the output keeps the source's length and framing
        ({"resolution": "720p"}, "resolution"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"model": "minimax/video-01"}, "source_video"),  # no edit input
    ],
)
def test_replicate_edit_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("replicate")
    _refused(tmp_path, fake, field, backend="replicate", source_video=str(_clip(tmp_path)), **fields)


def test_replicate_edit_refuses_a_clip_over_30_seconds(start: Any, tmp_path: Path) -> None:
    fake = start("replicate")
    err = _refused(
        tmp_path, fake, "source_video", backend="replicate", source_video=str(_clip(tmp_path, seconds=31.0, fps=1.0))
    )
    assert "30 s" in err.message


@pytest.mark.parametrize(
    "inputs, words",
    [
        ({"mode": "flex_9", "video": "https://e.com/a.mp4"}, "mode"),
        ({"mode": "flex_1"}, "video is required"),
    ],
)
def test_replicate_fake_refuses_what_modify_video_refuses(start: Any, inputs: dict[str, Any], words: str) -> None:
    import replicate

    fake = start("replicate")
    client = replicate.Client(api_token=fake.key, base_url=fake.url)
    with pytest.raises(replicate.exceptions.ReplicateError) as info:
        client.models.predictions.create(model="luma/modify-video", input={"prompt": PROMPT, **inputs})
    assert words in str(info.value) and fake.submissions == 0


# -- Replicate: kwaivgi/kling-o1 (references) ----------------------------------------------------------------------


def test_replicate_references_go_to_kling_o1(start: Any, tmp_path: Path) -> None:
    fake = start("replicate")
    local = _png(tmp_path, "style.png", 90)
    result = _run(tmp_path, backend="replicate", references=[fake.image_url, local], duration=10)  # no model: o1
    (task,) = fake.tasks.values()
    assert task.extra["model"] == "kwaivgi/kling-o1"
    images = task.input["reference_images"]
    assert len(images) == 2 and all(i.startswith("data:image/png;base64,") for i in images)
    assert _data_uri_bytes(images[0]) != _data_uri_bytes(images[1])
    assert task.input["mode"] == "std" and task.input["duration"] == 10  # 720p is std (o1's own word, not standard)
    assert "start_image" not in task.input and result.recipe["mode"] == "references"


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"references": 8}, "references"),  # up to 7
        ({"duration": 7}, "duration"),
        ({"aspect_ratio": "9:16"}, "size"),  # only 16:9 is sent: o1's other ratios are not listed
        ({"model": "kwaivgi/kling-v2.1"}, "references"),
    ],
)
def test_replicate_references_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("replicate")
    refs = [_png(tmp_path, f"r{i}.png", i * 30) for i in range(fields.pop("references", 1))]
    _refused(tmp_path, fake, field, backend="replicate", references=refs, **fields)


def test_replicate_fake_refuses_more_than_seven_reference_images(start: Any) -> None:
    import replicate

    fake = start("replicate")
    client = replicate.Client(api_token=fake.key, base_url=fake.url)
    with pytest.raises(replicate.exceptions.ReplicateError) as info:
        client.models.predictions.create(
            model="kwaivgi/kling-o1", input={"prompt": PROMPT, "reference_images": ["https://e.com/a.png"] * 8}
        )
    assert "at most 7" in str(info.value) and fake.submissions == 0


# -- Pictory: referenceImageUrls (references) ----------------------------------------------------------------------


@pytest.mark.parametrize("model, duration", [("pixverse5.5", 5), ("veo3.1_fast", 8)])
def test_pictory_references_go_as_reference_image_urls(start: Any, tmp_path: Path, model: str, duration: int) -> None:
    fake = start("pictory")
    refs = [fake.image_url, fake.image_url + "?style"]
    result = _run(tmp_path, backend="pictory", model=model, references=refs, duration=duration)
    (task,) = fake.tasks.values()
    assert task.extra["references"] == refs and "firstFrameImageUrl" not in task.input
    assert task.input["model"] == model and task.input["duration"] == f"{duration}s"
    assert result.recipe["mode"] == "references"


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"references": 4}, "references"),  # 1 to 3 images
        ({"local": True}, "references[1]"),  # public URLs only
        ({"model": "veo3.1", "duration": 4}, "duration"),  # veo makes 8 s clips from references
    ],
)
def test_pictory_references_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("pictory")
    refs = [f"{fake.image_url}?{i}" for i in range(fields.pop("references", 2))]
    if fields.pop("local", False):
        refs[1] = _png(tmp_path, "style.png")
    _refused(tmp_path, fake, field, backend="pictory", references=refs, **fields)


@pytest.mark.parametrize(
    "extra, name",
    [
        ({"referenceImageUrls": ["https://e.com/a.png"] * 4}, "referenceImageUrls"),
        ({"referenceImageUrls": ["data:image/png;base64,AAAA"]}, "referenceImageUrls"),
        (
            {"referenceImageUrls": ["https://e.com/a.png"], "firstFrameImageUrl": "https://e.com/b.png"},
            "firstFrameImageUrl",
        ),
    ],
)
def test_pictory_fake_refuses_what_reference_images_refuse(start: Any, extra: dict[str, Any], name: str) -> None:
    import httpx

    fake = start("pictory")
    answer = httpx.post(
        fake.url + "/pictoryapis/v1/aistudio/videos",
        json={"prompt": PROMPT, **extra},
        headers={"Authorization": fake.key},
    )
    assert answer.status_code == 400 and answer.json()["fields"][0]["name"] == name
    assert fake.submissions == 0


# -- a resumed edit: the request rebuilt from the recorded one is still an edit -----------------------------------


def test_runway_edit_is_resumed_from_its_recorded_request(start: Any, tmp_path: Path) -> None:
    from kinema.backends.base import CancelToken

    fake = start("runway")
    clip = _clip(tmp_path)
    fake.finish_after = 30.0  # the first run is stopped while the task runs, as a worker shutting down is
    seen: list[dict[str, Any]] = []
    token = CancelToken()

    def record(task_id: str, info: dict[str, Any]) -> None:
        seen.append(info)
        token.cancel(keep_provider_task=True)

    request = kinema.VideoRequest(prompt=PROMPT, backend="runway", source_video=str(clip), seed=7, options=FAST)
    with pytest.raises(kinema.errors.Cancelled):
        engine.run(request, output=tmp_path / "out.mp4", on_task_id=record, cancel=token)
    (info,) = seen
    assert info["request"]["source_video"] == str(clip) and info["mode"] == "edit"
    fake.finish_after = 0.0
    fields = {k: v for k, v in info["request"].items() if v is not None}  # as `kinema resume` rebuilds it
    (task_id,) = fake.tasks
    result = engine.run(
        kinema.VideoRequest(**fields), output=tmp_path / "out.mp4", resume_task_id=task_id, resume_info=info
    )
    assert result.recipe["mode"] == "edit" and result.provider_task_id == task_id
    assert fake.submissions == 1  # no second paid submission


# -- an upload is not the paid submit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["runway", "replicate"])
def test_a_lost_upload_answer_is_a_plain_retry_not_a_task_that_may_exist(
    start: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """The clip's upload ran inside the paid submit: a lost answer to it was reported as "the task may exist (and
    be billed)", and the job was not retried, though nothing paid had been sent."""
    import kinema.backends.runway as runway
    from kinema.backends.base import GenerationContext
    from kinema.backends.remote import ON_SUBMITTING
    from kinema.errors import ProviderError
    from kinema.progress import ProgressTracker

    fake = start(backend)
    monkeypatch.setattr(runway, "DATA_URI_LIMIT", 1000)  # stands in for a clip over Runway's 5 MB
    clip = _clip(tmp_path)
    fields: dict[str, Any] = {"strength": 0.8} if backend == "replicate" else {}
    request = kinema.VideoRequest(
        prompt=PROMPT, backend=backend, source_video=str(clip), seed=7, options=FAST, **fields
    )
    marks: list[bool] = []

    def attempt() -> Any:
        params = kinema.plan(request).params
        ctx = GenerationContext(progress=ProgressTracker(None), resume_info={ON_SUBMITTING: marks.append})
        return kinema.plan(request).backend.generate(params, ctx)

    fake.drop_answers["upload"] = 1  # the file arrives; the answer saying so does not
    with pytest.raises(ProviderError) as info:
        attempt()
    assert info.value.provider_code != "submit_unconfirmed" and "may exist" not in info.value.message
    assert fake.submit_attempts == 0 and marks == []  # no paid call, and no submitting mark to hold a retry back
    assert attempt().video is not None  # the retry uploads again and runs
    assert fake.submissions == 1 and marks == [True]
