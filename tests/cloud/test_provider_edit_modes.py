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

    answer = httpx.post(fake.url + path, json=body,
                        headers={"Authorization": f"Bearer {fake.key}", "X-Runway-Version": VERSION})  # fmt: skip
    return answer.status_code, answer.json()


def _data_uri_bytes(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


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


def test_runway_edit_uploads_a_clip_too_large_for_a_data_uri(start: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
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
    err = _refused(tmp_path, fake, "source_video", backend="runway",
                   source_video=str(_clip(tmp_path, seconds=1.0)))  # fmt: skip
    assert "2 to 30 s" in err.message


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
    _refused(tmp_path, fake, "image", backend="runway", model="veo3.1_fast", duration=4,
             last_image=_png(tmp_path, "last.png"))  # fmt: skip


def test_runway_keyframes_refused_by_a_first_frame_only_model(start: Any, tmp_path: Path) -> None:
    fake = start("runway")
    _refused(tmp_path, fake, "last_image", backend="runway", model="gen4.5", image=_png(tmp_path, "a.png"),
             last_image=_png(tmp_path, "b.png"))  # fmt: skip


def test_runway_fake_refuses_a_last_position_where_the_model_has_none(start: Any) -> None:
    fake = start("runway")
    frame = "https://example.com/frame.png"
    both = [{"uri": frame, "position": "first"}, {"uri": frame, "position": "last"}]
    status, answer = _runway_post(
        fake, "/v1/image_to_video", {"model": "gen4_turbo", "ratio": "1280:720", "duration": 5, "promptImage": both}
    )
    assert status == 400 and "'last' is not supported by gen4_turbo" in answer["error"]
    status, answer = _runway_post(fake, "/v1/image_to_video", {"model": "veo3.1", "ratio": "1280:720", "duration": 4,
                                                               "promptImage": both[1:]})  # fmt: skip
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


@pytest.mark.parametrize("fields, field", [
    ({"model": "kling-v2-6"}, "image"),  # a last frame alone: kling-v1-6 only
    ({"model": "kling-v2-6", "image": "F", "resolution": "720p"}, "resolution"),  # std: no tail
    ({"model": "kling-v1", "image": "F", "duration": 10}, "duration"),  # kling-v1 takes a tail at 5 s only
    ({"model": "kling-v2-master", "image": "F"}, "last_image"),  # no start/end frames at all
    ({"model": "kling-v2-6", "image": "F", "options": {"sound": "on"}}, "options.sound"),
    ({"model": "kling-v2-5-turbo", "image": "F", "options": {"camera_control": {"type": "simple"}}},
     "options.camera_control"),
])  # fmt: skip
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


@pytest.mark.parametrize("fields, field", [
    ({"model": "kling-v2-6"}, "references"),  # multi-image2video is kling-v1-6 only
    ({"options": {"cfg_scale": 0.5}}, "options.cfg_scale"),  # not a field of multi-image2video
])  # fmt: skip
def test_kling_references_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("kling")
    _refused(tmp_path, fake, field, backend="kling", references=[_png(tmp_path, "ref.png")], **fields)


@pytest.mark.parametrize("body, words", [
    ({"image_list": [{"image": "https://e.com/a.png"}] * 5}, "1 to 4"),
    ({"image_list": [{"image": "data:image/png;base64,AAAA"}]}, "without data: prefix"),
    ({"image_list": [{"image": "https://e.com/a.png"}], "cfg_scale": 0.5}, "cfg_scale"),
    ({"image_list": [{"image": "https://e.com/a.png"}], "model_name": "kling-v2-6"}, "model_name"),
])  # fmt: skip
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
    assert task.input["keyframes"] == {"frame0": {"type": "image", "url": fake.image_url},
                                       "frame1": {"type": "image", "url": last}}  # fmt: skip
    assert result.recipe["mode"] == "keyframes"


def test_luma_keyframes_last_frame_alone(start: Any, tmp_path: Path) -> None:
    fake = start("luma")
    _run(tmp_path, backend="luma", last_image=fake.image_url, duration=5)
    (task,) = fake.tasks.values()
    assert task.input["keyframes"] == {"frame1": {"type": "image", "url": fake.image_url}}


def test_luma_keyframes_refuse_a_local_last_frame(start: Any, tmp_path: Path) -> None:
    fake = start("luma")
    err = _refused(tmp_path, fake, "last_image", backend="luma", image=fake.image_url,
                   last_image=_png(tmp_path, "last.png"))  # fmt: skip
    assert "public URL" in err.message


@pytest.mark.parametrize("fields, field", [
    ({"source_video": "CLIP"}, "source_video"),  # modify-video takes a URL only; source_video is a local file
    ({"references": ["REF"]}, "references"),
])  # fmt: skip
def test_luma_refuses_edit_and_references(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("luma")
    if "source_video" in fields:
        fields["source_video"] = str(_clip(tmp_path))
    else:
        fields["references"] = [fake.image_url]
    _refused(tmp_path, fake, field, backend="luma", **fields)


def test_luma_fake_refuses_a_malformed_frame1(start: Any) -> None:
    import httpx

    fake = start("luma")
    url = fake.url + "/dream-machine/v1/generations/video"
    for keyframes in ({"frame1": {"type": "image", "url": "data:image/png;base64,AAAA"}},
                      {"frame2": {"type": "image", "url": fake.image_url}}):  # fmt: skip
        answer = httpx.post(url, json={"model": "ray-2", "prompt": PROMPT, "keyframes": keyframes},
                            headers={"Authorization": f"Bearer {fake.key}"})  # fmt: skip
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


@pytest.mark.parametrize("fields, field", [
    ({"model": "fal-ai/kling-video/v2.1/master", "image": "F"}, "last_image"),  # its page lists no tail
    ({"model": "fal-ai/kling-video/v2.5-turbo/pro/text-to-video", "image": "F"}, "last_image"),
    ({}, "image"),  # image_url is required on the endpoint: no last frame alone
])  # fmt: skip
def test_fal_keyframes_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("fal")
    if fields.get("image") == "F":
        fields["image"] = _png(tmp_path, "first.png")
    _refused(tmp_path, fake, field, backend="fal", last_image=_png(tmp_path, "last.png"), **fields)


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


@pytest.mark.parametrize("fields, field", [
    ({"image": "F", "resolution": "720p"}, "resolution"),  # end_image needs pro mode
    ({}, "image"),  # start_image is required
    ({"model": "minimax/video-01", "image": "F"}, "last_image"),
])  # fmt: skip
def test_replicate_keyframes_refusals(start: Any, tmp_path: Path, fields: dict[str, Any], field: str) -> None:
    fake = start("replicate")
    if fields.get("image") == "F":
        fields["image"] = _png(tmp_path, "first.png")
    _refused(tmp_path, fake, field, backend="replicate", last_image=_png(tmp_path, "last.png"), duration=5,
             **fields)  # fmt: skip


def test_replicate_fake_refuses_end_image_outside_pro_mode(start: Any) -> None:
    import replicate

    fake = start("replicate")
    client = replicate.Client(api_token=fake.key, base_url=fake.url)
    with pytest.raises(replicate.exceptions.ReplicateError) as info:
        client.models.predictions.create(model="kwaivgi/kling-v2.1", input={
            "prompt": PROMPT, "start_image": "https://e.com/a.png", "end_image": "https://e.com/b.png",
            "mode": "standard"})  # fmt: skip
    assert "pro" in str(info.value) and fake.submissions == 0


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
    result = engine.run(kinema.VideoRequest(**fields), output=tmp_path / "out.mp4", resume_task_id=task_id,
                        resume_info=info)  # fmt: skip
    assert result.recipe["mode"] == "edit" and result.provider_task_id == task_id
    assert fake.submissions == 1  # no second paid submission
