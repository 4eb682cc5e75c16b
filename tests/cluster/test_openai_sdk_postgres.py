"""The official openai SDK's videos client, unchanged, against the scale-out arrangement: ``kinema serve --workers 0
--database-url postgresql://...`` and a separate ``kinema worker --database-url ...`` process (the SQLite version,
in one process: tests/service/test_openai_sdk.py). Create (JSON and multipart), poll, list, download, delete."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from kinema.service.stores import open_store

from .test_replicas import Cluster, _wait
from .test_replicas import cluster as cluster  # the fixture: an API process and a worker process on PostgreSQL

openai = pytest.importorskip("openai")
pytest.importorskip("psycopg")
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")  # the SDK's, on every call


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("worker", ["plain", "ray"])
def test_openai_sdk_against_an_api_and_a_worker_process_on_postgres(
    cluster: Cluster, tmp_path: Path, worker: str, request: pytest.FixtureRequest
) -> None:
    store = open_store(cluster.url)  # migrates the fresh database before the processes start
    try:
        secret = store.create_key("sdk")[1]
    finally:
        store.close()
    base = cluster.api("api")
    if worker == "ray":  # kinema worker --ray joining the session's Ray (as --address auto finds a host's own)
        ray = pytest.importorskip("ray")
        request.getfixturevalue("ray_session")
        cluster.env.update(os.environ)  # what ray.init set (the session's auth token) reaches the worker process
        address = ray.get_runtime_context().gcs_address
        cluster._start(
            "worker",
            "worker",
            "--ray",
            "--address",
            address,
            "--gpu-actors",
            "0",
            "--cpu-actors",
            "1",
            "--lease",
            "5",
            "--quiet",
        )
    else:
        cluster.worker("worker")

    def up() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            assert all(p.poll() is None for p in cluster.procs), cluster.log()
            return False

    _wait(up, 60, "the API")
    client = openai.OpenAI(api_key=secret, base_url=base + "/v1", max_retries=0)
    video = client.videos.create(
        prompt="a red ball bouncing on green grass", model="builtin", seconds="2", extra_body={"steps": 2, "seed": 3}
    )
    assert video.object == "video" and video.status == "queued" and video.size == "128x128"
    i2v = client.videos.create(
        prompt="a red ball",
        model="builtin",
        extra_body={"steps": 2},
        input_reference=("first.png", _png(), "image/png"),
    )
    assert i2v.status == "queued"

    def finished(video_id: str) -> Any:
        v = client.videos.retrieve(video_id)
        return v if v.status in ("completed", "failed") else None

    for video_id in (video.id, i2v.id):  # run by the worker process: the API has no workers
        final = _wait(lambda v=video_id: finished(v), 120, f"{video_id} to finish")  # type: ignore[misc]
        assert final.status == "completed" and final.progress == 100, (final, cluster.log())
    assert client.videos.retrieve(i2v.id).recipe["mode"] == "i2v"  # type: ignore[attr-defined,unused-ignore]
    assert [v.id for v in client.videos.list(limit=1)] == [i2v.id, video.id]  # auto-pagination: two pages
    out = tmp_path / "out.mp4"
    client.videos.download_content(video.id).write_to_file(out)
    assert out.read_bytes()[4:8] == b"ftyp"
    assert client.videos.download_content(video.id, variant="thumbnail").content[:4] == b"\x89PNG"
    # published under the attempt's name by the worker process; served through what the store recorded
    assert (cluster.data_dir / "outputs" / f"{video.id}.a1.mp4").read_bytes() == out.read_bytes()
    deleted = client.videos.delete(video.id)
    assert deleted.deleted and deleted.id == video.id
    with pytest.raises(openai.NotFoundError) as info:
        client.videos.retrieve(video.id)
    assert info.value.status_code == 404 and info.value.code == "not_found"
    assert not (cluster.data_dir / "outputs" / f"{video.id}.a1.mp4").exists()
