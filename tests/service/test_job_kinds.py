"""Job kinds are given to the workers explicitly (nothing registers itself on import), and a pool claims only the
kinds it was given."""

from __future__ import annotations

from pathlib import Path

from conftest import make_config, wait_for

from kinema.errors import GenerationFailed
from kinema.service.job_kinds import default_job_kinds
from kinema.service.store import Store
from kinema.service.worker import AttemptContext, WorkerPool


def test_kinemas_own_kinds_are_the_default_of_a_pool_and_of_kinema_worker(tmp_path: Path) -> None:
    import inspect

    from kinema.service.worker import run_worker_process

    kinds = default_job_kinds()
    assert sorted(kinds) == ["storyboard", "video"]
    cfg = make_config(tmp_path, workers=0)
    assert WorkerPool(Store(cfg.db_path), cfg, threads=0).kinds == kinds
    # `kinema worker` calls run_worker_process without kinds: it runs Kinema's own
    assert inspect.signature(run_worker_process).parameters["kinds"].default is None


def test_a_pool_claims_only_the_kinds_it_is_given(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, workers=0)
    store = Store(cfg.db_path)
    board = store.submit_job(owner="o", request={}, summary={}, kind="storyboard", max_attempts=1)
    video = store.submit_job(owner="o", request={}, summary={}, kind="video", max_attempts=1)
    ran: list[str] = []

    def runner(ctx: AttemptContext) -> None:
        ran.append(ctx.job.id)
        raise GenerationFailed("the test's runner only records the job")

    pool = WorkerPool(store, cfg, threads=1, kinds={"video": runner})
    pool.start(housekeeping=False)
    try:
        wait_for(lambda: store.get(video.id).status == "failed", timeout=30)
    finally:
        pool.stop(graceful=True, timeout=5)
    assert ran == [video.id]
    assert store.get(board.id).status == "queued"
    assert store.get(video.id).error["code"] == "generation_failed"
