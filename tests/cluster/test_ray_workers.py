"""``kinema worker --ray``: jobs from the store run on Ray actors, exactly once, placed by what they need.

One local Ray for the session (2 CPUs, 2 logical GPUs); each test starts a pool of a few actors on a SQLite store
(the killed-actor test on PostgreSQL too, where it can run: the store is what makes it safe).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kinema import VideoRequest, plan
from kinema.service.ray_workers import RayWorkerPool
from kinema.service.stores import Store

ray = pytest.importorskip("ray")


def submit(store: Store, prompt: str, backend: str, model: str | None = None, steps: int = 2) -> str:
    """Queue a video job as the API would (the request checked by plan() first)."""
    request: dict[str, Any] = {
        "prompt": prompt,
        "backend": backend,
        "num_inference_steps": steps,
        "seed": 1,
        "format": "mp4",
        "num_frames": 16 if backend == "builtin" else 2,
    }
    if model:
        request["model"] = model
    plan(VideoRequest(**request), seed=0)
    summary = {"prompt": prompt, "backend": backend, "model": f"{backend}/{model}" if model else backend}
    return store.submit_job(owner="t", request=request, summary=summary).id


def wait_done(store: Store, ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [store.get(i) for i in ids]
        if all(j is not None and j.status in ("completed", "failed", "cancelled") for j in jobs):
            return
        time.sleep(0.1)
    raise AssertionError(f"jobs not done in {timeout} s: {[(j.id, j.status) for j in jobs if j]}")


def log_lines(log: Path, word: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(word + " ")]


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the killed-actor test covers PostgreSQL
def test_jobs_run_once_each_placed_by_what_they_need(
    start_pool: Callable[..., RayWorkerPool], store: Store, fake_log: Path
) -> None:
    pool = start_pool(gpu_actors=1, cpu_actors=1)  # few actors: each is a process to start
    builtin = [submit(store, f"b{i}", "builtin") for i in range(2)]
    local = [submit(store, f"l{i}", "fakelocal", "m1") for i in range(2)]
    wait_done(store, builtin + local)
    for job_id in builtin + local:
        job = store.get(job_id)
        assert job is not None and job.status == "completed", (job_id, job and job.error)
        assert [a["outcome"] for a in store.attempts_of(job_id)] == ["completed"], "each job ran exactly once"
        assert job.output_path and Path(job.output_path).stat().st_size > 0
    placed = {job_id: (slot, where) for job_id, slot, where, _pid in pool.history}
    assert len(pool.history) == 4, pool.history
    assert {placed[j][1] for j in builtin} == {"cpu"} and all(placed[j][0].startswith("cpu-") for j in builtin)
    assert {placed[j][1] for j in local} == {"gpu"} and all(placed[j][0].startswith("gpu-") for j in local)
    starts = log_lines(fake_log, "start")
    assert len(starts) == 2, starts
    assert all("gpus=-" not in line for line in starts), "a local model ran on an actor without a GPU"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_jobs_own_error_fails_it_once(start_pool: Callable[..., RayWorkerPool], store: Store) -> None:
    start_pool(gpu_actors=1, cpu_actors=0)
    job_id = submit(store, "refuse this", "fakelocal", "m1")
    wait_done(store, [job_id])
    job = store.get(job_id)
    assert job is not None and job.status == "failed" and job.error is not None
    assert (job.error["code"], job.error["param"], job.error["type"]) == (
        "invalid_request",
        "prompt",
        "invalid_request_error",
    ), job.error
    assert "refused by the fake backend" in job.error["message"]
    assert len(store.attempts_of(job_id)) == 1 and job.crashes == 0, "not mistaken for a dead actor"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the driver's choice: the same on any store
def test_warm_model_affinity(start_pool: Callable[..., RayWorkerPool], store: Store, fake_log: Path) -> None:
    pool = start_pool(cpu_actors=0)
    models = ["m1", "m1", "m2", "m2", "m1"]  # least-recently-used alone would spread m1 over both
    for i, model in enumerate(models):  # one at a time: both GPU actors are free at every choice
        wait_done(store, [submit(store, f"w{i}", "fakelocal", model)])
    slots = [slot for _job, slot, _where, _pid in pool.history]
    by_model = {m: {s for s, mm in zip(slots, models, strict=True) if mm == m} for m in set(models)}
    assert len(by_model["m1"]) == 1 and len(by_model["m2"]) == 1 and by_model["m1"] != by_model["m2"], slots
    assert len(log_lines(fake_log, "load")) == 2, "each model loaded once, then found warm"
    warm = {d["loaded"][0] for d in pool.describe().values() if d["placement"] == "gpu"}
    assert warm == {"fakelocal/m1", "fakelocal/m2"}, pool.describe()
    # each actor's torch uses its CPU share (1 CPU per GPU actor here), not every core of the node
    assert {d["torch_threads"] for d in pool.describe().values()} == {1}, pool.describe()


def test_killed_actor_loses_no_job(start_pool: Callable[..., RayWorkerPool], store: Store, fake_log: Path) -> None:
    pool = start_pool(cpu_actors=0)
    job_id = submit(store, "kill me", "fakelocal", "m1", steps=20)  # 20 x 0.05 s: killed mid-run
    deadline = time.monotonic() + 30
    while not log_lines(fake_log, "start") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.history and log_lines(fake_log, "start"), "the job never started"
    victim = next(s for s in pool.slots if s.name == pool.history[0][1])
    ray.kill(victim.handle)  # no restart: the driver must replace it, and the store re-queue the job
    wait_done(store, [job_id], timeout=60)
    job = store.get(job_id)
    assert job is not None and job.status == "completed", job and job.error
    attempts = store.attempts_of(job_id)
    assert [a["outcome"] for a in attempts][-1] == "completed" and len(attempts) == 2, attempts
    assert job.crashes == 1, "the lost attempt counts as a crash"
    assert len(log_lines(fake_log, "done")) == 1, "the generation completed exactly once"
    assert len(log_lines(fake_log, "start")) == 2
    assert len(pool.history) == 2 and pool.history[0][3] != pool.history[1][3], "the retry ran on a live actor"
    time.sleep(0.5)  # nothing runs it again
    assert len(store.attempts_of(job_id)) == 2 and len(log_lines(fake_log, "start")) == 2
