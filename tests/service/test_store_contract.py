"""The job store's contract (kinema.service.stores.Store), run against both stores: SQLite and PostgreSQL (a real
server, started once per session by the ``pg_server`` fixture; these cases are skipped where PostgreSQL or psycopg
is missing). The PostgreSQL store's schema migrations are tested at the end."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg
import pytest

from kinema.errors import StoreError
from kinema.service import stores
from kinema.service.store import IDEMPOTENCY_STALE_SECONDS, Job
from kinema.service.stores import open_store

Opener = Callable[..., stores.Store]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, url) of a fresh, empty store."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path}/db.sqlite3"
        return
    server = request.getfixturevalue("pg_server")
    url = server.new_schema()  # a schema per test: as isolated as a database here, and cheaper
    yield "postgres", url
    server.drop_schema(url)


@pytest.fixture
def opener(backend: tuple[str, str]) -> Iterator[Opener]:
    """Opens store objects on the test's store (each like another process's); closes them at the end."""
    opened: list[stores.Store] = []

    def open_(**options: Any) -> stores.Store:
        store = open_store(backend[1], **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> stores.Store:
    return opener()


def _sql(store: stores.Store, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Write behind the store's back (to age a row): ``?`` placeholders, either store."""
    from kinema.service.store import Store as SQLite

    if isinstance(store, SQLite):
        store.connection().execute(statement, params)
    else:
        with store.transaction() as con:  # type: ignore[attr-defined]
            con.execute(statement.replace("?", "%s"), params)


def _submit(store: stores.Store, n: int = 1, owner: str = "o", **kw: Any) -> list[Job]:
    return [store.submit_job(owner=owner, request={"prompt": f"p{i}"}, summary={"i": i}, **kw) for i in range(n)]


def _done(store: stores.Store, job: Job, publish: Callable[[], None] | None = None) -> bool:
    return store.complete(
        job.id,
        job.worker or "",
        job.attempts,
        result={"ok": 1},
        output_path="out.mp4",
        thumbnail_path="out.png",
        expires_at=time.time() + 60,
        publish=publish,
    )


# -- provider callbacks, the submitting mark, budgets and usage ------------------------------------------------------
def test_callback_token_is_made_once_and_kept(store: stores.Store) -> None:
    (job,) = _submit(store)
    token = store.callback_token(job.id)
    assert token and len(token) >= 24 and store.callback_token(job.id) == token
    got = store.get(job.id)
    assert got is not None and got.callback_token == token
    assert store.callback_token("video_missing") is None
    (other,) = _submit(store)
    assert store.callback_token(other.id) != token


def test_poll_hints_are_recorded_for_live_jobs_only(store: stores.Store) -> None:
    a, b = _submit(store, 2)
    assert store.poll_hints([a.id, b.id]) == {}
    before = time.time()
    assert store.record_poll_hint(a.id) is True
    hints = store.poll_hints([a.id, b.id])
    assert list(hints) == [a.id] and hints[a.id] >= before
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None and _done(store, claimed)
    assert store.record_poll_hint(claimed.id) is False  # a finished job takes no more hints
    assert store.record_poll_hint("video_missing") is False
    assert store.poll_hints([]) == {}


def test_submitting_mark_is_set_cleared_by_the_task_id_and_by_an_operator_retry(store: stores.Store) -> None:
    _submit(store, max_attempts=1)
    job = store.claim("w", lease_seconds=30)
    assert job is not None and job.submitting_at is None
    assert store.mark_submitting(job.id, "other-worker", job.attempts) is False  # not this attempt's job
    assert store.mark_submitting(job.id, "w", job.attempts) is True
    marked = store.get(job.id)
    assert marked is not None and marked.submitting_at is not None and marked.provider_task_id is None
    assert store.mark_submitting(job.id, "w", job.attempts, False) is True  # the provider refused the submit
    cleared = store.get(job.id)
    assert cleared is not None and cleared.submitting_at is None
    assert store.mark_submitting(job.id, "w", job.attempts) is True
    assert store.set_provider_task(job.id, "w", job.attempts, "task-1", {"k": 1})
    recorded = store.get(job.id)
    assert recorded is not None and recorded.submitting_at is None and recorded.provider_task_id == "task-1"
    assert store.mark_submitting(job.id, "w", job.attempts) is True
    assert store.fail(job.id, "w", job.attempts, {"code": "submit_unconfirmed"}) == "failed"
    failed = store.get(job.id)
    assert failed is not None and failed.submitting_at is not None  # kept for review
    requeued = store.requeue(job.id)
    assert requeued is not None and requeued.submitting_at is None  # the operator decided: submit again


def test_key_budgets_and_usage_rows(store: stores.Store) -> None:
    plain, _ = store.create_key("plain")
    capped, _ = store.create_key("capped", budget=(10.0, "USD"))
    assert store.key_budget(plain) is None and store.key_budget(capped) == (10.0, "USD")
    assert store.key_budget("key_missing") is None
    listed = {k["id"]: k for k in store.list_keys()}
    assert listed[capped]["budget_amount"] == 10.0 and listed[capped]["budget_currency"] == "USD"
    assert listed[plain]["budget_amount"] is None
    first, second = _submit(store, 2, owner=capped)
    _submit(store, owner=plain)
    job = store.claim("w", lease_seconds=30)
    assert job is not None and job.id == first.id
    assert store.complete(
        job.id,
        "w",
        job.attempts,
        result={"cost": {"usd": 1.5, "estimate": True}},
        output_path="o.mp4",
        thumbnail_path=None,
        expires_at=time.time() + 60,
    )
    rows = store.usage_rows(capped)
    assert [r["id"] for r in rows] == [first.id, second.id]
    assert rows[0]["status"] == "completed" and rows[0]["result"] == {"cost": {"usd": 1.5, "estimate": True}}
    assert rows[0]["request"] == {"prompt": "p0"} and rows[1]["result"] is None
    assert store.usage_rows(capped, since=time.time() + 60) == []


# -- jobs ----------------------------------------------------------------------------------------------------------
def test_both_stores_satisfy_the_contract(store: stores.Store) -> None:
    assert isinstance(store, stores.Store)
    assert store.integrity_ok()
    store.checkpoint()


def test_job_stats_count_every_owner_by_status_kind_and_lease(opener: Opener) -> None:
    from kinema.service.metrics import scan_job_stats
    from kinema.service.store import JobStats

    store, other = opener(), opener()
    assert store.job_stats() == JobStats(), "an empty store: nothing, no oldest job"
    key_id, _ = store.create_key("k")
    first = _submit(store, 2, owner=key_id)[0]
    _submit(store, 3, owner="local")
    _submit(store, 2, owner="o", kind="storyboard")
    _sql(store, "UPDATE jobs SET created_at=? WHERE id=?", (1000.5, first.id))
    live = other.claim("w-live", lease_seconds=60)
    done = other.claim("w-live", lease_seconds=60)
    dead = other.claim("w-dead", lease_seconds=-1)  # its worker is gone: the lease passed, not yet reaped
    failed = other.claim("w-x", lease_seconds=60, kinds=("storyboard",))
    assert live and done and dead and failed and live.id == first.id
    assert _done(other, done)
    assert other.fail(failed.id, "w-x", 1, {"code": "x", "message": "m"}) == "failed"
    _sql(store, "UPDATE jobs SET crashes=2 WHERE id=?", (done.id,))
    stats = store.job_stats()
    assert stats.jobs == {
        ("queued", "video"): 2,
        ("in_progress", "video"): 2,
        ("completed", "video"): 1,
        ("failed", "storyboard"): 1,
        ("queued", "storyboard"): 1,
    }
    assert (stats.attempts, stats.crashes) == (4, 2)
    assert stats.leases == {"w-live": 1} and stats.expired_leases == 1
    queued = [j for j in store.list_jobs("local", order="asc")[0] if j.status == "queued"]
    assert stats.oldest_queued_at == min(j.created_at for j in queued)
    assert stats == scan_job_stats(other, owners=["o"]), "the database's counts are what reading every job gives"
    later = store.job_stats(now=time.time() + 120)
    assert later.leases == {} and later.expired_leases == 2, "leases expire at the given time"
    assert [i for i, _ in store.reap()] == [dead.id]
    assert store.job_stats().expired_leases == 0 and store.job_stats().jobs[("queued", "video")] == 3


def test_submit_claim_heartbeat_progress_complete_with_publish(opener: Opener) -> None:
    store, other = opener(), opener()
    job = store.submit_job(
        owner="o",
        request={"prompt": "a red ball"},
        summary={"s": 1},
        webhook_url="https://x.test/h",
        metadata={"m": "v"},
    )
    assert job.status == "queued" and job.attempts == 0 and job.request == {"prompt": "a red ball"}
    assert other.get(job.id) == job and other.get(job.id, "someone else") is None and other.get("nope") is None
    claimed = other.claim("w1", lease_seconds=30)
    assert claimed is not None and claimed.id == job.id and claimed.status == "in_progress"
    assert (claimed.worker, claimed.attempts) == ("w1", 1) and claimed.lease_until and claimed.started_at
    assert other.claim("w2", lease_seconds=30) is None
    assert store.heartbeat(job.id, "w1", 1, 60) == (True, False)
    assert store.update_progress(job.id, "w1", 1, 40, "denoising", {"step": 4, "total": 10})
    assert store.update_progress(job.id, "w1", 1, 30, "denoising")  # the percentage never goes back
    got = store.get(job.id)
    assert got is not None and got.progress == 40 and got.progress_detail is None and got.stage == "denoising"
    assert store.set_provider_task(job.id, "w1", 1, "task-9", {"provider": "x"})
    seen: list[str | None] = []

    def publish() -> None:  # runs inside the completing transaction: nobody else sees "completed" yet
        row = other.get(job.id)
        seen.append(row.status if row else None)

    assert _done(store, claimed, publish)
    assert seen == ["in_progress"]
    final = other.get(job.id)
    assert final is not None and final.status == "completed" and final.progress == 100 and final.terminal
    assert final.result == {"ok": 1} and final.output_path == "out.mp4" and final.provider_task_id == "task-9"
    assert final.webhook_url == "https://x.test/h" and final.metadata == {"m": "v"}
    assert [(a["attempt"], a["worker"], a["outcome"]) for a in store.attempts_of(job.id)] == [(1, "w1", "completed")]
    assert not _done(store, claimed), "completion is exactly once"


def test_a_publish_that_raises_changes_nothing(store: stores.Store) -> None:
    _submit(store)
    job = store.claim("w", lease_seconds=30)
    assert job is not None

    def boom() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _done(store, job, boom)
    got = store.get(job.id)
    assert got is not None and got.status == "in_progress" and got.output_path is None
    assert _done(store, job)


def test_a_superseded_attempt_can_write_nothing(store: stores.Store) -> None:
    (job,) = _submit(store, max_attempts=3)
    first = store.claim("w1", lease_seconds=0.05)
    assert first is not None
    time.sleep(0.1)
    assert store.reap() == [(job.id, "queued")]
    second = store.claim("w2", lease_seconds=30)
    assert second is not None and second.attempts == 2
    published: list[str] = []
    assert store.heartbeat(job.id, "w1", 1, 30) == (False, True)
    assert not store.update_progress(job.id, "w1", 1, 90, "x")
    assert not store.set_provider_task(job.id, "w1", 1, "t", {})
    assert not store.complete(
        job.id,
        "w1",
        1,
        result={},
        output_path="x",
        thumbnail_path=None,
        expires_at=0,
        publish=lambda: published.append("w1"),
    )
    assert store.fail(job.id, "w1", 1, {"code": "x", "message": "m"}) is None
    assert not store.release(job.id, "w1", 1, "bye")
    assert not store.finish_cancelled(job.id, "w1", 1)
    assert not store.heartbeat(job.id, "w2", 1, 30)[0], "the same worker with another attempt number is refused too"
    got = store.get(job.id)
    assert got is not None and got.status == "in_progress" and got.progress == 0 and got.provider_task_id is None
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
    assert published == ["w2"]
    assert [a["outcome"] for a in store.attempts_of(job.id)] == ["lost", "completed"]


def test_the_reaper_never_requeues_a_job_in_the_middle_of_its_completion(opener: Opener) -> None:
    store, reaper = opener(), opener()
    (job,) = _submit(store)
    claimed = store.claim("w", lease_seconds=0.05)
    assert claimed is not None
    time.sleep(0.1)  # the lease expired, but the worker is alive and completing
    publishing, reaped = threading.Event(), []

    def slow_publish() -> None:
        publishing.set()
        time.sleep(0.5)

    def reap() -> None:
        publishing.wait(10)
        reaped.extend(reaper.reap())

    t = threading.Thread(target=reap)
    t.start()
    assert _done(store, claimed, slow_publish)
    t.join(10)
    got = store.get(job.id)
    assert reaped == [] and got is not None and got.status == "completed"
    assert reaper.reap() == [] and reaper.claim("w2", lease_seconds=30) is None


def test_fail_with_retry_until_max_attempts(store: stores.Store) -> None:
    (job,) = _submit(store, max_attempts=2)
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None
    assert store.fail(job.id, "w", 1, {"code": "x", "message": "m"}, retry_after=0.3) == "queued"
    assert store.claim("w", lease_seconds=30) is None, "not before retry_after"
    got = store.get(job.id)
    assert got is not None and got.stage == "retrying" and got.error == {"code": "x", "message": "m"}
    time.sleep(0.35)
    again = store.claim("w", lease_seconds=30)
    assert again is not None and again.attempts == 2
    assert store.fail(job.id, "w", 2, {"code": "y", "message": "m"}, retry_after=0) == "failed"
    got = store.get(job.id)
    assert got is not None and got.status == "failed" and (got.failures, got.crashes) == (2, 0)
    assert got.error == {"code": "y", "message": "m"} and got.completed_at is not None
    # without retry_after a failure is final at once
    (other,) = _submit(store, max_attempts=5)
    c = store.claim("w", lease_seconds=30)
    assert c is not None and store.fail(other.id, "w", 1, {"code": "z", "message": "m"}) == "failed"
    assert [a["outcome"] for a in store.attempts_of(job.id)] == ["retry", "failed"]


def test_crashes_are_counted_apart_then_quarantined_and_requeued(opener: Opener) -> None:
    store = opener(max_crashes=3)
    (job,) = _submit(store, max_attempts=1)
    for n in range(1, 4):
        assert store.claim("w", lease_seconds=0.01) is not None
        time.sleep(0.03)
        assert store.reap() == [(job.id, "queued" if n < 3 else "failed")]
        got = store.get(job.id)
        assert got is not None and got.crashes == n and got.failures == 0
    assert got is not None and got.status == "failed" and got.error is not None and got.error["code"] == "poison_job"
    assert store.claim("w", lease_seconds=1) is None
    assert store.reap() == []
    assert store.requeue(job.id, owner="someone else") is None
    again = store.requeue(job.id, owner="o")
    assert again is not None and again.status == "queued" and (again.crashes, again.failures) == (0, 0)
    assert store.requeue(job.id) is None, "only failed jobs"
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None and claimed.attempts == 4
    assert [a["outcome"] for a in store.attempts_of(job.id)] == ["lost", "lost", "lost", None]


def test_status_summary_shows_queue_running_failures_and_quarantine(opener: Opener) -> None:
    store = opener(max_crashes=1)
    empty = store.status_summary(time.time() - 3600)
    assert empty["jobs"] == {"queued": 0, "in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert empty["queue"] == {"depth": 0, "oldest_age_seconds": None} and empty["running"] == []
    poison, boom, old, running, *queued = _submit(store, 6, max_attempts=1)
    assert store.claim("w0", lease_seconds=0.01) is not None
    time.sleep(0.03)
    assert store.reap() == [(poison.id, "failed")]  # its one crash quarantines it
    for job, code in ((boom, "boom"), (old, "old")):
        assert store.claim("w1", lease_seconds=30) is not None
        assert store.fail(job.id, "w1", 1, {"code": code, "message": "m"}) == "failed"
    _sql(store, "UPDATE jobs SET completed_at=? WHERE id=?", (time.time() - 7200, old.id))  # failed 2 h ago
    assert store.claim("w2", lease_seconds=30) is not None
    _sql(store, "UPDATE jobs SET created_at=? WHERE id=?", (time.time() - 600, queued[0].id))
    got = store.status_summary(time.time() - 3600)
    assert got["jobs"] == {"queued": 2, "in_progress": 1, "completed": 0, "failed": 3, "cancelled": 0}
    assert got["queue"]["depth"] == 2 and 599 <= got["queue"]["oldest_age_seconds"] <= 660
    (run,) = got["running"]
    assert (run["id"], run["worker"], run["attempt"], run["kind"]) == (running.id, "w2", 1, "video")
    assert 0 <= run["running_seconds"] < 60 and 25 < run["lease_left_seconds"] <= 30
    assert got["failed_recently"]["total"] == 2, "the one failed 2 h ago is not recent"
    assert got["failed_recently"]["by_code"] == {"boom": 1, "poison_job": 1}
    assert got["quarantined"]["total"] == 1
    assert [(j["id"], j["crashes"]) for j in got["quarantined"]["jobs"]] == [(poison.id, 1)]


def test_release_gives_the_job_back(store: stores.Store) -> None:
    (job,) = _submit(store)
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None and store.release(job.id, "w", 1, "shutting down")
    got = store.get(job.id)
    assert got is not None and got.status == "queued" and got.worker is None and got.attempts == 1
    assert store.attempts_of(job.id)[0]["outcome"] == "released"
    assert store.claim("w", lease_seconds=30) is not None


def test_cancel_queued_and_running(store: stores.Store) -> None:
    queued, running, dying = _submit(store, 3)
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None and claimed.id == queued.id
    assert store.request_cancel(queued.id, "someone else") is None
    got = store.request_cancel(queued.id, "o")  # running: flagged, its worker sees it at its next heartbeat
    assert got is not None and got.status == "in_progress" and got.cancel_requested
    assert store.heartbeat(queued.id, "w", 1, 30) == (True, True)
    assert store.finish_cancelled(queued.id, "w", 1)
    got = store.get(queued.id)
    assert got is not None and got.status == "cancelled" and got.error is not None
    got = store.request_cancel(running.id, "o")  # queued: cancelled at once, never claimed
    assert got is not None and got.status == "cancelled"
    c = store.claim("w", lease_seconds=0.01)
    assert c is not None and c.id == dying.id
    store.request_cancel(dying.id, "o")
    time.sleep(0.03)
    assert store.reap() == [(dying.id, "cancelled")], "a cancellation whose worker died is finished by the reaper"
    assert store.claim("w", lease_seconds=30) is None


def test_delete(store: stores.Store) -> None:
    a, b = _submit(store, 2)
    claimed = store.claim("w", lease_seconds=30)
    assert claimed is not None
    assert store.delete(a.id, "someone else") is None
    gone = store.delete(a.id, "o")
    assert gone is not None and gone.id == a.id and store.get(a.id) is None and store.attempts_of(a.id) == []
    assert not store.heartbeat(a.id, "w", 1, 30)[0] and not _done(store, claimed)
    assert store.delete(a.id, "o") is None and store.delete(b.id, "o") is not None


def test_list_pages_queue_depth_and_active_counts(store: stores.Store) -> None:
    jobs = _submit(store, 5)
    _submit(store, 2, owner="other")
    page, more = store.list_jobs("o", limit=2)
    assert [j.id for j in page] == [jobs[4].id, jobs[3].id] and more
    page, more = store.list_jobs("o", limit=2, after=page[-1].id)
    assert [j.id for j in page] == [jobs[2].id, jobs[1].id] and more
    page, more = store.list_jobs("o", limit=2, after=page[-1].id)
    assert [j.id for j in page] == [jobs[0].id] and not more
    page, more = store.list_jobs("o", limit=3, order="asc", after=jobs[0].id)
    assert [j.id for j in page] == [j.id for j in jobs[1:4]] and more
    with pytest.raises(KeyError):
        store.list_jobs("o", after="video_nope")
    with pytest.raises(KeyError):
        store.list_jobs("o", after=store.list_jobs("other")[0][0].id)
    assert store.queue_depth() == 7 and store.active_count("o") == 5 and store.active_count("nobody") == 0
    c = store.claim("w", lease_seconds=30)
    assert c is not None and _done(store, c)
    assert store.queue_depth() == 6 and store.active_count("o") == 4
    assert store.claim("w", lease_seconds=30, kinds=("storyboard",)) is None
    (sb,) = _submit(store, kind="storyboard")
    got = store.claim("w", lease_seconds=30, kinds=("storyboard",))
    assert got is not None and got.id == sb.id and got.kind == "storyboard"


def test_expired_outputs_and_forget(store: stores.Store) -> None:
    (job,) = _submit(store)
    c = store.claim("w", lease_seconds=30)
    assert c is not None
    assert store.complete(
        job.id, "w", 1, result={}, output_path="o.mp4", thumbnail_path="o.png", expires_at=time.time() - 1
    )
    assert [j.id for j in store.expired_outputs()] == [job.id]
    store.forget_outputs(job.id)
    got = store.get(job.id)
    assert got is not None and got.output_path is None and got.thumbnail_path is None
    assert store.expired_outputs() == []


def test_submit_job_future_from_many_threads(store: stores.Store) -> None:
    futures = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        f = store.submit_job_future(owner="o", request={"prompt": f"p{i}"}, summary={})
        with lock:
            futures.append(f)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = [f.result(timeout=30) for f in futures]
    assert len({j.id for j in jobs}) == 40 and store.queue_depth() == 40
    seqs = [j.seq for j in jobs]
    assert len(set(seqs)) == 40 and all(s > 0 for s in seqs)


def test_wake_waiters_ends_a_wait_and_a_submit_wakes_its_own_process_at_once(opener: Opener) -> None:
    store = opener()
    assert store.wait_for_work(0.05) is False  # (PostgreSQL: the LISTEN connection is up from here on)
    results: list[tuple[bool, float]] = []

    def wait() -> None:
        began = time.monotonic()
        results.append((store.wait_for_work(10), time.monotonic() - began))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    store.wake_waiters()  # a stopping pool: no job, but the wait ends now
    waiter.join(5)
    assert results and results[0][0] is True and results[0][1] < 1.0
    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    submitted = time.monotonic()
    _submit(store)
    waiter.join(5)
    assert results[1][0] is True and time.monotonic() - submitted < 0.5


def test_wait_for_work(opener: Opener) -> None:
    store, other = opener(), opener()
    began = time.monotonic()
    assert store.wait_for_work(0.3) is False and time.monotonic() - began >= 0.29
    threading.Timer(0.3, lambda: _submit(other)).start()
    began = time.monotonic()
    assert store.wait_for_work(10) is True
    assert time.monotonic() - began < 2.0
    assert store.wait_for_work(0.1, kinds=("storyboard",)) is False, "another kind's job is no work"
    assert store.wait_for_work(0.1) is True, "a job already waiting is found at once"
    c = store.claim("w", lease_seconds=30)
    assert c is not None
    assert store.fail(c.id, "w", 1, {"code": "x", "message": "m"}, retry_after=0.5) == "queued"
    began = time.monotonic()
    assert store.wait_for_work(5) is True, "a delayed retry wakes its waiter when it becomes runnable"
    assert 0.3 <= time.monotonic() - began < 2.0


# -- idempotency keys ----------------------------------------------------------------------------------------------
def test_idempotency_new_replay_mismatch_in_flight(opener: Opener) -> None:
    store, other = opener(), opener()
    assert store.idempotency_begin("o", "k", "f1", 3600).state == "new"
    in_flight = other.idempotency_begin("o", "k", "f1", 3600)
    assert in_flight.state == "in_flight" and in_flight.retry_after is not None
    assert 100 <= in_flight.retry_after <= IDEMPOTENCY_STALE_SECONDS
    assert other.idempotency_begin("o", "k", "f2", 3600).state == "mismatch"
    assert other.idempotency_begin("o2", "k", "f2", 3600).state == "new", "keys are scoped per owner"
    job = store.submit_job(owner="o", request={}, summary={}, idempotency=("k", lambda j: (200, j.id.encode())))
    replay = other.idempotency_begin("o", "k", "f1", 3600)
    assert (replay.state, replay.status, replay.body) == ("replay", 200, job.id.encode())
    # an answer without a job (an error), a released reservation, an expired key
    assert store.idempotency_begin("o", "e", "f", 3600).state == "new"
    store.idempotency_finish("o", "e", 422, b'{"error": 1}')
    assert other.idempotency_begin("o", "e", "f", 3600) == stores.IdempotencyState("replay", 422, b'{"error": 1}')
    assert store.idempotency_begin("o", "r", "f", 3600).state == "new"
    store.idempotency_release("o", "r")
    assert other.idempotency_begin("o", "r", "f", 3600).state == "new"
    _sql(store, "UPDATE idempotency SET created_at=created_at-? WHERE key='k'", (7200.0,))
    assert other.idempotency_begin("o", "k", "f2", 3600).state == "new", "past its ttl a key is forgotten"
    # a reservation older than the staleness bound belongs to a request that died: taken over
    _sql(store, "UPDATE idempotency SET created_at=created_at-? WHERE key='r'", (IDEMPOTENCY_STALE_SECONDS + 1,))
    assert store.idempotency_begin("o", "r", "f", 3600).state == "new"


def test_idempotency_reserved_by_a_dead_process_is_recovered(backend: tuple[str, str], opener: Opener) -> None:
    code = (
        f"import os; from kinema.service.stores import open_store; s = open_store({backend[1]!r}); "
        "print(s.idempotency_begin('o', 'k', 'f', 3600).state); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "new", out.stderr
    store = opener()  # opening recovers it
    assert store.idempotency_begin("o", "k", "f", 3600).state == "new"
    assert store.idempotency_begin("o", "k", "f", 3600).state == "in_flight", "this live process holds it now"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "in_flight", out.stderr
    # held by a dead process, found by a store that was already open: taken over at once too
    code2 = code.replace("'k'", "'k2'")
    out = subprocess.run([sys.executable, "-c", code2], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "new", out.stderr
    assert store.idempotency_begin("o", "k2", "f", 3600).state == "new"


def test_concurrent_first_requests_with_one_key_reserve_it_once(opener: Opener) -> None:
    store = opener()
    results: list[str] = []
    barrier = threading.Barrier(8)

    def begin() -> None:
        barrier.wait()
        results.append(store.idempotency_begin("o", "same", "f", 3600).state)

    threads = [threading.Thread(target=begin) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["in_flight"] * 7 + ["new"]


# -- API keys ------------------------------------------------------------------------------------------------------
def test_api_keys_and_immediate_revocation_across_store_objects(opener: Opener) -> None:
    server, cli = opener(), opener()
    key_id, secret = cli.create_key("tenant")
    other_id, other_secret = cli.create_key("other")
    assert secret.startswith("kin_") and key_id.startswith("key_")
    assert server.authenticate(secret) == key_id  # now cached in the server
    assert server.authenticate(other_secret) == other_id
    assert server.authenticate("kin_wrong") is None
    keys = cli.list_keys()
    assert [k["id"] for k in keys] == [key_id, other_id] and keys[0]["prefix"] == secret[:8]
    assert all(secret not in str(k) for k in keys)
    assert cli.revoke_key(key_id) and not cli.revoke_key(key_id)
    assert server.authenticate(secret) is None  # not cache_seconds later: now
    assert server.authenticate(other_secret) == other_id
    assert cli.list_keys()[0]["revoked_at"] is not None


# -- webhook deliveries --------------------------------------------------------------------------------------------
def test_webhook_outbox(opener: Opener) -> None:
    store, other = opener(), opener()
    first = store.enqueue_delivery("video_1", "https://a.test/h", "video.completed", {"id": "video_1"})
    second = store.enqueue_delivery("video_2", "https://b.test/h", "video.failed", {"id": "video_2"})
    got = store.claim_deliveries("s1", limit=1, lease_seconds=0.3)
    assert [d["id"] for d in got] == [first] and got[0]["sender"] == "s1" and got[0]["state"] == "pending"
    assert [d["id"] for d in other.claim_deliveries("s2", limit=10, lease_seconds=30)] == [second]
    assert other.claim_deliveries("s2", limit=10, lease_seconds=30) == [], "leased deliveries are not claimed again"
    assert store.record_delivery(first, status=500, error="boom", state="pending", next_at=time.time()) == 1
    again = other.claim_deliveries("s2", limit=10, lease_seconds=0.2)
    assert [d["id"] for d in again] == [first] and again[0]["attempts"] == 1 and again[0]["last_status"] == 500
    time.sleep(0.25)  # the lease ran out without a recorded attempt (a sender died): claimable again
    assert [d["id"] for d in store.claim_deliveries("s3", limit=10, lease_seconds=30)] == [first]
    assert store.record_delivery(first, status=200, error=None, state="delivered", next_at=None) == 2
    (d,) = other.deliveries("video_1")
    assert d["state"] == "delivered" and d["attempts"] == 2 and d["lease_until"] is None
    assert [(a["n"], a["status"], a["error"]) for a in d["log"]] == [(1, 500, "boom"), (2, 200, None)]
    assert len(other.deliveries()) == 2
    assert not store.endpoint_disabled("https://b.test/h")
    store.disable_endpoint("https://b.test/h", "410 Gone")
    store.disable_endpoint("https://b.test/h", "410 Gone again")
    assert other.endpoint_disabled("https://b.test/h")
    assert other.deliveries("video_2")[0]["state"] == "disabled"


# -- concurrency ---------------------------------------------------------------------------------------------------
def test_four_processes_claim_200_jobs_exactly_once(backend: tuple[str, str], store: stores.Store) -> None:
    ids = {j.id for j in _submit(store, 200)}
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Barrier(4), ctx.Queue()  # all four start claiming at the same moment
    procs = [ctx.Process(target=pg.claim_until_empty, args=(backend[1], f"w{i}", ready, out)) for i in range(4)]
    for p in procs:
        p.start()
    try:
        results = dict(out.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    claimed = [job for r in results.values() for job in r]
    assert len(claimed) == 200 and set(claimed) == ids, {w: len(r) for w, r in results.items()}
    assert store.queue_depth() == 0
    assert all(len(store.attempts_of(i)) == 1 for i in list(ids)[:20])


def test_admission_limits_hold_for_two_processes_of_four_threads(
    backend: tuple[str, str], store: stores.Store
) -> None:
    _submit(store, 10)  # already queued: the bound counts them
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=pg.submit_until_refused, args=(backend[1], 60, 40, ready, out)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert sum(accepted for accepted, _ in results) == 30, results
    assert sum(refused for _, refused in results) == 90
    assert store.queue_depth() == 40


def test_admission_limits_per_owner_and_refusal_writes_nothing(store: stores.Store) -> None:
    limits = stores.AdmissionLimits(max_queued=100, max_active_per_owner=3)
    jobs = _submit(store, 3, owner="a", limits=limits)
    with pytest.raises(stores.AdmissionRefused) as info:
        _submit(store, 1, owner="a", limits=limits)
    assert (info.value.reason, info.value.limit) == ("too_many_active_jobs", 3)
    assert len(store.list_jobs("a", limit=10)[0]) == 3  # the refused job was not written
    _submit(store, 2, owner="b", limits=limits)  # another owner has its own count
    claimed = store.claim("w", lease_seconds=60)
    assert claimed is not None and claimed.owner == "a"
    with pytest.raises(stores.AdmissionRefused):  # running jobs count as active too
        _submit(store, 1, owner="a", limits=limits)
    assert _done(store, claimed)
    _submit(store, 1, owner="a", limits=limits)  # a finished job frees its place
    with pytest.raises(stores.AdmissionRefused) as info:
        _submit(store, 1, owner="c", limits=stores.AdmissionLimits(max_queued=store.queue_depth()))
    assert info.value.reason == "queue_full"
    assert len(jobs) == 3


def test_admission_refusals_in_one_group_commit_fail_alone(store: stores.Store) -> None:
    limits = stores.AdmissionLimits(max_queued=5)
    futures = [
        store.submit_job_future(owner="o", request={"prompt": str(i)}, summary={}, limits=limits) for i in range(20)
    ]
    outcomes = [f.exception(timeout=30) for f in futures]
    assert sum(e is None for e in outcomes) == 5
    assert all(isinstance(e, stores.AdmissionRefused) for e in outcomes if e is not None)
    assert store.queue_depth() == 5


# -- open_store ----------------------------------------------------------------------------------------------------
def test_open_store_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kinema.service.store import Store as SQLite

    a = open_store(tmp_path / "a.db")
    b = open_store(f"sqlite:///{tmp_path}/b.db")
    monkeypatch.chdir(tmp_path)
    c = open_store("sqlite:///rel/c.db")
    assert all(isinstance(s, SQLite) for s in (a, b, c))
    assert (tmp_path / "b.db").exists() and (tmp_path / "rel" / "c.db").exists()
    with pytest.raises(ValueError, match="unknown store URL"):
        open_store("mysql://x/y")
    assert stores.SQLiteStore is SQLite


# -- the PostgreSQL store's schema migrations ----------------------------------------------------------------------
@pytest.fixture
def pg_url(pg_server: pg.PgServer) -> Iterator[str]:
    url = pg_server.new_schema("m")
    yield url
    pg_server.drop_schema(url)


@pytest.fixture
def pg_database(pg_server: pg.PgServer) -> Iterator[str]:
    url = pg_server.new_database("d")
    yield url
    pg_server.drop_database(url)


def _versions(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url) as con:
        return [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")]


def test_migrations_from_an_empty_database(pg_url: str) -> None:
    from kinema.service.store_postgres import LATEST_VERSION, PostgresStore, migrate_schema

    store = PostgresStore(pg_url)
    try:
        assert _versions(pg_url) == list(range(1, LATEST_VERSION + 1)) and store.integrity_ok()
        assert migrate_schema(pg_url) == [], "a second open finds nothing to do"
        PostgresStore(pg_url, migrate=False).close()
    finally:
        store.close()


def _admission_index(url: str) -> bool:
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute("SELECT to_regclass('jobs_active') IS NOT NULL").fetchone() == (True,)


def test_migrations_from_version_1_keep_the_rows(pg_url: str) -> None:
    import psycopg

    from kinema.service.store_postgres import PostgresStore, migrate_schema

    assert migrate_schema(pg_url, target=1) == [1]
    with psycopg.connect(pg_url) as con:  # a row written by the version-1 code
        con.execute(
            "INSERT INTO jobs (id, owner, status, request, summary, created_at, max_attempts) VALUES"
            " ('video_old', 'o', 'queued', '{\"prompt\": \"p\"}', '{}', 1.0, 3)"
        )
        key = con.execute(
            "INSERT INTO api_keys (id, name, hash, prefix, created_at) VALUES ('key_old', 'n',"
            " 'h', 'kin_', 1.0) RETURNING id"
        ).fetchone()
        assert key is not None
        assert con.execute("SELECT to_regclass('counters')").fetchone() == (None,)
    with pytest.raises(StoreError, match="schema version 1"):
        PostgresStore(pg_url, migrate=False)
    store, other = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        assert _versions(pg_url) == [1, 2, 3, 4]
        assert _admission_index(pg_url), "v3 indexes the owners' active jobs"
        old = store.get("video_old")
        assert old is not None and old.request == {"prompt": "p"} and old.status == "queued"
        assert old.callback_token is None and old.submitting_at is None  # v4's columns, empty on old rows
        assert store.key_budget("key_old") is None
        assert other.wait_for_work(1.0) is True
        claimed = store.claim("w", lease_seconds=30)
        assert claimed is not None and claimed.id == "video_old"
        assert store.revoke_key("key_old") and [k["revoked_at"] is not None for k in store.list_keys()] == [True]
        threading.Timer(0.2, lambda: _submit(store)).start()
        began = time.monotonic()
        assert other.wait_for_work(10) is True and time.monotonic() - began < 2, "the v2 trigger wakes waiters"
    finally:
        store.close()
        other.close()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    import psycopg

    from kinema.service.store_postgres import PostgresStore

    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url) as con:
        con.execute("INSERT INTO schema_version (version, applied_at, description) VALUES (99, 0, 'future')")
    with pytest.raises(StoreError, match="newer than this kinema"):
        PostgresStore(pg_url)


def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    from kinema.service.store_postgres import migrate_schema

    applied: list[list[int]] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        applied.append(migrate_schema(pg_url))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v for a in applied for v in a) == [1, 2, 3, 4] and _versions(pg_url) == [1, 2, 3, 4]


def test_connections_killed_by_the_server_are_replaced(pg_database: str) -> None:
    pg_url = pg_database
    import psycopg

    from kinema.service.store_postgres import PostgresStore

    store, other = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        (job,) = _submit(store)
        assert store.wait_for_work(0.1) is True  # the listener is connected
        with psycopg.connect(pg_url, autocommit=True) as con:  # a server restart, as the store sees it
            killed = con.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname ="
                " current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= 3
        got = store.get(job.id)
        assert got is not None and got.id == job.id
        claimed = store.claim("w", lease_seconds=30)
        assert claimed is not None and _done(store, claimed)
        threading.Timer(0.3, lambda: _submit(other)).start()
        began = time.monotonic()
        assert store.wait_for_work(10) is True and time.monotonic() - began < 3, "the listener reconnected"
    finally:
        store.close()
        other.close()


def test_a_bad_url_says_where_without_its_password(pg_server: pg.PgServer) -> None:
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL job store") as caught:
        open_store(pg_server.url("does_not_exist").replace("user=postgres", "user=postgres&password=sekret"))
    assert "does_not_exist" in str(caught.value) and "sekret" not in str(caught.value)
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://kinema:sekret@127.0.0.1:1/db?connect_timeout=2")
    assert "kinema:***@" in str(caught.value) and "sekret" not in str(caught.value)
