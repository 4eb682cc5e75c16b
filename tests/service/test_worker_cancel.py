"""Which stops cancel the provider's task: a user's cancel stops the bill; a worker shutting down or losing its
lease stops only its own wait, so the paid task lives on to be resumed by its id."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import make_config, wait_for

from kinema.backends.base import CancelToken
from kinema.service.store import Store
from kinema.service.worker import AttemptContext, WorkerPool


def test_a_users_cancel_wins_over_a_shutdown() -> None:
    token = CancelToken()
    token.cancel(keep_provider_task=True)
    assert token.cancelled and token.keep_provider_task
    token.cancel()  # the user cancels too: the provider's task must stop
    assert not token.keep_provider_task
    plain = CancelToken()
    plain.cancel()
    plain.cancel(keep_provider_task=True)  # a later shutdown does not undo a user's cancel
    assert not plain.keep_provider_task


def _pool_with_a_blocking_job(tmp_path: Path) -> tuple[WorkerPool, Store, list[CancelToken], threading.Event]:
    cfg = make_config(tmp_path, workers=0)
    store = Store(cfg.db_path)
    store.submit_job(owner="o", request={}, summary={}, kind="video", max_attempts=3)
    seen: list[CancelToken] = []
    started = threading.Event()

    def runner(ctx: AttemptContext) -> None:
        seen.append(ctx.token)
        started.set()
        wait_for(lambda: ctx.token.cancelled, timeout=30)

    pool = WorkerPool(store, cfg, threads=1, kinds={"video": runner})
    pool.start(housekeeping=False)
    return pool, store, seen, started


def test_shutting_down_keeps_the_provider_task(tmp_path: Path) -> None:
    pool, _, seen, started = _pool_with_a_blocking_job(tmp_path)
    assert started.wait(30)
    pool.abort_all()
    pool.stop(graceful=False, timeout=5)
    assert seen[0].cancelled and seen[0].keep_provider_task


def test_the_cancel_endpoints_path_stops_the_provider_task(tmp_path: Path) -> None:
    pool, store, seen, started = _pool_with_a_blocking_job(tmp_path)
    assert started.wait(30)
    job_id = next(iter(pool.running))
    pool.cancel_local(job_id)
    pool.stop(graceful=True, timeout=5)
    assert seen[0].cancelled and not seen[0].keep_provider_task
