"""The official openai SDK's videos client, unchanged, against a live Kinema server."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import LiveServer, wait_for

openai = pytest.importorskip("openai")


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 48, 3), (200, 40, 40), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_openai_sdk_create_retrieve_list_download_delete(live: LiveServer, api_key: str, tmp_path) -> None:
    client = openai.OpenAI(api_key=api_key, base_url=live.url + "/v1", max_retries=0)
    video = client.videos.create(
        prompt="a red ball bouncing on green grass", model="builtin", seconds="2", extra_body={"steps": 2, "seed": 3}
    )
    assert video.object == "video" and video.status == "queued" and video.size == "128x128"
    assert video.seconds == "2"

    def done():
        v = client.videos.retrieve(video.id)
        return v if v.status in ("completed", "failed") else None

    final = wait_for(done, timeout=60, interval=0.2)
    assert final.status == "completed" and final.progress == 100, final
    # image-to-video through the SDK's multipart upload
    i2v = client.videos.create(
        prompt="a red ball",
        model="builtin",
        input_reference=("first.png", _png(), "image/png"),
        extra_body={"steps": 2},
    )
    assert i2v.status == "queued"
    ids = [v.id for v in client.videos.list(limit=1)]  # auto-pagination across two pages
    assert ids == [i2v.id, video.id]
    content = client.videos.download_content(video.id)
    out = tmp_path / "out.mp4"
    content.write_to_file(out)
    assert out.read_bytes()[4:8] == b"ftyp"
    thumb = client.videos.download_content(video.id, variant="thumbnail")
    assert thumb.content[:4] == b"\x89PNG"
    deleted = client.videos.delete(video.id)
    assert deleted.deleted and deleted.id == video.id
    with pytest.raises(openai.NotFoundError) as info:
        client.videos.retrieve(video.id)
    assert info.value.status_code == 404 and info.value.code == "not_found"
    wait_for(lambda: client.videos.retrieve(i2v.id).status == "completed", timeout=60, interval=0.2)
    assert client.videos.retrieve(i2v.id).recipe["mode"] == "i2v"
