"""The official openai SDK's editing calls, unchanged, against a live Kinema server: ``videos.remix``, ``.edit`` (by
id and by upload), ``.extend``, ``.create_character`` / ``.get_character``, and a job that uses the character.

The SDK (3.57) cannot send ``video={"id": ...}`` itself: its file extraction raises RuntimeError for a dict at
``video`` before any request is made. The same call with ``video=omit, extra_body={"video": {"id": ...}}`` is
encoded by the SDK's own multipart serializer as the form field ``video[id]``, which Kinema reads.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LiveServer, wait_for
from test_edit_routes import PROMPT, clip_bytes

import kinema
from kinema.service.app import create_app
from kinema.service.config import ServiceConfig, load_extra_backends

openai = pytest.importorskip("openai")
from openai import omit  # noqa: E402

# the SDK marks the video calls deprecated (the Sora API's shutdown); Kinema keeps serving them
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def server(config: ServiceConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "refs=reference_backend:ReferenceBackend")
    monkeypatch.setenv("KINEMA_REFS_LOG", str(tmp_path / "refs.log"))
    load_extra_backends()
    with LiveServer(create_app(config)) as live:
        yield live


def _done(client: Any, video_id: str) -> Any:
    def finished() -> Any:
        v = client.videos.retrieve(video_id)
        return v if v.status in ("completed", "failed") else None

    video = wait_for(finished, timeout=120, interval=0.2)
    assert video.status == "completed", video
    return video


def _frames(client: Any, video_id: str, tmp: Path) -> np.ndarray:
    path = tmp / f"{video_id}.mp4"
    client.videos.download_content(video_id).write_to_file(path)
    return kinema.Video.open(path).frames.astype(np.float32)


def test_sdk_remix_edit_extend_and_characters(server: LiveServer, api_key: str, tmp_path: Path) -> None:
    client = openai.OpenAI(api_key=api_key, base_url=server.url + "/v1", max_retries=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        source = client.videos.create(prompt=PROMPT, model="builtin", extra_body={"steps": 2, "seed": 3})
    source = _done(client, source.id)
    before = _frames(client, source.id, tmp_path)

    remix = client.videos.remix(source.id, prompt=PROMPT + " in heavy snow", extra_body={"steps": 2, "strength": 0.8})
    assert remix.remixed_from_video_id == source.id and remix.status == "queued"
    remix = _done(client, remix.id)
    assert remix.recipe["mode"] == "edit" and remix.remixed_from_video_id == source.id
    assert np.abs(_frames(client, remix.id, tmp_path) - before).mean() > 2.0

    # edit by id: the SDK cannot encode video={"id": ...} (see the module doc); its serializer can, from extra_body
    with pytest.raises(RuntimeError, match="Expected entry at `video`"):
        client.videos.edit(prompt="x", video={"id": source.id})
    by_id = client.videos.edit(
        prompt=PROMPT + " at night", video=omit, extra_body={"video": {"id": source.id}, "steps": 2}
    )
    by_id = _done(client, by_id.id)
    assert by_id.remixed_from_video_id == source.id and by_id.recipe["mode"] == "edit"
    assert np.abs(_frames(client, by_id.id, tmp_path) - before).mean() > 0.5

    upload = clip_bytes(tmp_path)
    uploaded = client.videos.edit(
        prompt=PROMPT + " in heavy snow",
        video=("clip.mp4", upload, "video/mp4"),
        extra_body={"model": "builtin", "steps": 2, "strength": 0.9},
    )
    assert uploaded.remixed_from_video_id is None
    uploaded = _done(client, uploaded.id)
    assert uploaded.recipe["mode"] == "edit"
    clip_file = tmp_path / "up.mp4"
    clip_file.write_bytes(upload)
    # the built-in model draws at 64x64 (the 32x32 upload is resized): compare each frame's mean colour
    edited, sent = _frames(client, uploaded.id, tmp_path), kinema.Video.open(clip_file).frames.astype(np.float32)
    assert edited.shape[0] == sent.shape[0] and np.abs(edited.mean((1, 2)) - sent.mean((1, 2))).mean() > 2.0

    extended = client.videos.extend(
        prompt=PROMPT, seconds="4", video=omit, extra_body={"video": {"id": source.id}, "steps": 2}
    )
    extended = _done(client, extended.id)
    assert extended.recipe["mode"] == "extend" and extended.remixed_from_video_id == source.id
    ext = _frames(client, extended.id, tmp_path)
    # Kinema's extension is the new clip alone (its first 4 frames continue the source's last 4), so `seconds` is
    # that clip's length, not the stitched total OpenAI's doc string describes
    assert extended.seconds == f"{ext.shape[0] / 8:g}" and ext.shape[0] == 40
    by_upload = client.videos.extend(
        prompt=PROMPT,
        seconds="4",
        video=("clip.mp4", upload, "video/mp4"),
        extra_body={"model": "builtin", "steps": 2},
    )
    assert _done(client, by_upload.id).recipe["mode"] == "extend"

    character = client.videos.create_character(name="Bob", video=("bob.mp4", upload, "video/mp4"))
    assert character.id and character.id.startswith("char_") and character.name == "Bob"
    got = client.videos.get_character(character.id)
    assert (got.id, got.name, got.created_at) == (character.id, "Bob", character.created_at)
    with pytest.raises(openai.NotFoundError):
        client.videos.get_character("char_" + "0" * 24)

    # the built-in backend takes no reference images: a clear 400 naming the field
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt=PROMPT, model="builtin", extra_body={"characters": [{"id": character.id}]})
    assert info.value.param == "characters" and "reference images" in str(info.value.message)
    job = client.videos.create(prompt="x", model="refs", extra_body={"characters": [{"id": character.id}]})
    assert _done(client, job.id).recipe["mode"] == "references"
    log = (tmp_path / "refs.log").read_text().splitlines()
    assert len(json.loads(log[-1])["references"]) == 3  # three frames of the clip: all 4 references are free
