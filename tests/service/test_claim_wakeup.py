"""An idle worker pool waits on the store's wake-up (``Store.wait_for_work``: PostgreSQL's LISTEN/NOTIFY, SQLite's
in-process event plus a cheap read) instead of claiming on a fixed poll: it claims a job submitted elsewhere soon
after its commit, does not hammer the store with claims meanwhile, and stops at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

from kinema.service.stores import Store, open_store
from kinema.service.worker import AttemptContext, WorkerPool


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db.sqlite3"
        return
    server = request.getfixturevalue("pg_server")
    schema = server.new_schema()
    yield schema
    server.drop_schema(schema)


class Counting:
    """A store that counts the claims made through it (everything else goes to the real store)."""

    def __init__(self, store: Store) -> None:
        self.store, self.claims = store, 0

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return self.store.claim(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_an_idle_pool_waits_on_the_store_and_claims_a_new_job_soon(url: str, tmp_path: Path) -> None:
    store, submitter = open_store(url), open_store(url)  # the submitter: like another process
    counting = Counting(store)
    started: dict[str, float] = {}
    ran = threading.Event()

    def runner(ctx: AttemptContext) -> None:
        started[ctx.job.id] = time.monotonic()
        ctx.pool.store.complete(
            ctx.job.id,
            ctx.pool.name,
            ctx.attempt,
            result={},
            output_path="x",
            thumbnail_path=None,
            expires_at=time.time() + 60,
        )
        ran.set()

    pool = WorkerPool(counting, make_config(tmp_path), threads=1, kinds={"quick": runner})
    pool.start(housekeeping=False)
    try:
        time.sleep(1.6)
        # a fixed 0.25 s poll claims 6 or 7 times here; waiting on the store, once a second at most (the bound)
        assert counting.claims <= 3, counting.claims
        job = submitter.submit_job(owner="o", request={}, summary={}, kind="quick")
        submitted = time.monotonic()
        assert ran.wait(5)
        # PostgreSQL: NOTIFY, a few ms; SQLite: the next 0.1 s read. Generous for a loaded machine.
        assert started[job.id] - submitted < 0.5
    finally:
        began = time.monotonic()
        pool.stop(timeout=5)
        stopped = time.monotonic() - began
        store.close()
        submitter.close()
    assert stopped < 0.5, "stop() wakes the idle claim loop rather than waiting out its wait"
