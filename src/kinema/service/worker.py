"""Workers: claim jobs from the store, run them through ``kinema.engine.run``, publish the output atomically.

A :class:`WorkerPool` runs ``threads`` claim loops plus one housekeeping thread that heartbeats every running job's
lease (and so learns about cancel requests and lost leases), runs the reaper and purges expired outputs. The same
pool runs inside ``kinema serve`` and as ``kinema worker`` (a separate process on the same data dir).

Shutdown: the first stop (SIGTERM) stops claiming and lets running jobs finish for ``shutdown_grace`` seconds; what
is still running then is aborted and released back to the queue (its attempt counted). A second SIGTERM aborts at
once. A worker killed with ``kill -9`` releases nothing: its lease expires and the reaper re-queues the job.

Job kinds: a pool claims and runs only the kinds it is given (``kinds``, name -> runner); by default Kinema's own,
``video`` and ``storyboard``, from :func:`~kinema.service.job_kinds.default_job_kinds`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import CancelToken
from ..errors import Cancelled, InvalidRequest, KinemaError, ProviderError, RankLost, RateLimited
from ..errors import error_dict as kinema_error_dict
from ..progress import ProgressEvent
from .config import ServiceConfig
from .job_kinds import JobRunner, default_job_kinds
from .schemas import video_object
from .store import Job
from .stores import Store, open_store
from .webhooks import event_payload

__all__ = [
    "WorkerPool",
    "AttemptContext",
    "run_worker_process",
    "error_dict",
    "warm_default_backend",
    "default_torch_threads",
    "apply_torch_threads",
]

log = logging.getLogger("kinema.service.worker")

#: the longest an idle claim loop waits on the store's wake-up before it claims again anyway
WAIT_SECONDS = 1.0
#: an attempt's unpublished output files are deleted once this old (seconds since modified): see sweep_lost_outputs
LOST_OUTPUT_GRACE = 300.0


def warm_default_backend() -> str:
    """Load the default backend's model now (its ``warm()`` where it has one; the built-in model's cached loader
    otherwise), so the first job does not pay for it; returns the backend's name. Loads are cached per process."""
    from ..backends import DEFAULT_BACKEND, get_backend

    backend = get_backend(DEFAULT_BACKEND)
    warm = getattr(backend, "warm", None)
    if callable(warm):
        warm()
    elif DEFAULT_BACKEND == "builtin":
        from ..builtin import load_model

        load_model()
    return DEFAULT_BACKEND


def default_torch_threads(threads: int) -> int:
    """The PyTorch threads a worker process should use when not told: ``OMP_NUM_THREADS`` when it is set (the
    operator's or the container's choice), else the CPUs this process may run on (its affinity mask) divided among
    its ``threads`` claim loops, at least 1. PyTorch's own default (every core, for every job at once) oversubscribes
    the CPU as soon as two jobs run together; how many other worker processes share the machine cannot be known
    from here, so with several, give each ``--torch-threads`` (cores / processes).

    ``threads``: the jobs this process runs at once."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, threads))


def apply_torch_threads(n: int) -> int | None:
    """Make this process's PyTorch use ``n`` threads for its operations, before any model loads: sets
    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` (read by torch and the libraries it loads when first imported, and
    by child processes) and calls ``torch.set_num_threads``. Returns the count torch reports, or None when torch is
    not installed (a worker for cloud providers only).

    ``n``: the thread count, at least 1."""
    if n < 1:
        raise InvalidRequest("torch_threads", "the thread count must be at least 1", value=n)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(n)
    return int(torch.get_num_threads())


@dataclass
class AttemptContext:
    """What a job runner gets besides the job: where to write, how to report, and its cancel token."""

    pool: WorkerPool
    job: Job
    token: CancelToken
    attempt: int
    lost: bool = False  # the lease was lost (deleted, or reaped): discard everything
    abort: bool = False  # shutdown: release the job back to the queue
    last_progress: tuple[int, str | None, int] = (-1, None, -1)
    last_write: float = 0.0
    last_hook: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: set when a verified provider callback arrives: a remote backend's poll loop polls at once
    poll_now: threading.Event = field(default_factory=threading.Event)
    #: the latest stored callback hint this attempt has acted on (hints from other processes come via the store)
    hint_seen: float = 0.0

    def progress(self, event: ProgressEvent, **detail: Any) -> None:
        """Store progress (throttled: a new stage at once, a new step or percent at most every 0.2 s) with the
        step, total and ETA, and emit throttled ``video.progress`` webhooks. ``detail`` adds fields (a storyboard's
        scene number)."""
        pct = min(99, int(event.fraction * 100))
        now = time.monotonic()
        stage_changed = event.stage != self.last_progress[1]
        if (pct, event.stage, event.step) == self.last_progress:
            return
        if not stage_changed and now - self.last_write < 0.2:
            return
        self.last_progress, self.last_write = (pct, event.stage, event.step), now
        info: dict[str, Any] = {"step": event.step, "total": event.total, **detail}
        if event.eta is not None:
            info["eta_seconds"] = round(event.eta, 1)
        store = self.pool.store
        if not store.update_progress(self.job.id, self.pool.name, self.attempt, pct, event.stage, info):
            self.lost = True
            self.token.cancel(keep_provider_task=True)  # another attempt owns the job (and its provider task) now
            return
        if self.job.webhook_url and now - self.last_hook >= self.pool.config.webhook_progress_interval:
            self.last_hook = now
            self.pool.emit(self.job.id, "video.progress")

    def on_submitting(self, active: bool = True) -> None:
        """Remote backends call this right before the paid submit (``active``), and after a submit the provider
        refused (not ``active``): a crash before the task id is recorded is then seen by the next attempt, which
        looks the task up by the client token, or fails for review, instead of paying twice."""
        if not self.pool.store.mark_submitting(self.job.id, self.pool.name, self.attempt, active):
            self.lost = True
            self.token.cancel(keep_provider_task=True)
            raise Cancelled("the job's lease was lost before the provider submit")

    def on_task_id(self, task_id: str, info: dict[str, Any]) -> None:
        """Remote backends call this before polling: the id is durable before any money is at stake twice."""
        if not self.pool.store.set_provider_task(self.job.id, self.pool.name, self.attempt, task_id, info):
            self.lost = True
            self.token.cancel(keep_provider_task=True)
            raise Cancelled("the job's lease was lost; the provider task id was not recorded")


def error_dict(exc: BaseException) -> dict[str, Any]:
    """A failed job's stored error (``code``, ``message``, ``param``, ``type``), from Kinema's error dict: an
    InvalidRequest names its field as ``param``; anything that is not a KinemaError is a ``server_error``."""
    d = kinema_error_dict(exc)
    if isinstance(exc, InvalidRequest):
        kind = "invalid_request_error"
    elif isinstance(exc, KinemaError):
        kind = d["type"]
    else:
        kind = "server_error"
    code = d["code"]
    if isinstance(exc, ProviderError) and exc.provider_code == "submit_unconfirmed":
        code = "submit_unconfirmed"  # needs an operator's look before `kinema jobs retry`: say so in the code
    return {"code": code, "message": d["message"], "param": d["field"], "type": kind}


def gpu_groups(per_job: int, loops: int) -> queue.Queue[list[int] | None]:
    """``loops`` groups of ``per_job`` CUDA devices each (0..per_job-1, then the next ones), as a queue a claim loop
    takes one from for a job; refused when the machine has too few. Without CUDA (CPU ranks with gloo, as the tests
    run) the groups are None: the ranks have no devices to pick."""
    import torch

    groups: queue.Queue[list[int] | None] = queue.Queue()
    if not torch.cuda.is_available():
        for _ in range(loops):
            groups.put(None)
        return groups
    visible = torch.cuda.device_count()
    if per_job * loops > visible:
        raise InvalidRequest(
            "gpus_per_job",
            f"{loops} worker(s) x {per_job} GPUs per job need {per_job * loops} GPUs; {visible} are visible",
            value=per_job,
            allowed=f"workers x gpus_per_job <= {visible}",
        )
    for i in range(loops):
        groups.put(list(range(i * per_job, (i + 1) * per_job)))
    return groups


class WorkerPool:
    """Claim loops + housekeeping for one process. ``start()``, then ``stop()``; see the module docstring."""

    #: whether ``start()`` loads the default backend's model in the background (``config.warm_up`` too)
    WARMS_UP = True

    def __init__(
        self,
        store: Store,
        config: ServiceConfig,
        *,
        threads: int = 1,
        name: str | None = None,
        kinds: Mapping[str, JobRunner] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        #: the job kinds this pool claims and runs (default: Kinema's own, video and storyboard)
        self.kinds: dict[str, JobRunner] = dict(kinds) if kinds is not None else default_job_kinds()
        self.threads = max(0, threads)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.name_slug = "".join(c if c.isalnum() else "-" for c in self.name)
        self.running: dict[str, AttemptContext] = {}
        #: output files seen published by a completed job (the sweep does not read their rows again)
        self._published: set[str] = set()
        self._published_at = time.monotonic()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._loops: list[threading.Thread] = []
        self._house: threading.Thread | None = None
        self.aborted = False
        #: set once the start-up warm-up has ended (loaded, failed or skipped)
        self.warmed = threading.Event()
        self._warm_thread: threading.Thread | None = None
        #: with ``config.gpus_per_job`` > 1: the free GPU groups, one per claim loop (taken for a job's run)
        self.gpu_groups: queue.Queue[list[int] | None] | None = None
        if config.gpus_per_job > 1:
            self.gpu_groups = gpu_groups(config.gpus_per_job, max(1, self.threads))
        config.ensure_dirs()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self, housekeeping: bool = True) -> None:
        from .config import load_extra_backends

        load_extra_backends()
        if self.threads and self.config.warm_up and self.WARMS_UP:
            # in the background: startup and readiness never wait for a model to load
            self._warm_thread = threading.Thread(target=self._warm_up, name="kinema-warmup", daemon=True)
            self._warm_thread.start()
        else:
            self.warmed.set()
        for i in range(self.threads):
            t = threading.Thread(target=self._claim_loop, name=f"kinema-worker-{i}", daemon=True)
            t.start()
            self._loops.append(t)
        if housekeeping:
            self._house = threading.Thread(target=self._housekeeping, name="kinema-housekeeping", daemon=True)
            self._house.start()

    def _warm_up(self) -> None:
        started = time.monotonic()
        try:
            name = warm_default_backend()
            log.info("warm-up: the %s backend's model is loaded (%.1f s)", name, time.monotonic() - started)
        except Exception as exc:  # a job using the backend reports the problem itself; never stop the workers
            log.warning("warm-up: could not load the default backend's model: %s", exc)
        finally:
            self.warmed.set()

    def notify(self) -> None:
        """A job was just submitted (or re-queued) in this process: idle claim loops claim now."""
        self.store.wake_waiters()

    def stop(self, graceful: bool = True, timeout: float | None = None) -> None:
        """Stop claiming; wait for running jobs (``graceful``) up to ``timeout``, then abort and release them."""
        self._stopping.set()
        self.store.wake_waiters()  # idle claim loops return from wait_for_work and see the stop
        if not graceful:
            self.abort_all()
        deadline = time.monotonic() + (self.config.shutdown_grace if timeout is None else timeout)
        for t in self._loops:
            while t.is_alive() and time.monotonic() < deadline:
                self.store.wake_waiters()  # again: a loop may have begun its wait after the first wake-up
                t.join(min(0.05, max(0.0, deadline - time.monotonic())))
        if any(t.is_alive() for t in self._loops):
            self.abort_all()
            for t in self._loops:
                t.join(10)
        self._stopped.set()
        if self._house is not None:
            self._house.join(5)
        if self._warm_thread is not None:
            # a process that exits while this thread is inside torch aborts ("terminate called without an active
            # exception"); a model load cannot be interrupted, so wait a bounded time for it
            self._warm_thread.join(30)

    def abort_all(self) -> None:
        with self._lock:
            for ctx in self.running.values():
                ctx.abort = True
                ctx.token.cancel(keep_provider_task=True)  # shutting down: the job is released and resumed
        self.aborted = self.aborted or bool(self.running)

    def poll_now(self, job_id: str) -> None:
        """A verified provider callback for a job this process runs: its poll loop polls now."""
        with self._lock:
            ctx = self.running.get(job_id)
        if ctx is not None:
            ctx.hint_seen = time.time()
            ctx.poll_now.set()

    def cancel_local(self, job_id: str) -> None:
        """The cancel endpoint ran in this process: stop the job now rather than at the next heartbeat."""
        with self._lock:
            ctx = self.running.get(job_id)
        if ctx is not None:
            ctx.token.cancel()

    @property
    def busy(self) -> int:
        return len(self.running)

    # -- webhooks -------------------------------------------------------------------------------------------
    def emit(self, job_id: str, event: str) -> None:
        """Put a webhook event for the job in the outbox (if the job has a webhook URL)."""
        job = self.store.get(job_id)
        if job is None or not job.webhook_url:
            return
        try:
            self.store.enqueue_delivery(job.id, job.webhook_url, event, event_payload(event, video_object(job)))
        except Exception:  # a webhook problem must never fail the job
            log.exception("could not enqueue webhook %s for %s", event, job_id)

    # -- the loops ------------------------------------------------------------------------------------------
    def may_claim(self) -> bool:
        """Whether a claim loop may lease a job now (always, here; a pool that can run a job only on a free actor,
        like the Ray pool, says no while none is free, so it never holds a lease it cannot use)."""
        return True

    def _claim_loop(self) -> None:
        kinds = tuple(self.kinds)
        told = False  # the last wait said a job may be there
        while not self._stopping.is_set():
            if not self.may_claim():
                self._stopping.wait(0.1)
                continue
            try:
                job = self.store.claim(self.name, self.config.lease_seconds, kinds)
                if job is None:
                    if self._stopping.is_set():
                        break
                    if told:  # another claimer took it (or its row is locked a moment): no busy loop on it
                        self._stopping.wait(0.01)
                    # the store wakes this at once when a job is queued (PostgreSQL: NOTIFY from any host; SQLite:
                    # a submit in this process, else a cheap read every 0.1 s); the timeout only bounds a missed
                    # wake-up (a stop that raced the wait)
                    told = self.store.wait_for_work(WAIT_SECONDS, kinds)
                    continue
            except Exception:
                log.exception("claim failed")
                self._stopping.wait(0.25)
                continue
            told = False
            self._run(job)

    def _run(self, job: Job) -> None:
        ctx = AttemptContext(self, job, CancelToken(), job.attempts)
        with self._lock:
            self.running[job.id] = ctx
        try:
            if job.cancel_requested:
                ctx.token.cancel()
            if job.attempts == 1:
                self.emit(job.id, "video.started")
            self.kinds[job.kind](ctx)
            if not ctx.lost:
                self.emit(job.id, "video.completed")
        except Cancelled:
            if ctx.lost:
                pass
            elif ctx.abort:
                self.store.release(job.id, self.name, ctx.attempt, "worker shut down")
            elif self.store.finish_cancelled(job.id, self.name, ctx.attempt):
                self.emit(job.id, "video.cancelled")
        except Exception as exc:
            if ctx.abort and not ctx.lost:
                self.store.release(job.id, self.name, ctx.attempt, "worker shut down")
            elif not ctx.lost:
                retry = None
                # submit_unconfirmed: a task may exist at the provider; another attempt could pay twice, so the job
                # fails for review (kinema jobs retry) instead
                transient = isinstance(exc, RankLost) or (
                    isinstance(exc, ProviderError) and exc.provider_code != "submit_unconfirmed"
                )  # a split run's process died under it, or the provider failed for now
                if transient:
                    retry = self.config.retry_backoff * 2 ** (ctx.attempt - 1)
                    if isinstance(exc, RateLimited) and exc.retry_after:
                        retry = max(retry, exc.retry_after)
                if not isinstance(exc, KinemaError):
                    log.exception("job %s failed", job.id)
                status = self.store.fail(job.id, self.name, ctx.attempt, error_dict(exc), retry_after=retry)
                if status == "failed":
                    self.emit(job.id, "video.failed")
        finally:
            with self._lock:
                self.running.pop(job.id, None)

    def _housekeeping(self) -> None:
        cfg = self.config
        beat = max(0.05, min(cfg.heartbeat_seconds, cfg.lease_seconds / 3))
        next_reap = next_purge = 0.0
        while not self._stopped.is_set():
            now = time.monotonic()
            try:
                self._heartbeat_all()
                if now >= next_reap:
                    next_reap = now + cfg.reap_interval
                    for job_id, status in self.store.reap():
                        if status in ("failed", "cancelled"):
                            self.emit(job_id, f"video.{status}")
                if now >= next_purge:
                    next_purge = now + 60
                    self.purge_expired()
            except Exception:
                log.exception("housekeeping failed")
            self._stopped.wait(min(beat, cfg.reap_interval))

    def _heartbeat_all(self) -> None:
        with self._lock:
            running = list(self.running.values())
        for ctx in running:
            alive, cancel = self.store.heartbeat(ctx.job.id, self.name, ctx.attempt, self.config.lease_seconds)
            if not alive:
                ctx.lost = True
            if cancel:
                ctx.token.cancel()
        if running and self.config.public_url:
            # callbacks received by another process (an API replica) reach this one through the store
            for job_id, at in self.store.poll_hints([c.job.id for c in running]).items():
                ctx = next(c for c in running if c.job.id == job_id)
                if at > ctx.hint_seen:
                    ctx.hint_seen = at
                    ctx.poll_now.set()

    def purge_expired(self, orphan_age: float = 24 * 3600) -> None:
        """Delete outputs past ``expires_at`` with the inputs the service stored for them (images, copies of the
        clips edited or extended: a rerun after expiry uploads again), work files of attempts that died long ago
        (kill -9 mid-save), and the output files of attempts that did not publish (:meth:`sweep_lost_outputs`).

        ``orphan_age``: how old (seconds since modified) a leftover work file must be to be deleted."""
        from .video_job import published_file, service_inputs

        cutoff = time.time() - orphan_age
        for leftover in self.config.work_dir.iterdir():
            with contextlib.suppress(OSError):
                if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
        for job in self.store.expired_outputs():
            for p in (job.output_path, job.thumbnail_path):
                path = published_file(self.config, p)  # where this host sees it (a shared outputs dir)
                if path is not None:
                    with contextlib.suppress(OSError):
                        path.unlink(missing_ok=True)
                        Path(str(path) + ".json").unlink(missing_ok=True)
            for path in service_inputs(self.config, job.request):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            self.store.forget_outputs(job.id)
        self.sweep_lost_outputs()

    def sweep_lost_outputs(self, grace: float = LOST_OUTPUT_GRACE) -> int:
        """Delete the outputs dir's files of attempts that will never be published: their job is gone, finished
        with another attempt's files (or none), or has moved on to a later attempt (a worker that lost its lease,
        or was killed, after writing). A running attempt's files, the published ones and files not named by
        attempt (outputs of older versions, ``{job}.mp4``) are left alone. Returns how many files were deleted.

        ``grace``: files modified more recently than this many seconds ago are left for the next sweep (a losing
        worker that is still finishing deletes its own files when its completion is refused)."""
        from .video_job import ATTEMPT_FILE

        cutoff = time.time() - grace
        found: dict[str, list[tuple[int, Path]]] = {}
        names: set[str] = set()
        with contextlib.suppress(OSError), os.scandir(self.config.outputs_dir) as entries:
            for entry in entries:
                match = ATTEMPT_FILE.match(entry.name)
                if match is None:
                    continue
                names.add(entry.name)
                if entry.name in self._published:
                    continue
                with contextlib.suppress(OSError):
                    if entry.is_file() and entry.stat().st_mtime <= cutoff:
                        found.setdefault(match["job"], []).append((int(match["attempt"]), Path(entry.path)))
        self._published &= names  # forget files that are gone (expired): the set stays the size of the dir
        if time.monotonic() - self._published_at > 3600:  # hourly, read every row again: a job deleted by a
            self._published, self._published_at = set(), time.monotonic()  # replica that missed its files
        removed = 0
        for job_id, files in found.items():
            job = self.store.get(job_id)  # read after the listing: a file listed is at most as new as this row
            published = set()
            if job is not None and job.status == "completed":
                published = {Path(p).name for p in (job.output_path, job.thumbnail_path) if p}
                published |= {name + ".json" for name in published}
            for attempt, path in files:
                if path.name in published:
                    self._published.add(path.name)  # completed rows do not change: never look at it again
                elif job is not None and job.status == "in_progress" and job.attempts == attempt:
                    continue  # the attempt that runs now
                else:
                    with contextlib.suppress(OSError):
                        path.unlink(missing_ok=True)
                        removed += 1
        if removed:
            log.info("housekeeping: deleted %d output file(s) of attempts that did not publish", removed)
        return removed


def run_worker_process(
    config: ServiceConfig,
    threads: int = 1,
    *,
    senders: bool = True,
    kinds: Mapping[str, JobRunner] | None = None,
    pool: WorkerPool | None = None,
    on_start: Callable[[WorkerPool], None] | None = None,
) -> int:
    """``kinema worker``: run a pool until SIGTERM/SIGINT (first: finish running jobs; second: abort and re-queue
    them). Exit code 0 after a graceful stop, 1 after an abort.

    ``kinds``: the job kinds to run (default: :func:`~kinema.service.job_kinds.default_job_kinds`, video and
    storyboard). ``pool``: a pool built by the caller (the Ray pool) instead of a plain one; ``on_start(pool)`` is
    called once it runs."""
    from .safefetch import SafeFetcher
    from .webhooks import WebhookSender

    if pool is None:
        pool = WorkerPool(open_store(config.store_location), config, threads=threads, kinds=kinds)
    running = pool
    sender = WebhookSender(pool.store, config, SafeFetcher(config.allow_hosts, timeout=config.webhook_timeout))
    signals = {"count": 0}
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            log.warning("stopping: finishing running jobs (signal again to abort and re-queue them)")
            done.set()
        else:
            running.abort_all()

    pool.start()
    # after start: ray.init (the Ray pool's start) installs its own SIGTERM handler, which would kill the process
    # with its jobs running
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if on_start is not None:
        on_start(pool)
    if senders:
        sender.start()
    while not done.wait(0.5):
        pass
    pool.stop(graceful=True)
    sender.stop()
    return 1 if pool.aborted else 0
