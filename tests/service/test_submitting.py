"""The "submitting" mark: a worker that dies between a provider's paid submit and recording the task id is never
followed by a blind second submit. The next attempt finds the task by the client token (the job id) where the
provider can look it up (Kling's external_task_id), and otherwise fails the job for review (submit_unconfirmed)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the provider fakes (tests/fakes) are shared

from conftest import make_config, wait_for  # noqa: E402

from fakes.base import FakeServer  # noqa: E402
from fakes.kling import FakeKling  # noqa: E402
from fakes.replicate import FakeReplicate  # noqa: E402
from kinema.errors import Cancelled  # noqa: E402
from kinema.service.store import Store  # noqa: E402
from kinema.service.worker import AttemptContext, WorkerPool  # noqa: E402

CASES: dict[str, tuple[type[FakeServer], Any, dict[str, Any]]] = {
    "replicate": (
        FakeReplicate,
        lambda f: {"REPLICATE_API_TOKEN": f.key, "REPLICATE_BASE_URL": f.url},
        {"backend": "replicate", "model": "minimax/video-01"},
    ),
    "kling": (
        FakeKling,
        lambda f: {"KLING_ACCESS_KEY": f.key, "KLING_SECRET_KEY": f.secret, "KINEMA_KLING_BASE_URL": f.url},
        {"backend": "kling", "model": "kling-v2-6", "duration": 5.0, "width": 1280, "height": 720},
    ),
}


@pytest.fixture
def crashed_after_submit(
    request: pytest.FixtureRequest, tmp_path: Path, video_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Store, FakeServer, str]]:
    """A job whose first worker froze right after the provider accepted (and billed) its submit, before the task id
    was recorded (the moment a kill -9 would be worst); then a healthy worker takes the job over."""
    fake_cls, env, fields = CASES[request.param]
    fake = fake_cls(video_bytes)
    for var, value in env(fake).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("KINEMA_POLL_INTERVAL", "0.05")
    cfg = make_config(tmp_path, lease_seconds=1.0, heartbeat_seconds=0.2, reap_interval=0.2, retry_backoff=0.05)
    store = Store(cfg.db_path)
    job = store.submit_job(
        owner="o", request={"prompt": "a red fox in snow", "format": "mp4", **fields}, summary={}, max_attempts=3
    )
    gate = threading.Event()
    record = AttemptContext.on_task_id

    def frozen_or_record(ctx: AttemptContext, task_id: str, info: dict[str, Any]) -> None:
        if ctx.pool.name == "doomed":
            gate.wait(60)  # frozen: no heartbeat, no record; its lease runs out
            raise Cancelled("the process was killed")
        record(ctx, task_id, info)

    monkeypatch.setattr(AttemptContext, "on_task_id", frozen_or_record)
    doomed = WorkerPool(store, cfg, threads=1, name="doomed")
    doomed.start(housekeeping=False)  # no heartbeats: as if the process were gone
    survivor = WorkerPool(store, cfg, threads=1, name="survivor")
    try:
        wait_for(lambda: fake.submissions == 1, timeout=20)
        doomed.stop(graceful=False, timeout=0.1)
        survivor.start()
        yield store, fake, job.id
    finally:
        gate.set()
        survivor.stop(timeout=5)
        doomed.stop(timeout=5)
        fake.close()


def _final(store: Store, job_id: str) -> Any:
    return wait_for(lambda: (j := store.get(job_id)) is not None and j.terminal and j, timeout=30)


@pytest.mark.parametrize("crashed_after_submit", ["replicate"], indirect=True)
def test_a_provider_without_lookup_fails_for_review_instead_of_paying_twice(crashed_after_submit: Any) -> None:
    store, fake, job_id = crashed_after_submit
    job = _final(store, job_id)
    assert fake.submissions == 1, "a second paid submit was made"
    assert job.status == "failed"
    assert job.error["code"] == "submit_unconfirmed"
    assert "may exist" in job.error["message"] and "kinema jobs retry" in job.error["message"]
    assert job.submitting_at is not None and job.provider_task_id is None  # the evidence is kept for review


@pytest.mark.parametrize("crashed_after_submit", ["kling"], indirect=True)
def test_a_provider_with_lookup_by_client_token_resumes_the_paid_task(crashed_after_submit: Any) -> None:
    store, fake, job_id = crashed_after_submit
    job = _final(store, job_id)
    assert job.status == "completed", job.error
    assert fake.submissions == 1
    assert job.provider_task_id == next(iter(fake.tasks)) and job.submitting_at is None
    assert any(t.extra.get("external") == job_id for t in fake.tasks.values())  # the job id was the client token


def test_a_refused_submit_clears_the_mark_so_the_retry_submits(
    tmp_path: Path, video_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 answer to the submit is a refusal, not a lost answer: nothing exists at the provider, the mark is
    cleared, and the job's retry submits (once) and completes."""
    fake = FakeReplicate(video_bytes)
    for var, value in CASES["replicate"][1](fake).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("KINEMA_POLL_INTERVAL", "0.05")
    fake.inject("submit", status=500, times=1)
    cfg = make_config(tmp_path, retry_backoff=0.05)
    store = Store(cfg.db_path)
    job = store.submit_job(
        owner="o", request={"prompt": "a fox", "format": "mp4", **CASES["replicate"][2]}, summary={}, max_attempts=3
    )
    pool = WorkerPool(store, cfg, threads=1)
    pool.start()
    try:
        done = _final(store, job.id)
        assert done.status == "completed", done.error
        assert fake.submit_attempts == 2 and fake.submissions == 1 and done.attempts == 2
    finally:
        pool.stop(timeout=5)
        fake.close()
