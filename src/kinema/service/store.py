"""The durable job store: SQLite in WAL mode, ``synchronous=FULL``, claims under ``BEGIN IMMEDIATE``.

Every accepted job is a row before the client hears "queued". A worker *claims* a row (status ``in_progress``, its
own id in ``worker``, ``lease_until`` in the future, ``attempts + 1``) and keeps the lease alive with heartbeats. A
worker that dies stops heartbeating; the reaper (any process on the data dir runs it) puts the job back in the queue,
or fails it with the reason once ``max_attempts`` is spent. Every write a worker makes afterwards (progress, the
provider's task id, completion) is guarded by ``worker = ? AND attempts = ?``, so a late, superseded attempt changes
nothing: at-least-once execution, exactly-once completion.

>>> import tempfile
>>> from kinema.service.store import Store
>>> store = Store(tempfile.mkdtemp() + "/db.sqlite3")
>>> job = store.submit_job(owner="local", request={"prompt": "a red ball"}, summary={})
>>> claimed = store.claim("worker-1", lease_seconds=30)
>>> claimed.id == job.id, claimed.status, claimed.attempts
(True, 'in_progress', 1)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreError

__all__ = [
    "Store",
    "SQLiteStore",
    "Job",
    "IdempotencyState",
    "AdmissionLimits",
    "AdmissionRefused",
    "JobStats",
    "TERMINAL",
    "StoreError",
]

TERMINAL = ("completed", "failed", "cancelled")
#: checked at every connection: a store that cannot promise these refuses to run
REQUIRED_PRAGMAS = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
BUSY_TIMEOUT_MS = 5000
#: an idempotency key left "in flight" this long belongs to a request that died; the next one takes it over. A key
#: held by a process on this host that is gone is taken over at once (see ``idempotency_begin``).
IDEMPOTENCY_STALE_SECONDS = 120.0
#: attempts a job may lose to crashed workers (expired leases) before it is quarantined as a poison job. Counted
#: apart from ``max_attempts``, which counts the job's own failures: a worker killed under a healthy job must not
#: use up that job's attempts.
MAX_CRASHES = 5
#: how often a waiting worker looks for jobs submitted by other processes (SQLite has no notifications)
WAIT_POLL_SECONDS = 0.1

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    owner            TEXT NOT NULL,
    kind             TEXT NOT NULL DEFAULT 'video',
    status           TEXT NOT NULL CHECK (status IN ('queued','in_progress','completed','failed','cancelled')),
    request          TEXT NOT NULL,
    summary          TEXT NOT NULL,
    progress         INTEGER NOT NULL DEFAULT 0,
    stage            TEXT,
    progress_detail  TEXT,
    created_at       REAL NOT NULL,
    started_at       REAL,
    completed_at     REAL,
    expires_at       REAL,
    not_before       REAL NOT NULL DEFAULT 0,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    failures         INTEGER NOT NULL DEFAULT 0,
    crashes          INTEGER NOT NULL DEFAULT 0,
    worker           TEXT,
    lease_until      REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    provider_task_id TEXT,
    provider_info    TEXT,
    output_path      TEXT,
    thumbnail_path   TEXT,
    result           TEXT,
    webhook_url      TEXT,
    metadata         TEXT,
    callback_token   TEXT,
    poll_hint_at     REAL,
    submitting_at    REAL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, seq);
CREATE INDEX IF NOT EXISTS jobs_owner_status ON jobs(owner, status);
CREATE TABLE IF NOT EXISTS attempts (
    job_id     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    worker     TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at   REAL,
    outcome    TEXT,
    error      TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    budget_amount   REAL,
    budget_currency TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    owner       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    body        BLOB,
    job_id      TEXT,
    created_at  REAL NOT NULL,
    holder      TEXT,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL,
    url          TEXT NOT NULL,
    event        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    sender       TEXT,
    lease_until  REAL,
    last_status  INTEGER,
    last_error   TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON webhook_deliveries(state, next_at);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL,
    n           INTEGER NOT NULL,
    at          REAL NOT NULL,
    status      INTEGER,
    error       TEXT,
    PRIMARY KEY (delivery_id, n)
);
CREATE TABLE IF NOT EXISTS disabled_endpoints (
    url    TEXT PRIMARY KEY,
    at     REAL NOT NULL,
    reason TEXT NOT NULL
);
"""


def load_json(text: str | None) -> Any:
    return json.loads(text) if text else None


def dump_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


@dataclass
class Job:
    """One row of ``jobs``, decoded."""

    id: str
    owner: str
    kind: str
    status: str
    request: dict[str, Any]
    summary: dict[str, Any]
    progress: int
    stage: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    expires_at: float | None
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int
    worker: str | None
    lease_until: float | None
    cancel_requested: bool
    provider_task_id: str | None
    provider_info: dict[str, Any] | None
    output_path: str | None
    thumbnail_path: str | None
    result: dict[str, Any] | None
    webhook_url: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    #: the latest progress event's details while running: step, total, eta_seconds (and scene, scenes)
    progress_detail: dict[str, Any] | None = None
    #: attempts that failed on their own (counted against ``max_attempts``) and attempts lost to crashed workers
    failures: int = 0
    crashes: int = 0
    #: the per-job secret in the provider callback URL (None until a remote attempt asks for one)
    callback_token: str | None = None
    #: when a valid provider callback last asked the running attempt to poll now
    poll_hint_at: float | None = None
    #: set right before a provider submit, cleared when its task id is recorded: a crash in between is detectable
    submitting_at: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            owner=row["owner"],
            kind=row["kind"],
            status=row["status"],
            request=load_json(row["request"]) or {},
            summary=load_json(row["summary"]) or {},
            progress=row["progress"],
            stage=row["stage"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            expires_at=row["expires_at"],
            error=load_json(row["error"]),
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            worker=row["worker"],
            lease_until=row["lease_until"],
            cancel_requested=bool(row["cancel_requested"]),
            provider_task_id=row["provider_task_id"],
            provider_info=load_json(row["provider_info"]),
            output_path=row["output_path"],
            thumbnail_path=row["thumbnail_path"],
            result=load_json(row["result"]),
            webhook_url=row["webhook_url"],
            metadata=load_json(row["metadata"]) or {},
            seq=row["seq"],
            progress_detail=load_json(row["progress_detail"]),
            failures=row["failures"],
            crashes=row["crashes"],
            callback_token=row["callback_token"],
            poll_hint_at=row["poll_hint_at"],
            submitting_at=row["submitting_at"],
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass
class JobStats:
    """What the store says about all jobs, whoever owns them (``GET /metrics``; ``job_stats()`` of either store)."""

    #: (status, kind) -> jobs
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)
    #: created_at of the oldest queued job (None: none queued)
    oldest_queued_at: float | None = None
    #: attempts (and attempts lost to crashed workers) recorded on the jobs in the store
    attempts: int = 0
    crashes: int = 0
    #: worker -> jobs it holds with a live lease
    leases: dict[str, int] = field(default_factory=dict)
    #: running jobs whose lease has passed: their worker is gone and the reaper has not re-queued them yet
    expired_leases: int = 0


#: the two queries of ``job_stats()`` (both stores; ``?`` placeholders): jobs by (status, kind), then the running
#: jobs' leases by worker, live (``lease_until >= now``) and expired. A running job without a worker (this code
#: never writes one) is no lease.
JOB_STATS_SQL = (
    "SELECT status, kind, count(*) AS n, coalesce(sum(attempts), 0) AS attempts,"
    " coalesce(sum(crashes), 0) AS crashes, min(CASE WHEN status='queued' THEN created_at END) AS oldest"
    " FROM jobs GROUP BY status, kind",
    "SELECT worker, coalesce(sum(CASE WHEN lease_until >= ? THEN 1 ELSE 0 END), 0) AS live,"
    " coalesce(sum(CASE WHEN lease_until IS NULL OR lease_until < ? THEN 1 ELSE 0 END), 0) AS expired"
    " FROM jobs WHERE status='in_progress' AND worker IS NOT NULL AND worker <> '' GROUP BY worker",
)


def job_stats_from(by_kind: list[Any], by_worker: list[Any]) -> JobStats:
    """A :class:`JobStats` from the rows of :data:`JOB_STATS_SQL` (``by_kind``, ``by_worker``: either store's rows,
    read by column name)."""
    stats = JobStats()
    for r in by_kind:
        stats.jobs[(str(r["status"]), str(r["kind"]))] = int(r["n"])
        stats.attempts += int(r["attempts"])
        stats.crashes += int(r["crashes"])
        if r["oldest"] is not None and (stats.oldest_queued_at is None or r["oldest"] < stats.oldest_queued_at):
            stats.oldest_queued_at = float(r["oldest"])
    for r in by_worker:
        if int(r["live"]):
            stats.leases[str(r["worker"])] = int(r["live"])
        stats.expired_leases += int(r["expired"])
    return stats


@dataclass(frozen=True)
class IdempotencyState:
    """What an Idempotency-Key lookup found: ``new`` (go ahead), ``replay`` (answer status/body), ``mismatch``
    (same key, other body: 422) or ``in_flight`` (the first request is still running: 409)."""

    state: str
    status: int | None = None
    body: bytes | None = None
    #: with ``in_flight``: seconds until the reservation can be taken over at the latest (a true Retry-After)
    retry_after: float | None = None


@dataclass(frozen=True)
class AdmissionLimits:
    """Bounds a submit must fit, checked in the transaction that inserts the job (so concurrent submits, of any
    thread, process or host, never overshoot them): jobs queued in all, and jobs queued or running per owner."""

    max_queued: int | None = None
    max_active_per_owner: int | None = None


class AdmissionRefused(Exception):
    """A submit that did not fit its :class:`AdmissionLimits`; nothing was written. ``reason`` is ``queue_full`` or
    ``too_many_active_jobs``; ``limit`` the bound it met."""

    def __init__(self, reason: str, limit: int) -> None:
        super().__init__(f"{reason} (limit {limit})")
        self.reason = reason
        self.limit = limit


def admission_refusal(
    count: Callable[[str, tuple[Any, ...]], int], owner: str, limits: AdmissionLimits | None
) -> AdmissionRefused | None:
    """The refusal a submit meets under ``limits``, given ``count(sql, params)`` run inside its transaction (``?``
    placeholders), or None when it fits."""
    if limits is None:
        return None
    if limits.max_queued is not None:
        if count("SELECT count(*) FROM jobs WHERE status='queued'", ()) >= limits.max_queued:
            return AdmissionRefused("queue_full", limits.max_queued)
    if limits.max_active_per_owner is not None:
        active = count("SELECT count(*) FROM jobs WHERE owner=? AND status IN ('queued','in_progress')", (owner,))
        if active >= limits.max_active_per_owner:
            return AdmissionRefused("too_many_active_jobs", limits.max_active_per_owner)
    return None


def usage_row(row: Any) -> dict[str, Any]:
    """One job of :meth:`Store.usage_rows` (a row with id, status, created_at, request, result), decoded."""
    return {
        "id": row["id"],
        "status": row["status"],
        "created_at": row["created_at"],
        "request": load_json(row["request"]) or {},
        "result": load_json(row["result"]),
    }


#: running and quarantined jobs listed one by one in :func:`operator_status` (the counts cover them all)
STATUS_LIST_LIMIT = 50


def operator_status(
    rows: Callable[[str, tuple[Any, ...]], list[dict[str, Any]]], failed_since: float, now: float | None = None
) -> dict[str, Any]:
    """What an operator checks first (``kinema status``), given ``rows(sql, params)`` (``?`` placeholders, dict
    rows): jobs by status, the queue's depth and oldest job's age, running jobs with their lease holders, failures
    since ``failed_since`` by error code, and quarantined (poison) jobs."""
    now = time.time() if now is None else now
    jobs = dict.fromkeys(("queued", "in_progress", "completed", "failed", "cancelled"), 0)
    for r in rows("SELECT status, count(*) AS n FROM jobs GROUP BY status", ()):
        jobs[r["status"]] = int(r["n"])
    queued = rows("SELECT min(created_at) AS oldest FROM jobs WHERE status='queued'", ())
    oldest = queued[0]["oldest"] if queued else None
    running = [
        {
            "id": r["id"],
            "kind": r["kind"],
            "owner": r["owner"],
            "worker": r["worker"],
            "attempt": r["attempts"],
            # the attempt's own start (a re-queued job's first start may be long ago)
            "running_seconds": round(now - (r["attempt_started"] or r["started_at"] or now), 1),
            "lease_left_seconds": round((r["lease_until"] or now) - now, 1),
        }
        for r in rows(
            "SELECT j.id, j.kind, j.owner, j.worker, j.attempts, j.started_at, j.lease_until,"
            " a.started_at AS attempt_started FROM jobs j LEFT JOIN attempts a ON a.job_id=j.id AND"
            " a.attempt=j.attempts WHERE j.status='in_progress' ORDER BY j.seq LIMIT ?",
            (STATUS_LIST_LIMIT,),
        )
    ]
    by_code: dict[str, int] = {}
    failed = rows("SELECT error FROM jobs WHERE status='failed' AND completed_at>=?", (failed_since,))
    for r in failed:
        error = load_json(r["error"])
        code = str(error.get("code") or "unknown") if isinstance(error, dict) else "unknown"
        by_code[code] = by_code.get(code, 0) + 1
    # the reaper's quarantine error; dump_json sorts keys, so its code is written exactly like this
    poison = ('%"code": "poison_job"%',)
    total = rows("SELECT count(*) AS n FROM jobs WHERE status='failed' AND error LIKE ?", poison)
    listed = rows(
        "SELECT id, kind, owner, crashes, completed_at FROM jobs WHERE status='failed' AND error LIKE ?"
        " ORDER BY seq DESC LIMIT ?",
        (*poison, STATUS_LIST_LIMIT),
    )
    return {
        "jobs": jobs,
        "queue": {"depth": jobs["queued"], "oldest_age_seconds": round(now - oldest, 1) if oldest else None},
        "running": running,
        "failed_recently": {
            "since": failed_since,
            "total": len(failed),
            "by_code": dict(sorted(by_code.items(), key=lambda kv: (-kv[1], kv[0]))),
        },
        "quarantined": {
            "total": int(total[0]["n"]) if total else 0,
            "jobs": [
                {
                    "id": r["id"],
                    "kind": r["kind"],
                    "owner": r["owner"],
                    "crashes": r["crashes"],
                    "failed_at": r["completed_at"],
                }
                for r in listed
            ],
        },
    }


def hash_key(secret: str) -> str:
    # API keys are 32 random bytes: a fast hash is enough (no dictionary to attack), and lookups stay O(1)
    return hashlib.sha256(secret.encode()).hexdigest()


class GroupCommit:
    """One writer thread that commits many inserts with one fsync: it takes every write waiting in its queue, runs
    each in its own savepoint inside one ``BEGIN IMMEDIATE`` transaction, commits (one fsync for the whole batch)
    and only then resolves each caller's future. So every job is durable before its submitter hears of it, while
    ``synchronous=FULL`` costs one fsync per batch rather than one per job: under load the batch grows to what
    arrived during the previous fsync, and a lone submit waits no longer than before (there is no batching
    window)."""

    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def submit(self, work: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
        """Run ``work(con)`` in the next committed batch; the future holds its result once that batch is durable.
        A ``work`` that returns an exception (having written nothing) fails its future with it and only it."""
        future: Future[Any] = Future()
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._start()
        self._queue.put((work, future))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread and queue are not ours
                self._queue, self._pid, self._thread = queue.SimpleQueue(), os.getpid(), None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="kinema-store-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]]) -> None:
        live = [(work, future) for work, future in batch if future.set_running_or_notify_cancel()]
        if not live:  # every caller gave up before the write began: nothing was promised
            return
        try:
            outcomes = self._run_batch(live, isolated=False)
        except _ItemFailed:
            # one write failed: redo the batch with each write in its own savepoint, so only that one fails
            try:
                outcomes = self._run_batch(live, isolated=True)
            except BaseException as exc:
                outcomes = [(False, exc)] * len(live)
        except BaseException as exc:  # BEGIN or COMMIT failed: nothing of this batch is durable
            outcomes = [(False, exc)] * len(live)
        for (_, future), (ok, value) in zip(live, outcomes, strict=True):
            if ok and isinstance(value, BaseException):  # refused before writing: fails alone, the batch commits
                future.set_exception(value)
            elif ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _run_batch(
        self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]], *, isolated: bool
    ) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self._store.transaction() as con:
            for work, _ in batch:
                if not isolated:
                    try:
                        outcomes.append((True, work(con)))
                    except Exception as exc:
                        raise _ItemFailed() from exc
                    continue
                con.execute("SAVEPOINT item")
                try:
                    outcomes.append((True, work(con)))
                except Exception as exc:
                    con.execute("ROLLBACK TO item")
                    outcomes.append((False, exc))
                con.execute("RELEASE item")
        return outcomes


class _ItemFailed(Exception):
    """One write of an unisolated batch failed; the batch was rolled back and is run again, isolated."""


#: columns added after the first release, with their declarations: :meth:`Store._migrate` adds them to old stores
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("jobs", "progress_detail", "TEXT"),
    ("jobs", "failures", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "crashes", "INTEGER NOT NULL DEFAULT 0"),
    ("idempotency", "holder", "TEXT"),
    ("jobs", "callback_token", "TEXT"),
    ("jobs", "poll_hint_at", "REAL"),
    ("jobs", "submitting_at", "REAL"),
    ("api_keys", "budget_amount", "REAL"),
    ("api_keys", "budget_currency", "TEXT"),
)


def _process_token(pid: int) -> str | None:
    """``pid:start-time`` of a live process on this host (the start time tells a reused pid apart), or None when no
    such process runs. Without /proc (not Linux) a live pid is trusted as it is."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, starttime
    except (OSError, IndexError):
        return f"{pid}:?"


#: who holds an idempotency key while its request runs: this host and this process
PROCESS_HOLDER = f"{socket.gethostname()}/{_process_token(os.getpid())}"


def holder_gone(holder: str | None) -> bool:
    """True when ``holder`` was a process on this host that no longer runs (so its reservation can go)."""
    if not holder:
        return False
    host, _, token = holder.rpartition("/")
    if host != socket.gethostname() or not token.partition(":")[0].isdigit():
        return False  # another machine's process: only the staleness bound applies
    now = _process_token(int(token.partition(":")[0]))
    return now is None or (not token.endswith(":?") and not now.endswith(":?") and now != token)


class Store:
    """Thread-safe access to the SQLite store; one connection per thread (never carried across ``fork``).

    Write transactions of one process are serialized by a lock before ``BEGIN IMMEDIATE``: threads of the same
    process queue on it instead of polling SQLite's busy handler (which sleeps in steps of up to 100 ms). Job
    inserts go through :class:`GroupCommit`."""

    def __init__(self, path: str | os.PathLike[str], *, max_crashes: int = MAX_CRASHES) -> None:
        self.path = Path(path)
        self.max_crashes = max_crashes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # every tenant's prompts are in here: readable by the service's user only (SQLite gives the -wal and -shm
        # files the database's mode)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._local = threading.local()
        self._pid = os.getpid()
        self._key_cache: dict[str, tuple[str | None, float]] = {}
        # touched by every revocation: other processes on this data dir drop their cached keys when it changes
        self._revocations = self.path.with_name(self.path.name + ".revocations")
        self._revocations_seen = self._revocations_mark()
        self._write_lock = threading.RLock()
        self.writer = GroupCommit(self)
        # this process's wake-ups of wait_for_work (SQLite has no notifications; other processes' jobs are polled)
        self._wake_cond = threading.Condition()
        self._wakes = 0
        self.connection().executescript(SCHEMA)
        self._migrate()
        self.recover_idempotency()

    def _migrate(self) -> None:
        """Add the columns later versions introduced to a store created by an earlier one (additive only)."""
        con = self.connection()
        for table, name, decl in _ADDED_COLUMNS:
            if name not in {row["name"] for row in con.execute(f"PRAGMA table_info({table})")}:
                with self.transaction() as tx:
                    if name not in {row["name"] for row in tx.execute(f"PRAGMA table_info({table})")}:
                        tx.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    # -- connections ----------------------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None and self._local.pid == os.getpid():
            return con
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        self._check_pragmas(con)
        self._local.con = con
        self._local.pid = os.getpid()
        return con

    @staticmethod
    def _check_pragmas(con: sqlite3.Connection) -> None:
        for name, want in REQUIRED_PRAGMAS.items():
            got = con.execute(f"PRAGMA {name}").fetchone()[0]
            if str(got).lower() != str(want):
                raise StoreError(
                    f"SQLite PRAGMA {name} is {got!r}, the job store needs {want!r} "
                    "(is the data dir on a network filesystem? WAL needs a local disk)"
                )
        if con.execute("PRAGMA busy_timeout").fetchone()[0] < BUSY_TIMEOUT_MS:
            raise StoreError("SQLite busy_timeout could not be set")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken with BEGIN IMMEDIATE: the write lock up front, so no SQLITE_BUSY midway."""
        con = self.connection()
        with self._write_lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def integrity_ok(self) -> bool:
        return bool(self.connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def checkpoint(self) -> None:
        """Keep the WAL bounded under constant readers."""
        with contextlib.suppress(sqlite3.OperationalError):
            self.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- jobs: submit and read ------------------------------------------------------------------------------
    def submit_job(
        self,
        *,
        owner: str,
        request: dict[str, Any],
        summary: dict[str, Any],
        kind: str = "video",
        max_attempts: int = 3,
        webhook_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        job_id: str | None = None,
        idempotency: tuple[str, Callable[[Job], tuple[int, bytes]]] | None = None,
        limits: AdmissionLimits | None = None,
    ) -> Job:
        """Insert a queued job; with ``idempotency=(key, respond)`` the key's stored answer is set atomically.
        Returns once the row is committed (group-committed with concurrent submits). With ``limits`` the counts are
        checked in the inserting transaction: :class:`AdmissionRefused` when the job does not fit."""
        return self.submit_job_future(
            owner=owner,
            request=request,
            summary=summary,
            kind=kind,
            max_attempts=max_attempts,
            webhook_url=webhook_url,
            metadata=metadata,
            job_id=job_id,
            idempotency=idempotency,
            limits=limits,
        ).result()

    def submit_job_future(
        self,
        *,
        owner: str,
        request: dict[str, Any],
        summary: dict[str, Any],
        kind: str = "video",
        max_attempts: int = 3,
        webhook_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        job_id: str | None = None,
        idempotency: tuple[str, Callable[[Job], tuple[int, bytes]]] | None = None,
        limits: AdmissionLimits | None = None,
    ) -> Future[Job]:
        """:meth:`submit_job` without waiting: the future is resolved after the commit (``asyncio.wrap_future`` it
        to await it on an event loop)."""
        job_id = job_id or "video_" + secrets.token_hex(12)
        params = (
            job_id,
            owner,
            kind,
            dump_json(request),
            dump_json(summary),
            time.time(),
            max_attempts,
            webhook_url,
            dump_json(metadata or {}),
        )

        def insert(con: sqlite3.Connection) -> Job | AdmissionRefused:
            # counted inside BEGIN IMMEDIATE, which holds the database's write lock: no other thread or process
            # can insert between this count and this insert
            refused = admission_refusal(lambda sql, args: int(con.execute(sql, args).fetchone()[0]), owner, limits)
            if refused is not None:
                return refused
            row = con.execute(
                "INSERT INTO jobs (id, owner, kind, status, request, summary, created_at, max_attempts, webhook_url,"
                " metadata) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING *",
                params,
            ).fetchone()
            job = Job.from_row(row)
            if idempotency is not None:
                key, respond = idempotency
                status, body = respond(job)
                con.execute(
                    "UPDATE idempotency SET status=?, body=?, job_id=? WHERE owner=? AND key=?",
                    (status, body, job.id, owner, key),
                )
            return job

        future: Future[Job] = self.writer.submit(insert)
        future.add_done_callback(lambda _: self.wake_waiters())  # after the commit: a waiting claimer finds the job
        return future

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when it does not exist or belongs to another owner (callers answer 404 for both)."""
        row = self.connection().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None or (owner is not None and row["owner"] != owner):
            return None
        return Job.from_row(row)

    def list_jobs(
        self, owner: str, *, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> tuple[list[Job], bool]:
        """A page of the owner's jobs after the cursor job ``after``; returns (jobs, has_more)."""
        con = self.connection()
        op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        params: list[Any] = [owner]
        where = "owner=?"
        if after:
            row = con.execute("SELECT seq FROM jobs WHERE id=? AND owner=?", (after, owner)).fetchone()
            if row is None:
                raise KeyError(after)
            where += f" AND seq {op} ?"
            params.append(row["seq"])
        rows = con.execute(
            f"SELECT * FROM jobs WHERE {where} ORDER BY seq {direction} LIMIT ?", (*params, limit + 1)
        ).fetchall()
        return [Job.from_row(r) for r in rows[:limit]], len(rows) > limit

    def queue_depth(self) -> int:
        return int(self.connection().execute("SELECT count(*) FROM jobs WHERE status='queued'").fetchone()[0])

    def active_count(self, owner: str) -> int:
        return int(
            self.connection()
            .execute("SELECT count(*) FROM jobs WHERE owner=? AND status IN ('queued','in_progress')", (owner,))
            .fetchone()[0]
        )

    def attempts_of(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.connection().execute("SELECT * FROM attempts WHERE job_id=? ORDER BY attempt", (job_id,))
        return [dict(r) for r in rows.fetchall()]

    def job_stats(self, now: float | None = None) -> JobStats:
        """Jobs by (status, kind), attempts, crashes, the oldest queued job and leases by worker (expired ones past
        ``now``, default the current time): two ``GROUP BY`` queries in one read transaction (one snapshot), not
        a read of every job."""
        now = time.time() if now is None else now
        con = self.connection()
        con.execute("BEGIN")  # deferred: a read snapshot, no write lock
        try:
            by_kind = con.execute(JOB_STATS_SQL[0]).fetchall()
            by_worker = con.execute(JOB_STATS_SQL[1], (now, now)).fetchall()
        finally:
            con.execute("COMMIT")
        return job_stats_from(by_kind, by_worker)

    # -- jobs: the worker's side ----------------------------------------------------------------------------
    def wait_for_work(self, timeout: float, kinds: tuple[str, ...] = ("video",)) -> bool:
        """Wait up to ``timeout`` seconds for a runnable queued job of ``kinds``; True when there is one, or when
        :meth:`wake_waiters` was called (a job submitted in this process calls it after its commit), False on
        timeout. Jobs of other processes are seen by a cheap read every :data:`WAIT_POLL_SECONDS`
        (SQLite has no notifications)."""
        deadline = time.monotonic() + timeout
        marks = ",".join("?" for _ in kinds)
        woken = self._wakes
        while True:
            if (
                self.connection()
                .execute(
                    f"SELECT 1 FROM jobs WHERE status='queued' AND not_before<=? AND kind IN ({marks}) LIMIT 1",
                    (time.time(), *kinds),
                )
                .fetchone()
            ):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._wake_cond:
                if self._wake_cond.wait_for(lambda: self._wakes != woken, min(WAIT_POLL_SECONDS, left)):
                    return True

    def wake_waiters(self) -> None:
        """End this process's :meth:`wait_for_work` calls now (they return True)."""
        with self._wake_cond:
            self._wakes += 1
            self._wake_cond.notify_all()

    def claim(self, worker: str, lease_seconds: float, kinds: tuple[str, ...] = ("video",)) -> Job | None:
        """Take the oldest runnable queued job (one transaction; concurrent claimers never get the same job)."""
        now = time.time()
        marks = ",".join("?" for _ in kinds)
        with self.transaction() as con:
            row = con.execute(
                "UPDATE jobs SET status='in_progress', worker=?, lease_until=?, attempts=attempts+1,"
                " started_at=coalesce(started_at, ?), stage='starting'"
                " WHERE id=(SELECT id FROM jobs WHERE status='queued' AND not_before<=? AND kind IN"
                f" ({marks}) ORDER BY seq LIMIT 1) RETURNING *",
                (worker, now + lease_seconds, now, now, *kinds),
            ).fetchone()
            if row is None:
                return None
            con.execute(
                "INSERT OR REPLACE INTO attempts (job_id, attempt, worker, started_at) VALUES (?, ?, ?, ?)",
                (row["id"], row["attempts"], worker, now),
            )
        return Job.from_row(row)

    def heartbeat(self, job_id: str, worker: str, attempt: int, lease_seconds: float) -> tuple[bool, bool]:
        """Extend the lease. Returns (still ours, cancel requested); not ours means stop and discard the work."""
        with self.transaction() as con:
            row = con.execute(
                "UPDATE jobs SET lease_until=? WHERE id=? AND worker=? AND attempts=? AND status='in_progress'"
                " RETURNING cancel_requested",
                (time.time() + lease_seconds, job_id, worker, attempt),
            ).fetchone()
        if row is None:
            return False, True
        return True, bool(row[0])

    def update_progress(
        self,
        job_id: str,
        worker: str,
        attempt: int,
        progress: int,
        stage: str | None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Record the attempt's progress (percent never goes back) and the latest step details; False when the
        attempt no longer owns the job."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET progress=max(progress, ?), stage=?, progress_detail=? WHERE id=? AND worker=?"
                " AND attempts=? AND status='in_progress'",
                (int(progress), stage, dump_json(detail) if detail else None, job_id, worker, attempt),
            )
            return cur.rowcount == 1

    def set_provider_task(self, job_id: str, worker: str, attempt: int, task_id: str, info: dict[str, Any]) -> bool:
        """Record a remote backend's task id (before it starts polling), so a retry resumes that paid task."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET provider_task_id=?, provider_info=?, submitting_at=NULL WHERE id=? AND worker=?"
                " AND attempts=? AND status='in_progress'",
                (task_id, dump_json(info or {}), job_id, worker, attempt),
            )
            return cur.rowcount == 1

    def mark_submitting(self, job_id: str, worker: str, attempt: int, active: bool = True) -> bool:
        """Mark that this attempt is about to call the provider's paid submit (``active``), or clear the mark
        after a submit the provider refused; :meth:`set_provider_task` clears it too. False when the attempt no
        longer owns the job."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET submitting_at=? WHERE id=? AND worker=? AND attempts=? AND status='in_progress'",
                (time.time() if active else None, job_id, worker, attempt),
            )
            return cur.rowcount == 1

    def callback_token(self, job_id: str) -> str | None:
        """The job's provider-callback secret, made on first use (None when there is no such job)."""
        with self.transaction() as con:
            row = con.execute(
                "UPDATE jobs SET callback_token=coalesce(callback_token, ?) WHERE id=? RETURNING callback_token",
                (secrets.token_urlsafe(24), job_id),
            ).fetchone()
        return row[0] if row else None

    def record_poll_hint(self, job_id: str) -> bool:
        """A verified provider callback arrived: note it for the attempt running the job (which then polls at
        once). False when the job is not queued or running."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET poll_hint_at=? WHERE id=? AND status IN ('queued','in_progress')",
                (time.time(), job_id),
            )
            return cur.rowcount == 1

    def poll_hints(self, job_ids: list[str]) -> dict[str, float]:
        """The latest callback hint time of each of these jobs that has one (a read: no write lock)."""
        if not job_ids:
            return {}
        marks = ",".join("?" * len(job_ids))
        rows = (
            self.connection()
            .execute(
                f"SELECT id, poll_hint_at FROM jobs WHERE id IN ({marks}) AND poll_hint_at IS NOT NULL", tuple(job_ids)
            )
            .fetchall()
        )
        return {r["id"]: r["poll_hint_at"] for r in rows}

    def status_summary(self, failed_since: float) -> dict[str, Any]:
        """What ``kinema status`` shows (:func:`operator_status`); reads only."""
        con = self.connection()
        return operator_status(
            lambda sql, params: [dict(r) for r in con.execute(sql, params).fetchall()], failed_since
        )

    def usage_rows(self, owner: str, since: float | None = None) -> list[dict[str, Any]]:
        """The owner's jobs for usage totals: id, status, backend, created_at, result (cost, recipe)."""
        sql = "SELECT id, status, created_at, request, result FROM jobs WHERE owner=? AND created_at>=? ORDER BY seq"
        rows = self.connection().execute(sql, (owner, since or 0.0)).fetchall()
        return [usage_row(r) for r in rows]

    def complete(
        self,
        job_id: str,
        worker: str,
        attempt: int,
        *,
        result: dict[str, Any],
        output_path: str,
        thumbnail_path: str | None,
        expires_at: float,
        publish: Callable[[], None] | None = None,
    ) -> bool:
        """Mark completed if this attempt still owns the job. ``publish`` (the atomic renames that make the output
        visible) runs inside the transaction, so an output appears exactly when, and only if, the row says so."""
        now = time.time()
        with self.transaction() as con:
            row = con.execute(
                "SELECT 1 FROM jobs WHERE id=? AND worker=? AND attempts=? AND status='in_progress'",
                (job_id, worker, attempt),
            ).fetchone()
            if row is None:
                return False
            if publish is not None:
                publish()
            con.execute(
                "UPDATE jobs SET status='completed', progress=100, stage='done', completed_at=?, expires_at=?,"
                " result=?, output_path=?, thumbnail_path=?, lease_until=NULL, error=NULL WHERE id=?",
                (now, expires_at, dump_json(result), output_path, thumbnail_path, job_id),
            )
            self._end_attempt(con, job_id, attempt, "completed", None, now)
        return True

    def fail(
        self, job_id: str, worker: str, attempt: int, error: dict[str, Any], *, retry_after: float | None = None
    ) -> str | None:
        """Fail this attempt. With ``retry_after`` and attempts left the job is queued again after that delay.
        Returns the job's new status, or None when this attempt no longer owned it."""
        now = time.time()
        with self.transaction() as con:
            row = con.execute(
                "SELECT failures, max_attempts FROM jobs WHERE id=? AND worker=? AND attempts=? AND "
                "status='in_progress'",
                (job_id, worker, attempt),
            ).fetchone()
            if row is None:
                return None
            # max_attempts counts the job's own failures; attempts lost to crashed workers are counted apart
            if retry_after is not None and row["failures"] + 1 < row["max_attempts"]:
                con.execute(
                    "UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, not_before=?, stage=?,"
                    " error=?, failures=failures+1 WHERE id=?",
                    (now + retry_after, "retrying", dump_json(error), job_id),
                )
                self._end_attempt(con, job_id, attempt, "retry", error, now)
                return "queued"
            con.execute(
                "UPDATE jobs SET status='failed', completed_at=?, error=?, lease_until=NULL, stage='failed',"
                " failures=failures+1 WHERE id=?",
                (now, dump_json(error), job_id),
            )
            self._end_attempt(con, job_id, attempt, "failed", error, now)
            return "failed"

    def finish_cancelled(self, job_id: str, worker: str, attempt: int) -> bool:
        now = time.time()
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET status='cancelled', completed_at=?, lease_until=NULL, stage='cancelled', error=?"
                " WHERE id=? AND worker=? AND attempts=? AND status='in_progress'",
                (now, dump_json({"code": "cancelled", "message": "the job was cancelled"}), job_id, worker, attempt),
            )
            if cur.rowcount:
                self._end_attempt(con, job_id, attempt, "cancelled", None, now)
            return cur.rowcount == 1

    def release(self, job_id: str, worker: str, attempt: int, reason: str) -> bool:
        """Give a running job back to the queue (graceful shutdown); the attempt stays counted."""
        now = time.time()
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, stage='queued'"
                " WHERE id=? AND worker=? AND attempts=? AND status='in_progress'",
                (job_id, worker, attempt),
            )
            if cur.rowcount:
                self._end_attempt(con, job_id, attempt, "released", {"message": reason}, now)
            return cur.rowcount == 1

    @staticmethod
    def _end_attempt(con: sqlite3.Connection, job_id: str, attempt: int, outcome: str, error: Any, now: float) -> None:
        con.execute(
            "UPDATE attempts SET ended_at=?, outcome=?, error=? WHERE job_id=? AND attempt=?",
            (now, outcome, dump_json(error), job_id, attempt),
        )

    # -- jobs: the client's side ----------------------------------------------------------------------------
    def request_cancel(self, job_id: str, owner: str) -> Job | None:
        """Queued jobs are cancelled at once; running ones get a flag their worker sees at its next heartbeat."""
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "UPDATE jobs SET status='cancelled', completed_at=?, stage='cancelled', error=? WHERE id=? AND"
                " owner=? AND status='queued'",
                (now, dump_json({"code": "cancelled", "message": "the job was cancelled"}), job_id, owner),
            )
            con.execute(
                "UPDATE jobs SET cancel_requested=1 WHERE id=? AND owner=? AND status='in_progress'", (job_id, owner)
            )
        return self.get(job_id, owner)

    def delete(self, job_id: str, owner: str) -> Job | None:
        """Remove the job's row (a running attempt loses its lease and stops); returns the deleted job."""
        with self.transaction() as con:
            row = con.execute("DELETE FROM jobs WHERE id=? AND owner=? RETURNING *", (job_id, owner)).fetchone()
            if row is None:
                return None
            con.execute("DELETE FROM attempts WHERE job_id=?", (job_id,))
        return Job.from_row(row)

    # -- the reaper -----------------------------------------------------------------------------------------
    def reap(self) -> list[tuple[str, str]]:
        """Jobs whose lease expired: re-queue them, or fail them when their attempts are spent, or finish a
        cancellation whose worker died. Returns (job id, new status) pairs."""
        now = time.time()
        changed: list[tuple[str, str]] = []
        # a read first: the reaper runs every few seconds and usually finds nothing, so it takes no write lock then
        if (
            self.connection()
            .execute("SELECT 1 FROM jobs WHERE status='in_progress' AND lease_until < ? LIMIT 1", (now,))
            .fetchone()
            is None
        ):
            return changed
        with self.transaction() as con:
            rows = con.execute(
                "SELECT id, attempts, crashes, cancel_requested FROM jobs WHERE status='in_progress'"
                " AND lease_until < ?",
                (now,),
            ).fetchall()
            for r in rows:
                lost = {
                    "code": "worker_lost",
                    "message": f"worker lost: its lease expired during attempt {r['attempts']}",
                }
                if r["cancel_requested"]:
                    status, err = "cancelled", {"code": "cancelled", "message": "the job was cancelled"}
                elif r["crashes"] + 1 >= self.max_crashes:
                    # the same job lost its worker every time: quarantine it rather than crash workers forever
                    status = "failed"
                    err = {
                        "code": "poison_job",
                        "message": f"quarantined: the worker running this job was lost on {r['crashes'] + 1} "
                        "attempts in a row (a job that crashes its worker); an operator can re-queue it with "
                        "POST /v1/videos/{id}/retry or 'kinema jobs retry'",
                    }
                else:
                    status, err = "queued", lost
                if status == "queued":
                    con.execute(
                        "UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, stage='queued',"
                        " error=?, crashes=crashes+1 WHERE id=?",
                        (dump_json(err), r["id"]),
                    )
                else:
                    con.execute(
                        "UPDATE jobs SET status=?, completed_at=?, worker=NULL, lease_until=NULL, stage=?,"
                        " error=?, crashes=crashes+? WHERE id=?",
                        (status, now, status, dump_json(err), int(status == "failed"), r["id"]),
                    )
                self._end_attempt(con, r["id"], r["attempts"], "lost", lost, now)
                changed.append((r["id"], status))
        return changed

    def requeue(self, job_id: str, owner: str | None = None) -> Job | None:
        """Put a failed job back in the queue with its failure and crash budgets renewed (an operator's retry,
        e.g. of a quarantined job); returns it, or None when there is no failed job of that id (and owner)."""
        with self.transaction() as con:
            where, args = ("id=? AND owner=?", (job_id, owner)) if owner is not None else ("id=?", (job_id,))
            cur = con.execute(
                "UPDATE jobs SET status='queued', stage='queued', progress=0, completed_at=NULL, worker=NULL,"
                f" lease_until=NULL, not_before=0, failures=0, crashes=0, submitting_at=NULL WHERE {where} AND"
                " status='failed'",
                args,
            )
            if not cur.rowcount:
                return None
        return self.get(job_id)

    def expired_outputs(self) -> list[Job]:
        """Completed jobs past ``expires_at`` whose files are still there (the purger deletes them)."""
        rows = (
            self.connection()
            .execute(
                "SELECT * FROM jobs WHERE status='completed' AND expires_at < ? AND output_path IS NOT NULL",
                (time.time(),),
            )
            .fetchall()
        )
        return [Job.from_row(r) for r in rows]

    def forget_outputs(self, job_id: str) -> None:
        with self.transaction() as con:
            con.execute("UPDATE jobs SET output_path=NULL, thumbnail_path=NULL WHERE id=?", (job_id,))

    # -- idempotency keys -----------------------------------------------------------------------------------
    def idempotency_begin(self, owner: str, key: str, fingerprint: str, ttl_seconds: float) -> IdempotencyState:
        """Reserve ``key`` for this request, or say what an earlier request with it decided.

        A reservation whose request died is taken over: at once when the process that held it is gone from this
        host, else once it is ``IDEMPOTENCY_STALE_SECONDS`` old. ``in_flight`` carries ``retry_after``: the
        seconds until the reservation can be taken over at the latest."""
        now = time.time()
        with self.transaction() as con:
            con.execute("DELETE FROM idempotency WHERE created_at < ?", (now - ttl_seconds,))
            row = con.execute("SELECT * FROM idempotency WHERE owner=? AND key=?", (owner, key)).fetchone()
            if row is None or (
                row["status"] is None
                and (now - row["created_at"] > IDEMPOTENCY_STALE_SECONDS or holder_gone(row["holder"]))
            ):
                con.execute(
                    "INSERT OR REPLACE INTO idempotency (owner, key, fingerprint, created_at, holder) VALUES "
                    "(?, ?, ?, ?, ?)",
                    (owner, key, fingerprint, now, PROCESS_HOLDER),
                )
                return IdempotencyState("new")
            if row["fingerprint"] != fingerprint:
                return IdempotencyState("mismatch")
            if row["status"] is None:
                wait = max(1.0, row["created_at"] + IDEMPOTENCY_STALE_SECONDS - now)
                return IdempotencyState("in_flight", retry_after=float(math.ceil(wait)))
            return IdempotencyState("replay", row["status"], bytes(row["body"]))

    def recover_idempotency(self) -> int:
        """Forget the reservations of requests whose process on this host is gone (a crash between reserving a key
        and committing its job); returns how many. Runs when a store is opened."""
        rows = self.connection().execute("SELECT owner, key, holder FROM idempotency WHERE status IS NULL").fetchall()
        dead = [(r["owner"], r["key"]) for r in rows if holder_gone(r["holder"])]
        if dead:
            with self.transaction() as con:
                con.executemany("DELETE FROM idempotency WHERE owner=? AND key=? AND status IS NULL", dead)
        return len(dead)

    def idempotency_finish(self, owner: str, key: str, status: int, body: bytes) -> None:
        with self.transaction() as con:
            con.execute("UPDATE idempotency SET status=?, body=? WHERE owner=? AND key=?", (status, body, owner, key))

    def idempotency_release(self, owner: str, key: str) -> None:
        """Forget a reservation whose request was refused before it began (rate limit, full queue)."""
        with self.transaction() as con:
            con.execute("DELETE FROM idempotency WHERE owner=? AND key=? AND status IS NULL", (owner, key))

    # -- API keys -------------------------------------------------------------------------------------------
    def create_key(self, name: str = "", budget: tuple[float, str] | None = None) -> tuple[str, str]:
        """A new API key: returns (key id, secret). Only the secret's hash is stored. ``budget``: (amount,
        currency) the key's paid jobs may cost in all."""
        secret = "kin_" + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        amount, currency = budget if budget is not None else (None, None)
        with self.transaction() as con:
            con.execute(
                "INSERT INTO api_keys (id, name, hash, prefix, created_at, budget_amount, budget_currency)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, name, hash_key(secret), secret[:8], time.time(), amount, currency),
            )
        return key_id, secret

    def list_keys(self) -> list[dict[str, Any]]:
        rows = (
            self.connection()
            .execute(
                "SELECT id, name, prefix, created_at, revoked_at, budget_amount,"
                " budget_currency FROM api_keys ORDER BY created_at"
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def key_budget(self, key_id: str) -> tuple[float, str] | None:
        """The key's budget (amount, currency), or None when it has none."""
        row = (
            self.connection()
            .execute("SELECT budget_amount, budget_currency FROM api_keys WHERE id=?", (key_id,))
            .fetchone()
        )
        if row is None or row["budget_amount"] is None:
            return None
        return float(row["budget_amount"]), str(row["budget_currency"])

    def revoke_key(self, key_id: str) -> bool:
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (time.time(), key_id)
            )
        self._key_cache.clear()
        if cur.rowcount == 1:
            fd = os.open(self._revocations, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, f"{time.time()} {key_id}\n".encode())
            finally:
                os.close(fd)
        return cur.rowcount == 1

    def _revocations_mark(self) -> tuple[int, int]:
        try:
            st = os.stat(self._revocations)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def authenticate(self, secret: str, cache_seconds: float = 5.0) -> str | None:
        """The key id for a presented secret, or None. Cached for ``cache_seconds``, but a revocation takes effect
        at once: in this process (the cache is cleared) and in every process on the same data dir (a revocation
        appends to ``<db>.revocations``, whose change each lookup notices with one stat)."""
        digest = hash_key(secret)
        now = time.monotonic()
        mark = self._revocations_mark()
        if mark != self._revocations_seen:
            self._key_cache.clear()
            self._revocations_seen = mark
        hit = self._key_cache.get(digest)
        if hit is not None and now - hit[1] < cache_seconds:
            return hit[0]
        row = (
            self.connection()
            .execute("SELECT id FROM api_keys WHERE hash=? AND revoked_at IS NULL", (digest,))
            .fetchone()
        )
        key_id = row["id"] if row else None
        if len(self._key_cache) > 10_000:
            self._key_cache.clear()
        self._key_cache[digest] = (key_id, now)
        return key_id

    # -- webhook deliveries ---------------------------------------------------------------------------------
    def enqueue_delivery(self, job_id: str, url: str, event: str, payload: dict[str, Any]) -> str:
        msg_id = "msg_" + secrets.token_hex(12)
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO webhook_deliveries (id, job_id, url, event, payload, next_at, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (msg_id, job_id, url, event, dump_json(payload), now, now, now),
            )
        return msg_id

    def claim_deliveries(self, sender: str, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        now = time.time()
        # a read first: the sender polls twice a second and usually finds nothing, so it takes no write lock then
        due = self.connection().execute(
            "SELECT 1 FROM webhook_deliveries WHERE state='pending' AND next_at<=? AND"
            " (lease_until IS NULL OR lease_until<?) LIMIT 1",
            (now, now),
        )
        if due.fetchone() is None:
            return []
        with self.transaction() as con:
            rows = con.execute(
                "UPDATE webhook_deliveries SET sender=?, lease_until=? WHERE id IN (SELECT id FROM webhook_deliveries"
                " WHERE state='pending' AND next_at<=? AND (lease_until IS NULL OR lease_until<?) ORDER BY next_at,"
                " created_at LIMIT ?) RETURNING *",
                (sender, now + lease_seconds, now, now, limit),
            ).fetchall()
        return sorted((dict(r) for r in rows), key=lambda d: (d["next_at"], d["created_at"]))

    def record_delivery(
        self, msg_id: str, *, status: int | None, error: str | None, state: str, next_at: float | None
    ) -> int:
        """Log one attempt and move the delivery on; returns the attempt number."""
        now = time.time()
        with self.transaction() as con:
            row = con.execute(
                "UPDATE webhook_deliveries SET attempts=attempts+1, state=?, next_at=coalesce(?, "
                "next_at), last_status=?, last_error=?, lease_until=NULL, updated_at=? WHERE id=? "
                "RETURNING attempts",
                (state, next_at, status, error, now, msg_id),
            ).fetchone()
            n = int(row[0]) if row else 0
            con.execute(
                "INSERT OR REPLACE INTO webhook_attempts (delivery_id, n, at, status, error) VALUES (?, ?, ?, ?, ?)",
                (msg_id, n, now, status, error),
            )
        return n

    def deliveries(self, job_id: str | None = None) -> list[dict[str, Any]]:
        con = self.connection()
        sql = "SELECT * FROM webhook_deliveries" + (" WHERE job_id=?" if job_id else "") + " ORDER BY created_at"
        out = [dict(r) for r in con.execute(sql, (job_id,) if job_id else ()).fetchall()]
        for d in out:
            d["log"] = [
                dict(a)
                for a in con.execute(
                    "SELECT * FROM webhook_attempts WHERE delivery_id=? ORDER BY n", (d["id"],)
                ).fetchall()
            ]
        return out

    def endpoint_disabled(self, url: str) -> bool:
        return self.connection().execute("SELECT 1 FROM disabled_endpoints WHERE url=?", (url,)).fetchone() is not None

    def disable_endpoint(self, url: str, reason: str) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO disabled_endpoints (url, at, reason) VALUES (?, ?, ?)",
                (url, time.time(), reason),
            )
            con.execute(
                "UPDATE webhook_deliveries SET state='disabled', updated_at=? WHERE url=? AND state='pending'",
                (time.time(), url),
            )


#: the SQLite store under the name :mod:`kinema.service.stores` gives it (``Store`` there is the contract)
SQLiteStore = Store
