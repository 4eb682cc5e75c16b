"""Two store-bound latencies of the job service, on SQLite and PostgreSQL (docs/cluster.md, "Scale-out"):

* **metrics scrape**: collecting ``GET /metrics``'s store numbers with N jobs in the store (mixed statuses, spread
  over 10 API keys), by the store's ``job_stats()`` (when it has one) and by the older scan of every owner's jobs;
* **submit -> claim**: how long a job submitted by another store connection (as another process would) waits before
  an idle worker pool's claim loop starts it (the median and the worst of ``--samples``).

PostgreSQL is a throwaway server (tests/service/pg.py). Nothing is written to BENCHMARKS.md: the figures go to
docs/cluster.md by hand.

    .venv/bin/python bench/store_latency.py [--jobs 10000] [--samples 20] [--only metrics|claim]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "service"))

from kinema.service import metrics  # noqa: E402
from kinema.service.config import ServiceConfig  # noqa: E402
from kinema.service.stores import Store, open_store  # noqa: E402
from kinema.service.worker import WorkerPool  # noqa: E402


@contextmanager
def stores(kinds: list[str]) -> Iterator[Callable[[str], str]]:
    """Yields ``location(kind)``: a fresh SQLite path or PostgreSQL database URL per call."""
    server = None
    if "postgres" in kinds:
        import pg

        server = pg.start_server()
    tmp = Path(tempfile.mkdtemp(prefix="kinema-bench-"))
    n = iter(range(1000))

    def location(kind: str) -> str:
        if kind == "sqlite":
            return str(tmp / f"s{next(n)}" / "kinema.sqlite3")
        assert server is not None
        return server.new_database("bench")

    try:
        yield location
    finally:
        if server is not None:
            server.stop()


def fill(store: Store, jobs: int) -> None:
    """``jobs`` jobs over 10 keys: 70% completed, 20% queued, the rest running (two workers) or failed."""
    owners = [store.create_key(f"k{i}")[0] for i in range(10)]
    futures = [
        store.submit_job_future(
            owner=owners[i % 10], request={"prompt": f"job {i}"}, summary={}, kind="video" if i % 4 else "storyboard"
        )
        for i in range(jobs)
    ]
    for f in futures:
        f.result()
    rng = random.Random(1)
    for i in range(int(jobs * 0.8)):
        job = store.claim(f"w{i % 2}", 3600, ("video", "storyboard"))  # no lease expires while it runs
        assert job is not None
        roll = rng.random()
        if roll < 0.875:
            store.complete(
                job.id,
                job.worker or "",
                job.attempts,
                result={},
                output_path="x",
                thumbnail_path=None,
                expires_at=time.time() + 3600,
            )
        elif roll < 0.95:
            store.fail(job.id, job.worker or "", job.attempts, {"code": "x", "message": "x"})
        # else: left running


def best_of(fn: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def bench_metrics(location: Callable[[str], str], kinds: list[str], jobs: int) -> None:
    for kind in kinds:
        store = open_store(location(kind))
        began = time.perf_counter()
        fill(store, jobs)
        print(f"[metrics] {kind}: {jobs} jobs stored in {time.perf_counter() - began:.1f} s", flush=True)
        scan = getattr(metrics, "scan_job_stats", None)
        if scan is None:  # before job_stats(): collect_job_stats scans
            scan = metrics.collect_job_stats
        t_scan = best_of(lambda: scan(store), runs=3)  # noqa: B023
        line = f"[metrics] {kind}: {jobs} jobs: scan {t_scan * 1000:.0f} ms"
        if hasattr(store, "job_stats"):
            assert store.job_stats() == scan(store), "job_stats() and the scan disagree"  # noqa: B023
            t_stats = best_of(store.job_stats)
            line += f", job_stats() {t_stats * 1000:.1f} ms"
        print(line, flush=True)
        store.close()


def bench_claim(location: Callable[[str], str], kinds: list[str], samples: int) -> None:
    for kind in kinds:
        url = location(kind)
        store, submitter = open_store(url), open_store(url)
        started: dict[str, float] = {}
        done = threading.Event()

        def runner(ctx: Any) -> None:
            started[ctx.job.id] = time.perf_counter()  # noqa: B023
            ctx.pool.store.complete(
                ctx.job.id,
                ctx.pool.name,
                ctx.attempt,
                result={},
                output_path="x",
                thumbnail_path=None,
                expires_at=time.time() + 60,
            )
            done.set()  # noqa: B023

        config = ServiceConfig(data_dir=Path(tempfile.mkdtemp(prefix="kinema-bench-")), warm_up=False)
        pool = WorkerPool(store, config, threads=1, kinds={"bench": runner})
        pool.start(housekeeping=False)
        waits = []
        try:
            time.sleep(0.5)
            for _ in range(samples):
                time.sleep(random.uniform(0.05, 0.3))  # the pool is idle, somewhere in its wait
                done.clear()
                job = submitter.submit_job(owner="local", request={}, summary={}, kind="bench")
                submitted = time.perf_counter()
                assert done.wait(10), "the job was not claimed"
                waits.append(started[job.id] - submitted)
        finally:
            pool.stop()
        waits.sort()
        print(
            f"[claim] {kind}: submit -> claim median {statistics.median(waits) * 1000:.1f} ms, "
            f"max {waits[-1] * 1000:.1f} ms ({samples} jobs)",
            flush=True,
        )
        store.close()
        submitter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--only", choices=["metrics", "claim"])
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    kinds = args.stores.split(",")
    with stores(kinds) as location:
        if args.only in (None, "claim"):
            bench_claim(location, kinds, args.samples)
        if args.only in (None, "metrics"):
            bench_metrics(location, kinds, args.jobs)


if __name__ == "__main__":
    main()
