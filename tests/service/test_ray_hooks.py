"""Remote backends' hooks on the Ray path (``kinema worker --ray``): what crosses to an actor, and the relays back.

Run in this process, without a Ray cluster: the actor class is a plain class (Ray only wraps it), and the driver's
side is its ``resume_info`` and ``_relay``, here fed the actor's own ``poll()`` answers, as ``_drive`` does.
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config, wait_for

import kinema.engine
from kinema.backends.base import CancelToken
from kinema.backends.remote import CALLBACK_URL, ON_SUBMITTING, POLL_NOW, SUBMIT_UNCONFIRMED
from kinema.errors import InvalidRequest
from kinema.service.ray_workers import KinemaActor, RayWorkerPool, unpack_error
from kinema.service.stores import open_store
from kinema.service.worker import AttemptContext


class _Remote:
    """An actor handle's method as the driver calls it (``handle.method.remote(...)``), run at once."""

    def __init__(self, fn: Any) -> None:
        self.remote = fn


class _Handle:
    def __init__(self, actor: KinemaActor) -> None:
        self.ack_submitting = _Remote(actor.ack_submitting)
        self.ack_task = _Remote(actor.ack_task)


def test_actor_jobs_get_the_callback_url_the_submitting_mark_and_poll_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(tmp_path, public_url="https://kinema.example.com", workers=0)
    cfg.ensure_dirs()
    store = open_store(cfg.store_location)
    pool = RayWorkerPool(store, cfg)  # not started: no Ray needed for the driver's side
    store.submit_job(owner="o", request={"prompt": "p", "backend": "fal"}, summary={})
    job = store.claim(pool.name, 30)
    assert job is not None
    ctx = AttemptContext(pool, job, CancelToken(), job.attempts)

    info = pool.resume_info(ctx)
    assert info["client_token"] == job.id and info[SUBMIT_UNCONFIRMED] is False
    assert info[CALLBACK_URL].startswith(f"https://kinema.example.com/v1/provider-callbacks/fal/{job.id}?token=")
    pickle.dumps(info)  # it crosses to the actor's process: only data, no driver objects

    seen: dict[str, Any] = {}
    submitted = threading.Event()

    def fake_run(request: Any, *, resume_info: dict[str, Any], **_: Any) -> Any:
        seen.update(resume_info)
        resume_info[ON_SUBMITTING](True)  # blocks until the driver has stored the mark
        submitted.set()
        seen["woken"] = resume_info[POLL_NOW].wait(10)
        raise InvalidRequest("prompt", "stop here")  # the generation's end does not matter here

    monkeypatch.setattr(kinema.engine, "run", fake_run)
    actor = KinemaActor("cpu-0")
    out: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: out.update(actor.run(job.id, ctx.attempt, job.request, "fal", None, info))
    )
    runner.start()
    try:
        state = wait_for(lambda: (actor.poll(job.id) or {}).get("submitting") and actor.poll(job.id), timeout=10)
        assert not submitted.is_set(), "the backend must wait for the mark to be stored before its paid submit"
        assert seen[CALLBACK_URL] == info[CALLBACK_URL]
        pool._relay(ctx, _Handle(actor), state)
        pool._relay(ctx, _Handle(actor), state)  # a poll that saw the same mark again: stored once, answered once
        assert submitted.wait(10)
        stored = store.get(job.id)
        assert stored is not None and stored.submitting_at is not None
        actor.poll_now(job.id)  # what _drive sends when a provider callback sets ctx.poll_now
        runner.join(10)
        assert seen["woken"] is True
        assert isinstance(unpack_error(out["error"]), InvalidRequest)
    finally:
        actor.cancel(job.id, keep_provider_task=True)
        runner.join(10)
        actor.shutdown()
        store.close()


def test_a_mark_the_driver_cannot_store_stops_the_submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path, workers=0)
    cfg.ensure_dirs()
    store = open_store(cfg.store_location)
    pool = RayWorkerPool(store, cfg)
    store.submit_job(owner="o", request={"prompt": "p", "backend": "fal"}, summary={})
    job = store.claim(pool.name, 30)
    assert job is not None
    ctx = AttemptContext(pool, job, CancelToken(), job.attempts)
    assert CALLBACK_URL not in pool.resume_info(ctx), "no public URL: no callback"
    paid: list[bool] = []

    def fake_run(request: Any, *, resume_info: dict[str, Any], **_: Any) -> Any:
        resume_info[ON_SUBMITTING](True)
        paid.append(True)
        raise AssertionError("submitted without a stored mark")

    monkeypatch.setattr(kinema.engine, "run", fake_run)
    store.request_cancel(job.id, "o")
    store.delete(job.id, "o")  # the attempt lost the job: the driver cannot store the mark
    actor = KinemaActor("cpu-0")
    out: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: out.update(actor.run(job.id, ctx.attempt, job.request, "fal", None, pool.resume_info(ctx)))
    )
    runner.start()
    try:
        state = wait_for(lambda: (actor.poll(job.id) or {}).get("submitting") and actor.poll(job.id), timeout=10)
        pool._relay(ctx, _Handle(actor), state)
        runner.join(10)
        assert not paid and ctx.lost
        assert type(unpack_error(out["error"])).__name__ == "Cancelled"
    finally:
        actor.shutdown()
        store.close()
