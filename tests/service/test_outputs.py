"""Outputs under attempt names (docs/cluster.md, "Outputs"): an attempt writes ``{job}.a{attempt}.mp4`` (and
``.png``, ``.mp4.json``), the completing transaction records them under the attempt guard, ``/content`` serves what
the row records, and the housekeeping deletes the files of attempts that did not publish. Outputs of older versions
(``{job}.mp4``) and a moved data dir keep working."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST, make_config, wait_status
from fastapi.testclient import TestClient

from kinema.backends.base import CancelToken
from kinema.service.app import create_app
from kinema.service.config import ServiceConfig
from kinema.service.store import Job
from kinema.service.stores import Store, open_store
from kinema.service.video_job import attempt_outputs, publish_outputs, published_file
from kinema.service.worker import AttemptContext, WorkerPool


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ServiceConfig, Store]]:
    """An API without in-process workers (auth off: the owner is "local") on a fresh store of either kind."""
    cfg = make_config(tmp_path, workers=0, auth=False)
    cfg.ensure_dirs()
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_server").new_schema()
    store = open_store(url or cfg.db_path)
    yield cfg, store
    store.close()
    if url:
        request.getfixturevalue("pg_server").drop_schema(url)


def _write(cfg: ServiceConfig, job_id: str, attempt: int, content: bytes) -> tuple[Path, Path]:
    """What a worker's attempt writes: the video, its recipe sidecar and the thumbnail, under the attempt's names."""
    video, thumb = attempt_outputs(cfg, job_id, attempt)
    video.write_bytes(content)
    Path(str(video) + ".json").write_text("{}")
    thumb.write_bytes(b"png " + content)
    return video, thumb


def _attempt(store: Store, cfg: ServiceConfig, worker: str, job: Job) -> AttemptContext:
    pool = WorkerPool(store, cfg, threads=0, name=worker)
    return AttemptContext(pool, job, CancelToken(), job.attempts)


def test_two_attempts_complete_only_the_winner_is_served_and_the_loser_swept(
    setup: tuple[ServiceConfig, Store],
) -> None:
    cfg, store = setup
    job_id = store.submit_job(owner="local", request={"prompt": "a red ball"}, summary={}).id
    first = store.claim("host-a:1:w", lease_seconds=-1)  # its lease passes at once: a worker that stalled
    assert first is not None and first.attempts == 1
    _write(cfg, job_id, 1, b"attempt one")
    assert store.reap() == [(job_id, "queued")]
    second = store.claim("host-b:2:w", lease_seconds=60)
    assert second is not None and second.attempts == 2
    _write(cfg, job_id, 2, b"attempt two")

    winner = _attempt(store, cfg, "host-b:2:w", second)
    video, thumb = attempt_outputs(cfg, job_id, 2)
    publish_outputs(winner, video, thumb, {"seed": 2})
    assert not winner.lost
    done = store.get(job_id)
    assert done is not None and done.status == "completed"
    assert (Path(done.output_path or "").name, Path(done.thumbnail_path or "").name) == (
        f"{job_id}.a2.mp4",
        f"{job_id}.a2.png",
    )

    # the first worker finishes anyway: its completion is refused, and it deletes what it wrote
    loser = _attempt(store, cfg, "host-a:1:w", first)
    video1, thumb1 = attempt_outputs(cfg, job_id, 1)
    publish_outputs(loser, video1, thumb1, {"seed": 1})
    assert loser.lost and not video1.exists() and not thumb1.exists()
    assert store.get(job_id) == done, "the winner's completion stands"

    # a loser killed after writing leaves its files: the content route never serves them, the sweep deletes them
    _write(cfg, job_id, 1, b"attempt one")
    with TestClient(create_app(cfg, store=store)) as client:
        r = client.get(f"/v1/videos/{job_id}/content")
        assert r.status_code == 200 and r.content == b"attempt two"
        served = client.get(f"/v1/videos/{job_id}/content", params={"variant": "thumbnail"})
        assert served.content == b"png attempt two"
    sweeper = WorkerPool(store, cfg, threads=0)
    assert sweeper.sweep_lost_outputs(grace=3600) == 0, "files younger than the grace are left alone"
    assert sweeper.sweep_lost_outputs(grace=0) == 3
    assert sorted(p.name for p in cfg.outputs_dir.iterdir()) == [
        f"{job_id}.a2.mp4",
        f"{job_id}.a2.mp4.json",
        f"{job_id}.a2.png",
    ]
    assert sweeper.sweep_lost_outputs(grace=0) == 0


def test_the_sweep_spares_the_running_attempt_and_clears_failed_and_deleted_jobs(
    setup: tuple[ServiceConfig, Store],
) -> None:
    cfg, store = setup
    running, failed, deleted = (store.submit_job(owner="local", request={}, summary={}).id for _ in range(3))
    claimed = [store.claim("w", lease_seconds=60) for _ in range(3)]
    assert [c.id for c in claimed if c] == [running, failed, deleted]
    for job_id in (running, failed, deleted):
        _write(cfg, job_id, 1, job_id.encode())
    (cfg.outputs_dir / f".{running}.a1.mp4.123.tmp.mp4").write_bytes(b"half")  # a save in progress
    assert store.fail(failed, "w", 1, {"code": "x", "message": "m"}) == "failed"
    assert store.delete(deleted, "local") is not None
    old = cfg.outputs_dir / "video_old.mp4"  # an output of an older version: not an attempt's name
    old.write_bytes(b"old")
    pool = WorkerPool(store, cfg, threads=0)
    assert pool.sweep_lost_outputs(grace=0) == 6
    assert sorted(p.name for p in cfg.outputs_dir.iterdir()) == sorted(
        [
            f"{running}.a1.mp4",
            f"{running}.a1.mp4.json",
            f"{running}.a1.png",
            f".{running}.a1.mp4.123.tmp.mp4",
            "video_old.mp4",
        ]
    )


def test_outputs_of_older_versions_and_a_moved_data_dir_are_served(setup: tuple[ServiceConfig, Store]) -> None:
    cfg, store = setup
    old_style, moved = (store.submit_job(owner="local", request={}, summary={}).id for _ in range(2))
    for job_id, recorded in ((old_style, cfg.outputs_dir), (moved, Path("/gone/elsewhere/outputs"))):
        job = store.claim("w", lease_seconds=60)
        assert job is not None and job.id == job_id
        # how older versions published: {id}.mp4 and {id}.png, the path recorded as the worker's host saw it
        (cfg.outputs_dir / f"{job_id}.mp4").write_bytes(job_id.encode())
        (cfg.outputs_dir / f"{job_id}.png").write_bytes(b"png")
        assert store.complete(
            job_id,
            "w",
            1,
            result={},
            output_path=str(recorded / f"{job_id}.mp4"),
            thumbnail_path=str(recorded / f"{job_id}.png"),
            expires_at=time.time() + 60,
        )
    with TestClient(create_app(cfg, store=store)) as client:
        for job_id in (old_style, moved):
            r = client.get(f"/v1/videos/{job_id}/content")
            assert r.status_code == 200 and r.content == job_id.encode()
            assert client.get(f"/v1/videos/{job_id}/content", params={"variant": "thumbnail"}).content == b"png"
        os.unlink(cfg.outputs_dir / f"{moved}.mp4")
        r = client.get(f"/v1/videos/{moved}/content")
        assert r.status_code == 404 and r.json()["error"]["code"] == "expired"
    assert WorkerPool(store, cfg, threads=0).sweep_lost_outputs(grace=0) == 0
    assert (cfg.outputs_dir / f"{old_style}.mp4").is_file()
    assert published_file(cfg, None) is None and published_file(cfg, "") is None


def test_a_worker_writes_and_publishes_under_the_attempt_names(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, auth=False)
    with TestClient(create_app(cfg)) as client:
        video_id = client.post("/v1/videos", json={**FAST, "prompt": "a red ball"}).json()["id"]
        assert wait_status(client, video_id)["status"] == "completed"
        content = client.get(f"/v1/videos/{video_id}/content")
        assert content.status_code == 200 and content.content[4:8] == b"ftyp"  # an MP4
    names = sorted(p.name for p in cfg.outputs_dir.iterdir())
    assert names == [f"{video_id}.a1.mp4", f"{video_id}.a1.mp4.json", f"{video_id}.a1.png"]
    assert list(cfg.work_dir.iterdir()) == [], "nothing was written to the work dir, nothing is left there"


def test_expired_outputs_take_the_services_copies_of_their_inputs_along(
    setup: tuple[ServiceConfig, Store], tmp_path: Path
) -> None:
    cfg, store = setup
    ours = [cfg.inputs_dir / name for name in ("j.png", "j.last.png", "j.source.mp4", "j.ref0.png")]
    for p in ours:
        p.write_bytes(b"x")
    callers = tmp_path / "callers_own.png"  # an MCP job's image is the caller's file: never deleted
    callers.write_bytes(b"x")
    request = {
        "prompt": "p",
        "image": str(ours[0]),
        "last_image": str(ours[1]),
        "source_video": str(ours[2]),
        "references": [str(ours[3]), str(callers)],
    }
    job_id = store.submit_job(owner="local", request=request, summary={}).id
    assert store.claim("w", lease_seconds=60) is not None
    video, thumb = _write(cfg, job_id, 1, b"video")
    assert store.complete(
        job_id, "w", 1, result={}, output_path=str(video), thumbnail_path=str(thumb), expires_at=time.time() - 1
    )
    WorkerPool(store, cfg, threads=0).purge_expired()
    assert not any(p.exists() for p in (*ours, video, thumb)) and callers.exists()
    assert store.get(job_id).output_path is None  # type: ignore[union-attr]
