"""Durability: kill -9 mid-job (R1), concurrent claims from 8 processes (R5), lease-owner checks (R4), the reaper,
attempt caps (R3) and graceful release (R2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import HERE, make_config, wait_for
from fastapi.testclient import TestClient

from kinema.service.app import create_app
from kinema.service.store import Store

ROOT = HERE.parent.parent
STORE_PY = ROOT / "src" / "kinema" / "service" / "store.py"


def _worker_env(log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KINEMA_EXTRA_BACKENDS"] = "slow=slow_backend:SlowBackend"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["KINEMA_SLOW_LOG"] = str(log)
    return env


def _start_worker(data_dir: Path, log: Path, lease: float = 3.0) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "kinema.cli", "worker", "--data-dir", str(data_dir), "--lease", str(lease)]
    return subprocess.Popen(cmd, env=_worker_env(log), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill9_mid_job_completes_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "slow.log"
    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "slow=slow_backend:SlowBackend")
    cfg = make_config(tmp_path, workers=0, lease_seconds=3.0)
    store = Store(cfg.db_path)
    key = store.create_key("t")[1]
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        video_id = client.post("/v1/videos", json={"prompt": "slow job", "backend": "slow", "steps": 40}).json()["id"]

        def status() -> dict:
            r = client.get(f"/v1/videos/{video_id}")
            assert r.status_code == 200, "the job must never be reported missing"
            return r.json()

        first = _start_worker(cfg.root, log)
        try:
            wait_for(lambda: status()["status"] == "in_progress" and status()["progress"] >= 10, timeout=60)
            task_id = store.get(video_id).provider_task_id
            assert task_id, "the provider task id is stored before the work starts"
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        after_kill = status()
        assert after_kill["status"] == "in_progress" and after_kill["attempts"] == 1
        assert "done" not in log.read_text()
        second = _start_worker(cfg.root, log)
        try:
            final = wait_for(lambda: (s := status())["status"] in ("completed", "failed") and s, timeout=90)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        assert final["status"] == "completed", final
        assert final["attempts"] == 2
        lines = log.read_text().splitlines()
        assert [ln.split()[0] for ln in lines] == ["start", "start", "done"], lines
        assert all(task_id in ln for ln in lines), "the retry resumed the same provider task"
        assert "resumed=True" in lines[1]
        outputs = sorted(p.name for p in cfg.outputs_dir.iterdir())
        # the second attempt published under its own name; the lost first attempt wrote nothing
        assert outputs == [f"{video_id}.a2.mp4", f"{video_id}.a2.mp4.json", f"{video_id}.a2.png"]
        assert list(cfg.work_dir.iterdir()) == []
        attempts = store.attempts_of(video_id)
        assert [a["outcome"] for a in attempts] == ["lost", "completed"]
        assert client.get(f"/v1/videos/{video_id}/content").status_code == 200
        assert second.returncode == 0, second.stderr.read() if second.stderr else ""
        assert store.integrity_ok()


CLAIMER = textwrap.dedent(
    """
    import json, sqlite3, sys, time
    import kinema.service.store as mod  # sys.argv[1] is its path, for the record
    store = mod.Store(sys.argv[2])
    claimed, errors = [], []
    while time.time() < float(sys.argv[3]):
        time.sleep(0.001)
    while True:
        try:
            job = store.claim(sys.argv[4], lease_seconds=60)
        except sqlite3.OperationalError as exc:
            errors.append(str(exc)); continue
        if job is None:
            break
        claimed.append(job.id)
    print(json.dumps({"claimed": claimed, "errors": errors}))
    """
)


def test_eight_processes_claim_200_jobs_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    store = Store(db)
    ids = {store.submit_job(owner="o", request={"prompt": f"p{i}"}, summary={}).id for i in range(200)}
    start = time.time() + 1.5  # all eight start claiming at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(STORE_PY), str(db), str(start), f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    claimed = [job for r in results for job in r["claimed"]]
    assert sum(len(r["errors"]) for r in results) == 0, [r["errors"] for r in results]
    assert len(claimed) == 200 and set(claimed) == ids
    assert store.queue_depth() == 0


def test_late_completion_of_a_superseded_attempt_is_rejected(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job = store.submit_job(owner="o", request={"prompt": "p"}, summary={}, max_attempts=3)
    first = store.claim("w1", lease_seconds=0.05)
    assert first is not None and first.attempts == 1
    time.sleep(0.1)
    assert store.reap() == [(job.id, "queued")]
    second = store.claim("w2", lease_seconds=30)
    assert second is not None and second.attempts == 2
    published = []
    ok = store.complete(
        job.id,
        "w1",
        1,
        result={},
        output_path="x",
        thumbnail_path=None,
        expires_at=0,
        publish=lambda: published.append("w1"),
    )
    assert not ok and published == []
    assert store.heartbeat(job.id, "w1", 1, 30) == (False, True)
    assert store.complete(
        job.id,
        "w2",
        2,
        result={},
        output_path="y",
        thumbnail_path=None,
        expires_at=0,
        publish=lambda: published.append("w2"),
    )
    assert published == ["w2"] and store.get(job.id).status == "completed"


def _crash(store: Store, times: int) -> None:
    for _ in range(times):
        assert store.claim("w", lease_seconds=0.01) is not None
        time.sleep(0.03)
        store.reap()


def test_crashes_do_not_spend_the_jobs_attempts(tmp_path: Path) -> None:
    """Workers killed under a healthy job (the campaign's crash loop) must not fail it: crashes are counted apart
    from max_attempts, and only a job that loses its worker MAX_CRASHES times in a row is quarantined."""
    store = Store(tmp_path / "db.sqlite3")
    job = store.submit_job(owner="o", request={"prompt": "p"}, summary={}, max_attempts=2)
    _crash(store, 3)  # three crashes: more than max_attempts, fewer than the crash budget
    got = store.get(job.id)
    assert got is not None and got.status == "queued" and (got.crashes, got.failures) == (3, 0)
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None and store.complete(
        job.id, "w", claimed.attempts, result={}, output_path="x", thumbnail_path=None, expires_at=0
    )


def test_a_job_that_keeps_crashing_its_worker_is_quarantined_and_can_be_requeued(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3", max_crashes=2)
    job = store.submit_job(owner="o", request={"prompt": "p"}, summary={}, max_attempts=3)
    _crash(store, 2)
    final = store.get(job.id)
    assert final is not None and final.status == "failed" and final.attempts == 2
    assert final.error is not None and final.error["code"] == "poison_job" and "quarantined" in final.error["message"]
    assert store.claim("w", lease_seconds=1) is None
    assert store.requeue(job.id, owner="someone else") is None  # only its owner (or an operator) may
    again = store.requeue(job.id, owner="o")
    assert again is not None and again.status == "queued" and (again.crashes, again.failures) == (0, 0)
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None and claimed.attempts == 3  # attempts keep counting: the lease guard stays unique


def test_own_failures_are_retried_up_to_max_attempts(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job = store.submit_job(owner="o", request={"prompt": "p"}, summary={}, max_attempts=2)
    _crash(store, 1)  # a crash in between does not count
    for expected in ("queued", "failed"):
        claimed = store.claim("w", lease_seconds=30)
        assert claimed is not None
        assert store.fail(job.id, "w", claimed.attempts, {"code": "x", "message": "m"}, retry_after=0) == expected
    got = store.get(job.id)
    assert got is not None and (got.failures, got.crashes) == (2, 1)


def test_the_database_is_private_to_the_service_user(tmp_path: Path) -> None:
    store = Store(tmp_path / "kinema.sqlite3")
    store.submit_job(owner="o", request={"prompt": "a tenant's prompt"}, summary={})
    for name in ("kinema.sqlite3", "kinema.sqlite3-wal", "kinema.sqlite3-shm"):
        path = tmp_path / name
        assert path.exists() and path.stat().st_mode & 0o077 == 0, (name, oct(path.stat().st_mode))


def test_an_idempotency_key_held_by_a_dead_process_is_recovered_at_once(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "db.sqlite3"
    # a process reserves a key and dies before committing its job (kill -9 between the two)
    code = (
        f"import os, kinema.service.store as m; s = m.Store({str(db)!r}); "
        "print(s.idempotency_begin('o', 'k', 'f', 3600).state); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "new", out.stderr
    held = sqlite3.connect(db).execute("SELECT holder FROM idempotency").fetchone()[0]
    store = Store(db)  # opening the store recovers it
    assert store.idempotency_begin("o", "k", "f", 3600).state == "new", held
    # a live holder's reservation is in flight, with a true Retry-After (when it will be taken over at the latest)
    found = store.idempotency_begin("o", "k", "f", 3600)
    assert found.state == "in_flight" and found.retry_after is not None and 100 <= found.retry_after <= 120


def test_store_from_an_earlier_version_gains_new_columns(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    store = Store(db)
    job = store.submit_job(owner="o", request={"prompt": "p"}, summary={})
    store.close()
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE jobs DROP COLUMN progress_detail")  # the schema before the column existed
    con.commit()
    con.close()
    store = Store(db)
    got = store.get(job.id)
    assert got is not None and got.progress_detail is None  # the old row survives
    claimed = store.claim("w1", lease_seconds=30)
    assert claimed is not None and claimed.id == job.id
    detail = {"step": 8, "total": 20, "eta_seconds": 1.5}
    assert store.update_progress(job.id, "w1", 1, 40, "denoising", detail)
    got = store.get(job.id)
    assert got is not None and got.progress == 40 and got.progress_detail == detail
    Store(db)  # a third open finds nothing to add


def test_store_pragmas_are_enforced(tmp_path: Path) -> None:
    con = Store(tmp_path / "db.sqlite3").connection()
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_graceful_stop_releases_a_running_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kinema.service.worker import WorkerPool

    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "slow=slow_backend:SlowBackend")
    cfg = make_config(tmp_path)
    store = Store(cfg.db_path)
    job = store.submit_job(
        owner="o", request={"prompt": "p", "backend": "slow", "num_inference_steps": 200}, summary={}
    )
    pool = WorkerPool(store, cfg, threads=1)
    pool.start()
    wait_for(lambda: store.get(job.id).progress > 0, timeout=30)
    pool.stop(graceful=True, timeout=0.3)  # grace too short for 20 s of work: abort and release
    released = store.get(job.id)
    assert released.status == "queued" and released.attempts == 1 and released.worker is None
    assert pool.aborted
    assert [a["outcome"] for a in store.attempts_of(job.id)] == ["released"]


def test_worker_process_sigterm_twice_aborts_and_requeues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "slow=slow_backend:SlowBackend")
    cfg = make_config(tmp_path, workers=0)
    store = Store(cfg.db_path)
    job = store.submit_job(
        owner="o", request={"prompt": "p", "backend": "slow", "num_inference_steps": 400}, summary={}
    )
    proc = _start_worker(cfg.root, tmp_path / "slow.log", lease=5)
    try:
        wait_for(lambda: store.get(job.id).progress > 0, timeout=60)
        proc.send_signal(signal.SIGTERM)  # first: stop claiming, let the job run on
        time.sleep(0.5)
        assert proc.poll() is None and store.get(job.id).status == "in_progress"
        proc.send_signal(signal.SIGTERM)  # second: abort and re-queue
        assert proc.wait(30) == 1, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    released = store.get(job.id)
    assert released.status == "queued" and released.attempts == 1 and released.worker is None


def test_a_revoked_key_stops_working_at_once_in_every_process(tmp_path: Path) -> None:
    server, cli = Store(tmp_path / "db.sqlite3"), Store(tmp_path / "db.sqlite3")  # two processes' stores
    key_id, secret = cli.create_key("tenant")
    assert server.authenticate(secret) == key_id  # now cached in the server for cache_seconds
    assert cli.revoke_key(key_id)
    assert server.authenticate(secret) is None  # not 5 s later: now
