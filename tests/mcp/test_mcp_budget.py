"""The MCP server's submits meet the same budget check as the HTTP API's (kinema.service.budgets): a paid backend
is refused once the owner ``local`` has spent its budget; free backends, and an owner without a budget, never are."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kinema.errors import InvalidRequest
from kinema.mcp.jobs import OWNER, Jobs

#: what a paid job's summary names (luma is a remote, paid backend; nothing is submitted to it here)
PAID = {"prompt": "p", "backend": "luma"}
FREE = {"prompt": "p", "backend": "builtin"}


def _spend(jobs: Jobs, usd: float) -> None:
    """A finished paid job of the MCP owner that cost ``usd``."""
    store = jobs.store
    job = store.submit_job(owner=OWNER, request={"prompt": "p"}, summary=PAID)
    claimed = store.claim("w", 30)
    assert claimed is not None and claimed.id == job.id
    assert store.complete(
        job.id,
        "w",
        claimed.attempts,
        result={"cost": {"usd": usd}},
        output_path="x.mp4",
        thumbnail_path=None,
        expires_at=time.time() + 60,
    )


def _give_local_a_budget(jobs: Jobs, usd: float) -> None:
    from kinema.service.store import Store

    store = jobs.store
    assert isinstance(store, Store)
    key_id, _ = store.create_key("mcp", budget=(usd, "USD"))
    store.connection().execute("UPDATE api_keys SET id=? WHERE id=?", (OWNER, key_id))


def test_a_spent_budget_refuses_paid_mcp_jobs_naming_the_backend(tmp_path: Path) -> None:
    jobs = Jobs.open(tmp_path, workers=0)
    try:
        _spend(jobs, 2.0)
        job, _ = jobs.submit(kind="video", request={"prompt": "p"}, summary=PAID, key="a", digest="a")
        assert job.status == "queued", "no budget: never refused"
        _give_local_a_budget(jobs, 1.0)
        time.sleep(2.1)  # the budget is cached per process for 2 s
        with pytest.raises(InvalidRequest) as refused:
            jobs.submit(kind="video", request={"prompt": "p"}, summary=PAID, key="b", digest="b")
        assert refused.value.field == "backend" and "budget exhausted" in refused.value.message
        assert "2.00 USD of its 1.00 USD budget" in refused.value.message
        # the refused call's key was released: the same call may be made again, e.g. once the budget is raised
        free, replayed = jobs.submit(kind="video", request={"prompt": "p"}, summary=FREE, key="b", digest="b")
        assert free.status == "queued" and not replayed, "free backends still run"
        enhance, _ = jobs.submit(kind="enhance", request={}, summary=PAID, key="c", digest="c")
        assert enhance.status == "queued", "post-processing a paid video runs no paid backend"
    finally:
        jobs.close()
