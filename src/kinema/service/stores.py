"""The job store's contract, and :func:`open_store`, which picks an implementation from a path or URL.

Two stores implement :class:`Store`:

* :class:`SQLiteStore` (``kinema.service.store.Store``): one data dir, any number of processes on one host. The
  default: a path, or ``sqlite:///path``.
* :class:`~kinema.service.store_postgres.PostgresStore`: a PostgreSQL database shared by API replicas and workers on
  many hosts (``postgresql://...``; needs the ``cluster`` extra). See docs/cluster.md.

Both give the same guarantees, which are written down once, here, and checked for both by
tests/service/test_store_contract.py.

>>> import tempfile
>>> store = open_store(tempfile.mkdtemp() + "/db.sqlite3")
>>> isinstance(store, Store), type(store).__name__
(True, 'Store')
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .store import AdmissionLimits, AdmissionRefused, IdempotencyState, Job, JobStats
from .store import Store as SQLiteStore

if TYPE_CHECKING:
    from .store_postgres import PostgresStore

__all__ = [
    "Store",
    "SQLiteStore",
    "PostgresStore",
    "AdmissionLimits",
    "AdmissionRefused",
    "JobStats",
    "open_store",
    "is_postgres_url",
    "describe_store",
]

#: the URL schemes :func:`open_store` hands to the PostgreSQL store
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@runtime_checkable
class Store(Protocol):
    """What the job service needs from its durable store. Every method is safe to call from any thread; every store
    object may be used by many processes at once (each opens its own object: objects are not shared across ``fork``).

    **Jobs.** A job is a row before its submitter hears "queued". A worker *claims* the oldest runnable queued job:
    status ``in_progress``, ``worker`` set to the claimer, ``lease_until`` in the future, ``attempts + 1``; two
    concurrent claimers (threads, processes, hosts) never get the same job. Every later write of that attempt
    (heartbeat, progress, provider task, complete, fail, release, finish_cancelled) is guarded by ``worker`` *and*
    ``attempts``: once the attempt is superseded (reaped and claimed again, released, cancelled, deleted) its writes
    change nothing and report so. Execution is at least once, completion exactly once.

    **Failures and crashes.** A job's own failures are counted against ``max_attempts``; attempts lost to crashed
    workers (expired leases, found by :meth:`reap`) are counted apart, and a job that loses its worker
    ``max_crashes`` times is failed as ``poison_job`` (quarantined). :meth:`requeue` renews both budgets.

    **Idempotency keys** are reserved per (owner, key) with a fingerprint of the request; the reservation records
    its holder (host and process) so a reservation whose process died is taken over (at once on the same host, else
    after ``IDEMPOTENCY_STALE_SECONDS``).

    **API keys** store only a hash of the secret; :meth:`authenticate` may cache, but a revocation takes effect at
    once in every process using the same store.

    **Webhook deliveries** are an outbox: rows claimed with a lease by a sender, every attempt logged.
    """

    #: attempts a job may lose to crashed workers before it is quarantined
    max_crashes: int

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
        """Insert a queued job and return it once the row is committed (durable). With ``idempotency=(key,
        respond)`` the reserved key's answer, ``respond(job)`` -> (status, body), is stored in the same
        transaction. With ``limits`` the queue and the owner's active jobs are counted in that transaction too, and
        a job that does not fit raises :class:`AdmissionRefused` (nothing written): concurrent submits from any
        thread, process or host never overshoot the bounds."""
        ...

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
        """:meth:`submit_job` without waiting: the future is resolved only after the commit."""
        ...

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when it does not exist or (with ``owner``) belongs to another owner."""
        ...

    def list_jobs(
        self, owner: str, *, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> tuple[list[Job], bool]:
        """A page of the owner's jobs in submission order (``asc``/``desc``) after the cursor job ``after``;
        returns (jobs, has_more). An unknown cursor (or another owner's) raises KeyError."""
        ...

    def queue_depth(self) -> int:
        """Jobs waiting in the queue (status ``queued``, of every kind)."""
        ...

    def active_count(self, owner: str) -> int:
        """The owner's jobs that are queued or running."""
        ...

    def attempts_of(self, job_id: str) -> list[dict[str, Any]]:
        """The job's attempts in order: attempt, worker, started_at, ended_at, outcome, error."""
        ...

    def job_stats(self, now: float | None = None) -> JobStats:
        """Every owner's jobs counted by the database (``GET /metrics``): jobs by (status, kind), attempts and
        crashes recorded on them, the oldest queued job's ``created_at``, live leases by worker and leases expired
        at ``now`` (default: the current time), from one snapshot. A few aggregate queries, not a read per job."""
        ...

    # -- jobs: the worker's side ---------------------------------------------------------------------------------
    def claim(self, worker: str, lease_seconds: float, kinds: tuple[str, ...] = ("video",)) -> Job | None:
        """Take the oldest runnable (``not_before`` passed) queued job of one of ``kinds``, or None. Concurrent
        claimers never get the same job."""
        ...

    def wait_for_work(self, timeout: float, kinds: tuple[str, ...] = ("video",)) -> bool:
        """Block up to ``timeout`` seconds until a job of ``kinds`` may be claimable; True when one may be (claim
        then, and expect to lose the race sometimes), False on timeout. Never misses a job queued while waiting."""
        ...

    def wake_waiters(self) -> None:
        """End every :meth:`wait_for_work` of this process now (they return whether work may be there): a job
        submitted in this process, or a pool stopping. Other processes are woken by the store itself."""
        ...

    def heartbeat(self, job_id: str, worker: str, attempt: int, lease_seconds: float) -> tuple[bool, bool]:
        """Extend the attempt's lease. Returns (still ours, cancel requested); (False, True) means stop and discard
        the work."""
        ...

    def update_progress(
        self,
        job_id: str,
        worker: str,
        attempt: int,
        progress: int,
        stage: str | None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Record the attempt's progress (the percentage never goes back); False when the attempt lost the job."""
        ...

    def set_provider_task(self, job_id: str, worker: str, attempt: int, task_id: str, info: dict[str, Any]) -> bool:
        """Record a remote backend's task id before polling it, so a retry resumes that (paid) task; clears the
        submitting mark."""
        ...

    def mark_submitting(self, job_id: str, worker: str, attempt: int, active: bool = True) -> bool:
        """Mark the job as being submitted to its provider (right before the paid call), or clear the mark (not
        ``active``: the provider refused the submit); False when the attempt no longer owns the job.
        :meth:`set_provider_task` clears the mark, :meth:`requeue` too."""
        ...

    def callback_token(self, job_id: str) -> str | None:
        """The job's provider-callback secret, made on first use; None when there is no such job."""
        ...

    def record_poll_hint(self, job_id: str) -> bool:
        """Note a verified provider callback for the job (its attempt polls at once); False when the job is not
        queued or running."""
        ...

    def poll_hints(self, job_ids: list[str]) -> dict[str, float]:
        """The latest callback hint time of each listed job that has one."""
        ...

    def status_summary(self, failed_since: float) -> dict[str, Any]:
        """An operator's overview (``kinema status``): ``jobs`` by status, ``queue`` (depth, oldest_age_seconds),
        ``running`` (id, worker, attempt, running_seconds, lease_left_seconds...), ``failed_recently`` (failures
        since ``failed_since``: total, by_code) and ``quarantined`` (poison jobs: total and the latest)."""
        ...

    def usage_rows(self, owner: str, since: float | None = None) -> list[dict[str, Any]]:
        """The owner's jobs created at or after ``since``: id, status, created_at, request and result dicts."""
        ...

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
        """Mark the job completed if this attempt still owns it; False (and ``publish`` not called) otherwise.
        ``publish`` runs inside the completing transaction, with the job's row locked: the output appears exactly
        when, and only if, the row says completed. If ``publish`` raises, nothing changes and the error propagates."""
        ...

    def fail(
        self, job_id: str, worker: str, attempt: int, error: dict[str, Any], *, retry_after: float | None = None
    ) -> str | None:
        """Fail this attempt: with ``retry_after`` and failures left (``failures + 1 < max_attempts``) the job is
        queued again, runnable after that delay ("queued"); else it is "failed". None when the attempt lost the job."""
        ...

    def finish_cancelled(self, job_id: str, worker: str, attempt: int) -> bool:
        """The worker stopped a job whose cancellation was requested: mark it cancelled."""
        ...

    def release(self, job_id: str, worker: str, attempt: int, reason: str) -> bool:
        """Give a running job back to the queue (graceful shutdown); the attempt stays counted."""
        ...

    def reap(self) -> list[tuple[str, str]]:
        """Jobs whose lease expired: queued again (a crash counted), quarantined (``poison_job``) once
        ``max_crashes`` is reached, or cancelled when a cancellation was requested. Returns (job id, new status)."""
        ...

    # -- jobs: the client's and the operator's side --------------------------------------------------------------
    def request_cancel(self, job_id: str, owner: str) -> Job | None:
        """Cancel a queued job at once; flag a running one (its worker sees it at the next heartbeat)."""
        ...

    def delete(self, job_id: str, owner: str) -> Job | None:
        """Remove the job and its attempts (a running attempt loses its lease); returns the deleted job."""
        ...

    def requeue(self, job_id: str, owner: str | None = None) -> Job | None:
        """Queue a failed job again with its failure and crash budgets renewed; None when there is no failed job of
        that id (and owner). ``attempts`` keeps counting, so the attempt guard stays unique."""
        ...

    def expired_outputs(self) -> list[Job]:
        """Completed jobs past ``expires_at`` whose files are still recorded (the purger deletes them)."""
        ...

    def forget_outputs(self, job_id: str) -> None:
        """The job's files are gone: clear its output and thumbnail paths."""
        ...

    # -- idempotency keys ----------------------------------------------------------------------------------------
    def idempotency_begin(self, owner: str, key: str, fingerprint: str, ttl_seconds: float) -> IdempotencyState:
        """Reserve ``key`` for this request (``new``), or say what an earlier request with it decided: ``replay``
        (its stored status and body), ``mismatch`` (another fingerprint) or ``in_flight`` (with ``retry_after``).
        Keys older than ``ttl_seconds`` are forgotten."""
        ...

    def idempotency_finish(self, owner: str, key: str, status: int, body: bytes) -> None:
        """Store the answer of a request that did not create a job (the job's answer is stored by submit_job)."""
        ...

    def idempotency_release(self, owner: str, key: str) -> None:
        """Forget a reservation whose request was refused before it began."""
        ...

    def recover_idempotency(self) -> int:
        """Forget the reservations held by processes of this host that are gone; returns how many. Run on open."""
        ...

    # -- API keys ------------------------------------------------------------------------------------------------
    def create_key(self, name: str = "", budget: tuple[float, str] | None = None) -> tuple[str, str]:
        """A new API key: (key id, secret). Only the secret's hash is stored. ``budget``: (amount, currency)."""
        ...

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key: id, name, prefix, created_at, revoked_at, budget_amount, budget_currency (oldest first)."""
        ...

    def key_budget(self, key_id: str) -> tuple[float, str] | None:
        """The key's budget (amount, currency), or None when it has none."""
        ...

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key; True when it was active. Takes effect at once in every process using this store."""
        ...

    def authenticate(self, secret: str, cache_seconds: float = 5.0) -> str | None:
        """The key id of a presented secret, or None. May be cached for ``cache_seconds``, never past a
        revocation."""
        ...

    # -- webhook deliveries --------------------------------------------------------------------------------------
    def enqueue_delivery(self, job_id: str, url: str, event: str, payload: dict[str, Any]) -> str:
        """Add a pending delivery to the outbox; returns its message id."""
        ...

    def claim_deliveries(self, sender: str, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        """Up to ``limit`` due pending deliveries, leased to ``sender`` (no other sender gets them until the lease
        ends or the attempt is recorded), oldest due first."""
        ...

    def record_delivery(
        self, msg_id: str, *, status: int | None, error: str | None, state: str, next_at: float | None
    ) -> int:
        """Log one attempt, set the delivery's state (and next try), end its lease; returns the attempt number."""
        ...

    def deliveries(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries (of one job, or all) with their attempt ``log``."""
        ...

    def endpoint_disabled(self, url: str) -> bool: ...

    def disable_endpoint(self, url: str, reason: str) -> None:
        """Disable an endpoint: its pending deliveries become ``disabled``."""
        ...

    # -- upkeep --------------------------------------------------------------------------------------------------
    def integrity_ok(self) -> bool:
        """The store's own consistency check passes."""
        ...

    def checkpoint(self) -> None:
        """Periodic upkeep (SQLite: bound the WAL); may do nothing."""
        ...

    def close(self) -> None:
        """Release this object's connections (of the calling thread, for SQLite)."""
        ...


if TYPE_CHECKING:  # mypy checks that both stores satisfy the contract

    def _conforms(sqlite: SQLiteStore, postgres: PostgresStore) -> tuple[Store, Store]:
        return sqlite, postgres


def is_postgres_url(url_or_path: str | os.PathLike[str]) -> bool:
    return isinstance(url_or_path, str) and url_or_path.startswith(POSTGRES_SCHEMES)


def describe_store(url_or_path: str | os.PathLike[str]) -> str:
    """Where a store is, for people: ``SQLite /path/kinema.sqlite3`` or ``PostgreSQL postgresql://user:***@host/db``
    (a password in the URL is never shown)."""
    if is_postgres_url(url_or_path):
        url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", str(url_or_path))
        return "PostgreSQL " + re.sub(r"(password=)[^&\s]*", r"\1***", url)
    text = os.fspath(url_or_path)
    return "SQLite " + (text[len("sqlite://") + 1 :] if text.startswith("sqlite://") else text)


def open_store(url_or_path: str | os.PathLike[str], **options: Any) -> Store:
    """The store at ``url_or_path``: a file path or ``sqlite:///path`` (``sqlite:////abs`` or ``sqlite:///rel``)
    opens SQLite; ``postgresql://...`` (or ``postgres://``) opens PostgreSQL and runs its schema migrations.
    ``options`` go to the store's constructor (``max_crashes``; for PostgreSQL also ``pool_size``)."""
    if is_postgres_url(url_or_path):
        try:
            from .store_postgres import PostgresStore
        except ImportError as exc:  # psycopg (the cluster extra) is missing
            from ..errors import MissingExtra

            raise MissingExtra("cluster", "psycopg", feature="the PostgreSQL job store") from exc
        return PostgresStore(str(url_or_path), **options)
    text = os.fspath(url_or_path)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
        if not text.startswith("/"):
            raise ValueError(f"a SQLite URL is sqlite:///path, got {url_or_path!r}")
        # sqlite:///rel/db -> rel/db; sqlite:////abs/db -> /abs/db (SQLAlchemy's convention)
        text = text[1:]
        if not text:
            raise ValueError(f"the SQLite URL {url_or_path!r} names no file")
    elif "://" in text:
        raise ValueError(
            f"unknown store URL {url_or_path!r}: use a path, sqlite:///path or postgresql://user@host/dbname"
        )
    return SQLiteStore(Path(text), **options)


def __getattr__(name: str) -> Any:  # PostgresStore without importing psycopg until asked
    if name == "PostgresStore":
        from .store_postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)
