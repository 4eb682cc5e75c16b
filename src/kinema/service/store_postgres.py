"""The job store on PostgreSQL: one database shared by API replicas and workers on many hosts (the ``cluster``
extra: psycopg 3 and its pool).

Same contract as the SQLite store (:class:`kinema.service.stores.Store`), with PostgreSQL's tools instead of one
database-wide write lock:

* **claims** take the oldest runnable queued job with ``SELECT ... FOR UPDATE SKIP LOCKED`` inside the claiming
  ``UPDATE``: concurrent claimers lock different rows and never wait on one another;
* **every worker write** is guarded by ``worker = %s AND attempts = %s AND status = 'in_progress'``, and the writes
  that read before they write (``complete``, ``fail``) lock the row first (``FOR UPDATE``), so the reaper cannot
  re-queue a job between the check and the write; ``complete`` runs ``publish`` with the row locked, inside the
  completing transaction;
* **wake-ups**: a trigger sends ``NOTIFY kinema_jobs`` whenever a row becomes ``queued`` (delivered at commit);
  :meth:`PostgresStore.wait_for_work` waits on one ``LISTEN`` connection per process;
* **API key revocations** bump a counter row in the revoking transaction; :meth:`PostgresStore.authenticate` reads
  it with its (cached) lookup, so a revocation takes effect at once on every host;
* **schema migrations** are numbered and recorded in ``schema_version``; every store runs the missing ones when it
  opens, one process at a time (an advisory lock), each migration in one transaction with its version row.

Times are epoch seconds (``double precision``) from the writing host's clock, as in SQLite: the hosts' clocks must
be synchronized (NTP) to well under the lease time.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ..errors import StoreError
from .store import (
    IDEMPOTENCY_STALE_SECONDS,
    JOB_STATS_SQL,
    MAX_CRASHES,
    PROCESS_HOLDER,
    AdmissionLimits,
    IdempotencyState,
    Job,
    JobStats,
    admission_refusal,
    dump_json,
    hash_key,
    holder_gone,
    job_stats_from,
    operator_status,
    usage_row,
)

__all__ = ["PostgresStore", "MIGRATIONS", "LATEST_VERSION", "migrate_schema", "schema_version"]

#: the channel a trigger notifies (payload: the job's kind) whenever a job becomes queued
JOBS_CHANNEL = "kinema_jobs"
#: the advisory lock that serializes schema migrations across processes ("kinema" in ASCII)
MIGRATION_LOCK = 0x6B696E656D61
#: the advisory lock every admission-checked submit holds from its count to its commit (so no two overshoot)
ADMISSION_LOCK = MIGRATION_LOCK + 1

_MIGRATION_1 = """
CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text NOT NULL UNIQUE,
    owner            text NOT NULL,
    kind             text NOT NULL DEFAULT 'video',
    status           text NOT NULL CHECK (status IN ('queued','in_progress','completed','failed','cancelled')),
    request          text NOT NULL,
    summary          text NOT NULL,
    progress         integer NOT NULL DEFAULT 0,
    stage            text,
    progress_detail  text,
    created_at       double precision NOT NULL,
    started_at       double precision,
    completed_at     double precision,
    expires_at       double precision,
    not_before       double precision NOT NULL DEFAULT 0,
    error            text,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    failures         integer NOT NULL DEFAULT 0,
    crashes          integer NOT NULL DEFAULT 0,
    worker           text,
    lease_until      double precision,
    cancel_requested integer NOT NULL DEFAULT 0,
    provider_task_id text,
    provider_info    text,
    output_path      text,
    thumbnail_path   text,
    result           text,
    webhook_url      text,
    metadata         text
);
CREATE INDEX jobs_queue ON jobs (status, seq);
CREATE INDEX jobs_owner ON jobs (owner, seq);
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE status = 'in_progress';
CREATE TABLE attempts (
    job_id     text NOT NULL,
    attempt    integer NOT NULL,
    worker     text NOT NULL,
    started_at double precision NOT NULL,
    ended_at   double precision,
    outcome    text,
    error      text,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    hash       text NOT NULL UNIQUE,
    prefix     text NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision
);
CREATE TABLE idempotency (
    owner       text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    status      integer,
    body        bytea,
    job_id      text,
    created_at  double precision NOT NULL,
    holder      text,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
CREATE TABLE webhook_deliveries (
    id           text PRIMARY KEY,
    job_id       text NOT NULL,
    url          text NOT NULL,
    event        text NOT NULL,
    payload      text NOT NULL,
    state        text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    next_at      double precision NOT NULL,
    sender       text,
    lease_until  double precision,
    last_status  integer,
    last_error   text,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL
);
CREATE INDEX deliveries_due ON webhook_deliveries (state, next_at);
CREATE INDEX deliveries_job ON webhook_deliveries (job_id, created_at);
CREATE TABLE webhook_attempts (
    delivery_id text NOT NULL,
    n           integer NOT NULL,
    at          double precision NOT NULL,
    status      integer,
    error       text,
    PRIMARY KEY (delivery_id, n)
);
CREATE TABLE disabled_endpoints (
    url    text PRIMARY KEY,
    at     double precision NOT NULL,
    reason text NOT NULL
);
"""

_MIGRATION_2 = f"""
CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('revocations', 0);
CREATE INDEX jobs_waiting ON jobs (kind, not_before) WHERE status = 'queued';
CREATE FUNCTION kinema_job_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{JOBS_CHANNEL}', NEW.kind);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_queued AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION kinema_job_queued();
"""

_MIGRATION_3 = """
CREATE INDEX jobs_active ON jobs (owner) WHERE status IN ('queued', 'in_progress');
"""

_MIGRATION_4 = """
ALTER TABLE jobs ADD COLUMN callback_token text;
ALTER TABLE jobs ADD COLUMN poll_hint_at double precision;
ALTER TABLE jobs ADD COLUMN submitting_at double precision;
ALTER TABLE api_keys ADD COLUMN budget_amount double precision;
ALTER TABLE api_keys ADD COLUMN budget_currency text;
"""

#: (version, what it does, SQL). Append only: a released migration is never edited, a change is a new migration.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "the job store's tables (the SQLite store's schema)", _MIGRATION_1),
    (2, "wake-ups (NOTIFY kinema_jobs when a job is queued), the revocation counter", _MIGRATION_2),
    (3, "an index for admission's count of an owner's active jobs", _MIGRATION_3),
    (4, "provider callbacks (per-job token, poll hints), the submitting mark, per-key budgets", _MIGRATION_4),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=True, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise StoreError(f"cannot connect to the PostgreSQL job store at {redact(url)}: {exc}") from exc


def schema_version(con: psycopg.Connection[Any]) -> int:
    """The database's schema version: 0 when it has no ``schema_version`` table (an empty database)."""
    found = con.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present").fetchone()
    if not found or not cast(dict[str, Any], found)["present"]:
        return 0
    row = con.execute("SELECT coalesce(max(version), 0) AS v FROM schema_version").fetchone()
    return int(cast(dict[str, Any], row)["v"])


def migrate_schema(url: str, target: int | None = None) -> list[int]:
    """Bring the database at ``url`` to schema version ``target`` (default: the latest); returns the versions
    applied. Concurrent callers (replicas starting together) take turns on an advisory lock; each migration commits
    with its ``schema_version`` row, so an interrupted upgrade resumes where it stopped. A database newer than this
    code refuses it (StoreError): upgrade kinema rather than run old code on a new schema."""
    target = LATEST_VERSION if target is None else target
    applied: list[int] = []
    with _connect(url) as con:
        for version, description, sql in MIGRATIONS:
            if version > target:
                break
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                con.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                    "applied_at double precision NOT NULL, description text NOT NULL)"
                )
                current = schema_version(con)
                if current > LATEST_VERSION:
                    raise StoreError(
                        f"the PostgreSQL job store at {redact(url)} has schema version {current}, newer"
                        f" than this kinema knows ({LATEST_VERSION}): upgrade kinema"
                    )
                if current >= version:
                    continue
                con.execute(sql)
                con.execute(
                    "INSERT INTO schema_version (version, applied_at, description) VALUES (%s, %s, %s)",
                    (version, time.time(), description),
                )
                applied.append(version)
        if not applied and schema_version(con) > LATEST_VERSION:
            raise StoreError(
                f"the PostgreSQL job store at {redact(url)} has schema version {schema_version(con)},"
                f" newer than this kinema knows ({LATEST_VERSION}): upgrade kinema"
            )
    return applied


class _Listener:
    """One ``LISTEN kinema_jobs`` connection per process, in a daemon thread: every notification bumps
    ``generation`` and wakes the waiters. Reconnects after an error; while it is down, waiters poll."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cond = threading.Condition()
        self.generation = 0
        #: bumped by ``wake_waiters``: waiters return True at once
        self.woken = 0
        self.ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kinema-pg-listen", daemon=True)
        self.thread.start()

    def _bump(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as con:
                    con.execute(f"LISTEN {JOBS_CHANNEL}")
                    self.ready.set()
                    self._bump()  # a (re)connection may have missed notifications: waiters look again
                    while not self._stop.is_set():
                        for _ in con.notifies(timeout=0.5):
                            self._bump()
            except psycopg.Error:
                pass
            self.ready.clear()
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()


class PostgresStore:
    """The job store on PostgreSQL. Thread-safe: a connection pool per process (rebuilt after ``fork``), every
    connection in autocommit, writes in explicit transactions (``READ COMMITTED`` plus row locks)."""

    def __init__(self, url: str, *, max_crashes: int = MAX_CRASHES, pool_size: int = 8, migrate: bool = True) -> None:
        self.url = url
        self.max_crashes = max_crashes
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._pool: ConnectionPool[Any] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._listener: _Listener | None = None
        self._key_cache: dict[str, tuple[str | None, float]] = {}
        self._revocations_seen: int | None = None
        self._idempotency_purged = 0.0
        if migrate:
            migrate_schema(url)
        else:
            with _connect(url) as con:
                found = schema_version(con)
            if found != LATEST_VERSION:
                raise StoreError(
                    f"the PostgreSQL job store at {redact(url)} has schema version {found}, this kinema"
                    f" needs {LATEST_VERSION}: open it with migrations on"
                )
        self.recover_idempotency()

    # -- connections ---------------------------------------------------------------------------------------------
    def _fresh(self) -> None:
        """After ``fork`` the parent's pool, threads and listener are not ours: start over (never close theirs)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pool, self._executor, self._listener = None, None, None
                    self._key_cache = {}
                    self._pid = os.getpid()

    def _get_pool(self) -> ConnectionPool[Any]:
        self._fresh()
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        open=True,
                        name="kinema-store",
                        kwargs={"autocommit": True, "row_factory": dict_row},
                        # a connection broken by a server restart or failover is replaced, not handed out
                        check=ConnectionPool.check_connection,
                    )
                pool = self._pool
        return pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit (each statement its own transaction): for reads."""
        with self._get_pool().connection() as con:
            yield con

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction: committed when the block ends, rolled back on error."""
        with self._get_pool().connection() as con, con.transaction():
            yield con

    def _one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> dict[str, Any] | None:
        with self.connection() as con:
            return cast("dict[str, Any] | None", con.execute(sql, params).fetchone())

    def _all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self.connection() as con:
            return cast("list[dict[str, Any]]", con.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pool, self._executor, self._listener = None, None, None
                return
            if self._listener is not None:
                self._listener.stop()
                self._listener = None
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def integrity_ok(self) -> bool:
        with self.connection() as con:
            return schema_version(con) == LATEST_VERSION

    def checkpoint(self) -> None:
        """Nothing to do: PostgreSQL checkpoints and vacuums by itself."""

    # -- jobs: submit and read -----------------------------------------------------------------------------------
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
        """Insert a queued job (and, with ``idempotency``, its key's answer, atomically); returns once committed."""
        return self._insert(
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
        )

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
        """:meth:`submit_job` on a small thread pool: the future is resolved after the commit."""
        self._fresh()
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=max(1, min(4, self.pool_size)), thread_name_prefix="kinema-pg-submit"
                    )
                executor = self._executor
        return executor.submit(
            self._insert,
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
        )

    def _insert(
        self,
        *,
        owner: str,
        request: dict[str, Any],
        summary: dict[str, Any],
        kind: str,
        max_attempts: int,
        webhook_url: str | None,
        metadata: dict[str, Any] | None,
        job_id: str | None,
        idempotency: tuple[str, Callable[[Job], tuple[int, bytes]]] | None,
        limits: AdmissionLimits | None = None,
    ) -> Job:
        job_id = job_id or "video_" + secrets.token_hex(12)
        with self.transaction() as con:
            if limits is not None:
                # held to the commit: replicas' submits take turns between counting and committing, so none
                # counts before another's insert is visible and both squeeze past the bound
                con.execute("SELECT pg_advisory_xact_lock(%s)", (ADMISSION_LOCK,))

                def count(sql: str, args: tuple[Any, ...]) -> int:
                    return int(cast(dict[str, Any], con.execute(sql.replace("?", "%s"), args).fetchone())["count"])

                refused = admission_refusal(count, owner, limits)
                if refused is not None:
                    raise refused
            row = con.execute(
                "INSERT INTO jobs (id, owner, kind, status, request, summary, created_at, max_attempts, webhook_url,"
                " metadata) VALUES (%s, %s, %s, 'queued', %s, %s, %s, %s, %s, %s) RETURNING *",
                (
                    job_id,
                    owner,
                    kind,
                    dump_json(request),
                    dump_json(summary),
                    time.time(),
                    max_attempts,
                    webhook_url,
                    dump_json(metadata or {}),
                ),
            ).fetchone()
            job = Job.from_row(cast(Any, row))
            if idempotency is not None:
                key, respond = idempotency
                status, body = respond(job)
                con.execute(
                    "UPDATE idempotency SET status=%s, body=%s, job_id=%s WHERE owner=%s AND key=%s",
                    (status, body, job.id, owner, key),
                )
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        row = self._one("SELECT * FROM jobs WHERE id=%s", (job_id,))
        if row is None or (owner is not None and row["owner"] != owner):
            return None
        return Job.from_row(cast(Any, row))

    def list_jobs(
        self, owner: str, *, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> tuple[list[Job], bool]:
        op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        params: list[Any] = [owner]
        where = "owner=%s"
        with self.connection() as con:
            if after:
                row = con.execute("SELECT seq FROM jobs WHERE id=%s AND owner=%s", (after, owner)).fetchone()
                if row is None:
                    raise KeyError(after)
                where += f" AND seq {op} %s"
                params.append(cast(dict[str, Any], row)["seq"])
            rows = con.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY seq {direction} LIMIT %s", (*params, limit + 1)
            ).fetchall()
        return [Job.from_row(cast(Any, r)) for r in rows[:limit]], len(rows) > limit

    def queue_depth(self) -> int:
        row = self._one("SELECT count(*) AS n FROM jobs WHERE status='queued'")
        return int(row["n"]) if row else 0

    def active_count(self, owner: str) -> int:
        row = self._one(
            "SELECT count(*) AS n FROM jobs WHERE owner=%s AND status IN ('queued','in_progress')", (owner,)
        )
        return int(row["n"]) if row else 0

    def attempts_of(self, job_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM attempts WHERE job_id=%s ORDER BY attempt", (job_id,))

    def job_stats(self, now: float | None = None) -> JobStats:
        """Jobs by (status, kind), attempts, crashes, the oldest queued job and leases by worker (expired ones past
        ``now``, default the current time): two ``GROUP BY`` queries in one ``REPEATABLE READ`` transaction (one
        snapshot), not a read of every job."""
        now = time.time() if now is None else now
        with self.transaction() as con:
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            by_kind = con.execute(JOB_STATS_SQL[0]).fetchall()
            by_worker = con.execute(JOB_STATS_SQL[1].replace("?", "%s"), (now, now)).fetchall()
        return job_stats_from(by_kind, by_worker)

    # -- jobs: the worker's side ---------------------------------------------------------------------------------
    def claim(self, worker: str, lease_seconds: float, kinds: tuple[str, ...] = ("video",)) -> Job | None:
        """Take the oldest runnable queued job: the row is picked and locked with ``FOR UPDATE SKIP LOCKED``, so
        concurrent claimers take different rows without waiting on each other."""
        now = time.time()
        with self.transaction() as con:
            row = con.execute(
                "UPDATE jobs SET status='in_progress', worker=%s, lease_until=%s, attempts=attempts+1,"
                " started_at=coalesce(started_at, %s), stage='starting'"
                " WHERE seq=(SELECT seq FROM jobs WHERE status='queued' AND not_before<=%s AND kind = ANY(%s)"
                " ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *",
                (worker, now + lease_seconds, now, now, list(kinds)),
            ).fetchone()
            if row is None:
                return None
            job = Job.from_row(cast(Any, row))
            con.execute(
                "INSERT INTO attempts (job_id, attempt, worker, started_at) VALUES (%s, %s, %s, %s) ON CONFLICT"
                " (job_id, attempt) DO UPDATE SET worker=EXCLUDED.worker, started_at=EXCLUDED.started_at,"
                " ended_at=NULL, outcome=NULL, error=NULL",
                (job.id, job.attempts, worker, now),
            )
        return job

    def _listener_for(self) -> _Listener:
        self._fresh()
        listener = self._listener
        if listener is None:
            with self._lock:
                if self._listener is None:
                    self._listener = _Listener(self.url)
                listener = self._listener
        return listener

    def wait_for_work(self, timeout: float, kinds: tuple[str, ...] = ("video",)) -> bool:
        """Wait for ``NOTIFY kinema_jobs`` (sent by a trigger when a job becomes queued) or for a delayed retry's
        ``not_before``. The listener is subscribed before the queue is looked at, so no job queued in between is
        missed; while it is disconnected this polls every 0.5 s."""
        deadline = time.monotonic() + timeout
        listener = self._listener_for()
        woken = listener.woken
        listener.ready.wait(min(timeout, 5.0))
        while True:
            if listener.woken != woken:
                return True
            generation = listener.generation
            row = self._one(
                "SELECT min(not_before) AS nb FROM jobs WHERE status='queued' AND kind = ANY(%s)", (list(kinds),)
            )
            soonest = row["nb"] if row else None
            now = time.time()
            if soonest is not None and soonest <= now:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait = left if soonest is None else min(left, soonest - now + 0.005)
            if not listener.ready.is_set():
                wait = min(wait, 0.5)
            with listener.cond:
                listener.cond.wait_for(
                    lambda: listener.generation != generation or listener.woken != woken,  # noqa: B023
                    wait,
                )

    def wake_waiters(self) -> None:
        """End this process's :meth:`wait_for_work` calls now (they return True). Other processes' waiters are
        woken by the trigger's ``NOTIFY``."""
        self._fresh()
        listener = self._listener
        if listener is None:  # nobody in this process has waited: no LISTEN connection to open for it
            return
        with listener.cond:
            listener.woken += 1
            listener.cond.notify_all()

    def heartbeat(self, job_id: str, worker: str, attempt: int, lease_seconds: float) -> tuple[bool, bool]:
        with self.transaction() as con:
            row = con.execute(
                "UPDATE jobs SET lease_until=%s WHERE id=%s AND worker=%s AND attempts=%s AND status='in_progress'"
                " RETURNING cancel_requested",
                (time.time() + lease_seconds, job_id, worker, attempt),
            ).fetchone()
        if row is None:
            return False, True
        return True, bool(cast(dict[str, Any], row)["cancel_requested"])

    def update_progress(
        self,
        job_id: str,
        worker: str,
        attempt: int,
        progress: int,
        stage: str | None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET progress=greatest(progress, %s), stage=%s, progress_detail=%s WHERE id=%s AND"
                " worker=%s AND attempts=%s AND status='in_progress'",
                (int(progress), stage, dump_json(detail) if detail else None, job_id, worker, attempt),
            )
            return cur.rowcount == 1

    def set_provider_task(self, job_id: str, worker: str, attempt: int, task_id: str, info: dict[str, Any]) -> bool:
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET provider_task_id=%s, provider_info=%s, submitting_at=NULL WHERE id=%s AND worker=%s"
                " AND attempts=%s AND status='in_progress'",
                (task_id, dump_json(info or {}), job_id, worker, attempt),
            )
            return cur.rowcount == 1

    def mark_submitting(self, job_id: str, worker: str, attempt: int, active: bool = True) -> bool:
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET submitting_at=%s WHERE id=%s AND worker=%s AND attempts=%s AND status='in_progress'",
                (time.time() if active else None, job_id, worker, attempt),
            )
            return cur.rowcount == 1

    def callback_token(self, job_id: str) -> str | None:
        with self.transaction() as con:
            row = con.execute(
                "UPDATE jobs SET callback_token=coalesce(callback_token, %s) WHERE id=%s RETURNING callback_token",
                (secrets.token_urlsafe(24), job_id),
            ).fetchone()
        return cast(Any, row)["callback_token"] if row else None

    def record_poll_hint(self, job_id: str) -> bool:
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET poll_hint_at=%s WHERE id=%s AND status IN ('queued','in_progress')",
                (time.time(), job_id),
            )
            return cur.rowcount == 1

    def poll_hints(self, job_ids: list[str]) -> dict[str, float]:
        if not job_ids:
            return {}
        rows = self._all(
            "SELECT id, poll_hint_at FROM jobs WHERE id = ANY(%s) AND poll_hint_at IS NOT NULL", (list(job_ids),)
        )
        return {r["id"]: r["poll_hint_at"] for r in rows}

    def status_summary(self, failed_since: float) -> dict[str, Any]:
        return operator_status(lambda sql, params: self._all(sql.replace("?", "%s"), params), failed_since)

    def usage_rows(self, owner: str, since: float | None = None) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT id, status, created_at, request, result FROM jobs WHERE owner=%s AND created_at>=%s ORDER BY seq",
            (owner, since or 0.0),
        )
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
        """Mark completed if this attempt still owns the job: the row is locked (``FOR UPDATE``) and checked,
        ``publish`` runs, then the row is updated, all in one transaction."""
        now = time.time()
        with self.transaction() as con:
            row = con.execute(
                "SELECT 1 FROM jobs WHERE id=%s AND worker=%s AND attempts=%s AND status='in_progress' FOR UPDATE",
                (job_id, worker, attempt),
            ).fetchone()
            if row is None:
                return False
            if publish is not None:
                publish()
            con.execute(
                "UPDATE jobs SET status='completed', progress=100, stage='done', completed_at=%s, expires_at=%s,"
                " result=%s, output_path=%s, thumbnail_path=%s, lease_until=NULL, error=NULL WHERE id=%s",
                (now, expires_at, dump_json(result), output_path, thumbnail_path, job_id),
            )
            self._end_attempt(con, job_id, attempt, "completed", None, now)
        return True

    def fail(
        self, job_id: str, worker: str, attempt: int, error: dict[str, Any], *, retry_after: float | None = None
    ) -> str | None:
        now = time.time()
        with self.transaction() as con:
            found = con.execute(
                "SELECT failures, max_attempts FROM jobs WHERE id=%s AND worker=%s AND attempts=%s AND"
                " status='in_progress' FOR UPDATE",
                (job_id, worker, attempt),
            ).fetchone()
            if found is None:
                return None
            row = cast(dict[str, Any], found)
            if retry_after is not None and row["failures"] + 1 < row["max_attempts"]:
                con.execute(
                    "UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, not_before=%s,"
                    " stage=%s, error=%s, failures=failures+1 WHERE id=%s",
                    (now + retry_after, "retrying", dump_json(error), job_id),
                )
                self._end_attempt(con, job_id, attempt, "retry", error, now)
                return "queued"
            con.execute(
                "UPDATE jobs SET status='failed', completed_at=%s, error=%s, lease_until=NULL,"
                " stage='failed', failures=failures+1 WHERE id=%s",
                (now, dump_json(error), job_id),
            )
            self._end_attempt(con, job_id, attempt, "failed", error, now)
            return "failed"

    def finish_cancelled(self, job_id: str, worker: str, attempt: int) -> bool:
        now = time.time()
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET status='cancelled', completed_at=%s, lease_until=NULL, stage='cancelled', error=%s"
                " WHERE id=%s AND worker=%s AND attempts=%s AND status='in_progress'",
                (now, dump_json({"code": "cancelled", "message": "the job was cancelled"}), job_id, worker, attempt),
            )
            if cur.rowcount:
                self._end_attempt(con, job_id, attempt, "cancelled", None, now)
            return cur.rowcount == 1

    def release(self, job_id: str, worker: str, attempt: int, reason: str) -> bool:
        now = time.time()
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, stage='queued'"
                " WHERE id=%s AND worker=%s AND attempts=%s AND status='in_progress'",
                (job_id, worker, attempt),
            )
            if cur.rowcount:
                self._end_attempt(con, job_id, attempt, "released", {"message": reason}, now)
            return cur.rowcount == 1

    @staticmethod
    def _end_attempt(
        con: psycopg.Connection[Any], job_id: str, attempt: int, outcome: str, error: Any, now: float
    ) -> None:
        con.execute(
            "UPDATE attempts SET ended_at=%s, outcome=%s, error=%s WHERE job_id=%s AND attempt=%s",
            (now, outcome, dump_json(error), job_id, attempt),
        )

    def reap(self) -> list[tuple[str, str]]:
        """Expired leases: the rows are locked with ``FOR UPDATE SKIP LOCKED`` (a row a worker is completing right
        now is left for the next pass, which then finds it completed)."""
        now = time.time()
        changed: list[tuple[str, str]] = []
        with self.transaction() as con:
            rows = cast(
                list[dict[str, Any]],
                con.execute(
                    "SELECT id, attempts, crashes, cancel_requested FROM jobs WHERE status='in_progress' AND"
                    " lease_until < %s ORDER BY seq FOR UPDATE SKIP LOCKED",
                    (now,),
                ).fetchall(),
            )
            for r in rows:
                lost = {
                    "code": "worker_lost",
                    "message": f"worker lost: its lease expired during attempt {r['attempts']}",
                }
                if r["cancel_requested"]:
                    status, err = "cancelled", {"code": "cancelled", "message": "the job was cancelled"}
                elif r["crashes"] + 1 >= self.max_crashes:
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
                        " error=%s, crashes=crashes+1 WHERE id=%s",
                        (dump_json(err), r["id"]),
                    )
                else:
                    con.execute(
                        "UPDATE jobs SET status=%s, completed_at=%s, worker=NULL, lease_until=NULL,"
                        " stage=%s, error=%s, crashes=crashes+%s WHERE id=%s",
                        (status, now, status, dump_json(err), int(status == "failed"), r["id"]),
                    )
                self._end_attempt(con, r["id"], r["attempts"], "lost", lost, now)
                changed.append((r["id"], status))
        return changed

    # -- jobs: the client's and the operator's side --------------------------------------------------------------
    def request_cancel(self, job_id: str, owner: str) -> Job | None:
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "UPDATE jobs SET status='cancelled', completed_at=%s, stage='cancelled', error=%s WHERE id=%s AND"
                " owner=%s AND status='queued'",
                (now, dump_json({"code": "cancelled", "message": "the job was cancelled"}), job_id, owner),
            )
            con.execute(
                "UPDATE jobs SET cancel_requested=1 WHERE id=%s AND owner=%s AND status='in_progress'", (job_id, owner)
            )
        return self.get(job_id, owner)

    def delete(self, job_id: str, owner: str) -> Job | None:
        with self.transaction() as con:
            row = con.execute("DELETE FROM jobs WHERE id=%s AND owner=%s RETURNING *", (job_id, owner)).fetchone()
            if row is None:
                return None
            con.execute("DELETE FROM attempts WHERE job_id=%s", (job_id,))
        return Job.from_row(cast(Any, row))

    def requeue(self, job_id: str, owner: str | None = None) -> Job | None:
        with self.transaction() as con:
            where, args = ("id=%s AND owner=%s", (job_id, owner)) if owner is not None else ("id=%s", (job_id,))
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
        rows = self._all(
            "SELECT * FROM jobs WHERE status='completed' AND expires_at < %s AND output_path IS NOT NULL ORDER BY seq",
            (time.time(),),
        )
        return [Job.from_row(cast(Any, r)) for r in rows]

    def forget_outputs(self, job_id: str) -> None:
        with self.transaction() as con:
            con.execute("UPDATE jobs SET output_path=NULL, thumbnail_path=NULL WHERE id=%s", (job_id,))

    # -- idempotency keys ----------------------------------------------------------------------------------------
    def idempotency_begin(self, owner: str, key: str, fingerprint: str, ttl_seconds: float) -> IdempotencyState:
        """Reserve ``key``: the key's row is locked (``FOR UPDATE``), or inserted with ``ON CONFLICT DO NOTHING``
        (a concurrent first request wins and this one reads its row). Expired keys of other requests are purged
        in batches, at most once a minute per process, skipping rows others hold."""
        now = time.time()
        if time.monotonic() - self._idempotency_purged > 60.0:
            self._idempotency_purged = time.monotonic()
            with self.transaction() as con:
                con.execute(
                    "DELETE FROM idempotency WHERE ctid IN (SELECT ctid FROM idempotency WHERE created_at < %s"
                    " LIMIT 10000 FOR UPDATE SKIP LOCKED)",
                    (now - ttl_seconds,),
                )
        with self.transaction() as con:
            sql = "SELECT * FROM idempotency WHERE owner=%s AND key=%s FOR UPDATE"
            row = cast("dict[str, Any] | None", con.execute(sql, (owner, key)).fetchone())
            while row is None:  # absent: insert it, unless a concurrent request did first (then read theirs)
                inserted = con.execute(
                    "INSERT INTO idempotency (owner, key, fingerprint, created_at, holder) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (owner, key) DO NOTHING RETURNING key",
                    (owner, key, fingerprint, now, PROCESS_HOLDER),
                ).fetchone()
                if inserted is not None:
                    return IdempotencyState("new")
                row = cast("dict[str, Any] | None", con.execute(sql, (owner, key)).fetchone())
            expired = row["created_at"] < now - ttl_seconds
            abandoned = row["status"] is None and (
                now - row["created_at"] > IDEMPOTENCY_STALE_SECONDS or holder_gone(row["holder"])
            )
            if expired or abandoned:
                con.execute(
                    "UPDATE idempotency SET fingerprint=%s, created_at=%s, holder=%s, status=NULL, body=NULL,"
                    " job_id=NULL WHERE owner=%s AND key=%s",
                    (fingerprint, now, PROCESS_HOLDER, owner, key),
                )
                return IdempotencyState("new")
            if row["fingerprint"] != fingerprint:
                return IdempotencyState("mismatch")
            if row["status"] is None:
                wait = max(1.0, row["created_at"] + IDEMPOTENCY_STALE_SECONDS - now)
                return IdempotencyState("in_flight", retry_after=float(math.ceil(wait)))
            return IdempotencyState("replay", row["status"], bytes(row["body"]))

    def recover_idempotency(self) -> int:
        rows = self._all("SELECT owner, key, holder FROM idempotency WHERE status IS NULL")
        dead = [(r["owner"], r["key"], r["holder"]) for r in rows if holder_gone(r["holder"])]
        if dead:
            with self.transaction() as con, con.cursor() as cur:
                cur.executemany(
                    "DELETE FROM idempotency WHERE owner=%s AND key=%s AND holder=%s AND status IS NULL", dead
                )
        return len(dead)

    def idempotency_finish(self, owner: str, key: str, status: int, body: bytes) -> None:
        with self.transaction() as con:
            con.execute(
                "UPDATE idempotency SET status=%s, body=%s WHERE owner=%s AND key=%s", (status, body, owner, key)
            )

    def idempotency_release(self, owner: str, key: str) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM idempotency WHERE owner=%s AND key=%s AND status IS NULL", (owner, key))

    # -- API keys ------------------------------------------------------------------------------------------------
    def create_key(self, name: str = "", budget: tuple[float, str] | None = None) -> tuple[str, str]:
        secret = "kin_" + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(8)
        amount, currency = budget if budget is not None else (None, None)
        with self.transaction() as con:
            con.execute(
                "INSERT INTO api_keys (id, name, hash, prefix, created_at, budget_amount, budget_currency)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (key_id, name, hash_key(secret), secret[:8], time.time(), amount, currency),
            )
        return key_id, secret

    def list_keys(self) -> list[dict[str, Any]]:
        return self._all(
            "SELECT id, name, prefix, created_at, revoked_at, budget_amount, budget_currency FROM"
            " api_keys ORDER BY created_at"
        )

    def key_budget(self, key_id: str) -> tuple[float, str] | None:
        rows = self._all("SELECT budget_amount, budget_currency FROM api_keys WHERE id=%s", (key_id,))
        if not rows or rows[0]["budget_amount"] is None:
            return None
        return float(rows[0]["budget_amount"]), str(rows[0]["budget_currency"])

    def revoke_key(self, key_id: str) -> bool:
        """Revoke the key and bump the ``revocations`` counter in the same transaction."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE api_keys SET revoked_at=%s WHERE id=%s AND revoked_at IS NULL", (time.time(), key_id)
            )
            revoked = cur.rowcount == 1
            if revoked:
                con.execute("UPDATE counters SET value=value+1 WHERE name='revocations'")
        self._key_cache.clear()
        return revoked

    def authenticate(self, secret: str, cache_seconds: float = 5.0) -> str | None:
        """The key id for a presented secret, or None. A cached answer is used only while the ``revocations``
        counter is unchanged (one primary-key read), so a revocation anywhere takes effect at once here."""
        self._fresh()
        digest = hash_key(secret)
        now = time.monotonic()
        hit = self._key_cache.get(digest)
        with self.connection() as con:
            if hit is not None and now - hit[1] < cache_seconds:
                row = con.execute("SELECT value FROM counters WHERE name='revocations'").fetchone()
                if row is not None and cast(dict[str, Any], row)["value"] == self._revocations_seen:
                    return hit[0]
            found = con.execute(
                "SELECT (SELECT value FROM counters WHERE name='revocations') AS generation,"
                " (SELECT id FROM api_keys WHERE hash=%s AND revoked_at IS NULL) AS id",
                (digest,),
            ).fetchone()
        row = cast(dict[str, Any], found)
        if row["generation"] != self._revocations_seen:
            self._key_cache.clear()
            self._revocations_seen = row["generation"]
        if len(self._key_cache) > 10_000:
            self._key_cache.clear()
        key_id = cast("str | None", row["id"])
        self._key_cache[digest] = (key_id, now)
        return key_id

    # -- webhook deliveries --------------------------------------------------------------------------------------
    def enqueue_delivery(self, job_id: str, url: str, event: str, payload: dict[str, Any]) -> str:
        msg_id = "msg_" + secrets.token_hex(12)
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO webhook_deliveries (id, job_id, url, event, payload, next_at, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (msg_id, job_id, url, event, dump_json(payload), now, now, now),
            )
        return msg_id

    def claim_deliveries(self, sender: str, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        """Due deliveries, picked and locked with ``FOR UPDATE SKIP LOCKED`` and leased to ``sender``."""
        now = time.time()
        with self.transaction() as con:
            rows = cast(
                list[dict[str, Any]],
                con.execute(
                    "UPDATE webhook_deliveries SET sender=%s, lease_until=%s WHERE id IN (SELECT id FROM"
                    " webhook_deliveries WHERE state='pending' AND next_at<=%s AND (lease_until IS NULL OR"
                    " lease_until<%s) ORDER BY next_at, created_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
                    (sender, now + lease_seconds, now, now, limit),
                ).fetchall(),
            )
        return sorted(rows, key=lambda d: (d["next_at"], d["created_at"]))

    def record_delivery(
        self, msg_id: str, *, status: int | None, error: str | None, state: str, next_at: float | None
    ) -> int:
        now = time.time()
        with self.transaction() as con:
            row = con.execute(
                "UPDATE webhook_deliveries SET attempts=attempts+1, state=%s, next_at=coalesce(%s, next_at),"
                " last_status=%s, last_error=%s, lease_until=NULL, updated_at=%s WHERE id=%s RETURNING attempts",
                (state, next_at, status, error, now, msg_id),
            ).fetchone()
            n = int(cast(dict[str, Any], row)["attempts"]) if row else 0
            con.execute(
                "INSERT INTO webhook_attempts (delivery_id, n, at, status, error) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (delivery_id, n) DO UPDATE SET at=EXCLUDED.at, status=EXCLUDED.status,"
                " error=EXCLUDED.error",
                (msg_id, n, now, status, error),
            )
        return n

    def deliveries(self, job_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM webhook_deliveries" + (" WHERE job_id=%s" if job_id else "") + " ORDER BY created_at"
        with self.connection() as con:
            out = cast(list[dict[str, Any]], con.execute(sql, (job_id,) if job_id else ()).fetchall())
            for d in out:
                d["log"] = con.execute(
                    "SELECT * FROM webhook_attempts WHERE delivery_id=%s ORDER BY n", (d["id"],)
                ).fetchall()
        return out

    def endpoint_disabled(self, url: str) -> bool:
        return self._one("SELECT 1 AS one FROM disabled_endpoints WHERE url=%s", (url,)) is not None

    def disable_endpoint(self, url: str, reason: str) -> None:
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO disabled_endpoints (url, at, reason) VALUES (%s, %s, %s) ON CONFLICT (url) DO"
                " UPDATE SET at=EXCLUDED.at, reason=EXCLUDED.reason",
                (url, now, reason),
            )
            con.execute(
                "UPDATE webhook_deliveries SET state='disabled', updated_at=%s WHERE url=%s AND state='pending'",
                (now, url),
            )
