"""Scale-out: submits/s and completed jobs/s of built-in jobs with 1 and 2 ``kinema worker`` processes, on
PostgreSQL and (for reference) SQLite, side by side in one run; reported as ratios (2 workers / 1 worker).

Per store: one API process (``kinema.service.app`` on uvicorn, no auth, no rate limits, 0 in-process workers) and a
fresh store; per round, N worker processes (``kinema worker --workers 1``) are started and warmed up (each runs a job,
so the model is loaded), then J jobs are submitted by 8 concurrent clients while the workers drain them: completed
jobs/s = J / time from the first submit to the last completion. Then a burst of S submits (deleted afterwards, not
run) while the workers claim: submits/s = S / time to submit them. PostgreSQL is a
throwaway server (tests/service/pg.py) unless ``--database-url`` names a database to use (an empty one: its jobs
would be counted too).

Three more figures, each PostgreSQL against SQLite (or 2 against 1) side by side in the same run:

* claims/s (``--claims N``): N jobs pre-submitted to a fresh store through the Store API, then claimed and completed
  (a no-op completion: no generation) as fast as K threads of one process can, K = 1 and 4 (as ``kinema worker
  --workers K`` shares one store between its claim loops);
* API timings: per store, with no worker running, S submits by 8 concurrent clients through the API process, each
  timed (p50, p99), then GET /v1/videos/{id} polls of those jobs by 8 clients for a fixed time (polls/s);
* built-in jobs per minute on a local Ray (``--ray``, off with ``--quick``): :class:`RayWorkerPool` with 1 then 2
  CPU actors, ``ray.init(num_cpus=2, num_gpus=2)`` (logical GPUs, as tests/cluster/conftest.py starts it).

    ./run python bench/cluster.py [--jobs 24] [--submits 300] [--claims 2000] [--ray-jobs 60] [--no-ray] [--quick]
                                  [--json] [--no-write] [--database-url URL] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from _report import machine, write_section  # noqa: E402

SERVER = """
import sys, uvicorn
from kinema.service.app import create_app
from kinema.service.config import ServiceConfig
cfg = ServiceConfig(data_dir=sys.argv[1], database_url=sys.argv[3] or None, auth=False, workers=0,
                    submit_rate=(0, 0), read_rate=(0, 0), max_queued=10**9, max_active_per_key=10**9)
uvicorn.run(create_app(cfg), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""
BODY: dict[str, Any] = {"prompt": "a red ball bouncing on green grass", "model": "builtin", "steps": 2}
CLIENTS = 8
#: claim threads per round of the claims phase
CLAIMERS = (1, 4)
#: seconds of GET /v1/videos/{id} polling per store
POLL_SECONDS = 5.0
#: PyTorch threads per worker process
THREADS = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


class Deployment:
    """One API process on a fresh store; worker processes come and go per round."""

    def __init__(self, data_dir: str, database_url: str) -> None:
        self.data_dir, self.database_url = data_dir, database_url
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = subprocess.Popen([sys.executable, "-c", SERVER, data_dir, str(self.port), database_url])
        self.client = httpx.Client(base_url=self.url, timeout=60, limits=httpx.Limits(max_connections=CLIENTS))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                if self.api.poll() is not None:
                    raise RuntimeError("the API process exited") from None
            time.sleep(0.1)
        from kinema.service.stores import open_store

        self.store = open_store(database_url or str(Path(data_dir) / "kinema.sqlite3"))

    def close(self) -> None:
        self.client.close()
        self.store.close()
        _stop([self.api])
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def workers(self, n: int) -> list[subprocess.Popen[bytes]]:
        cmd = [sys.executable, "-m", "kinema.cli", "worker", "--data-dir", self.data_dir, "--workers", "1", "--json"]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        # one PyTorch thread per worker in every round, so the rounds differ only in the number of processes (with
        # its default, a thread per core, jobs ran ~10x slower here on the shared CPUs: that would swamp the ratio)
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env) for _ in range(n)]
        for p in procs:  # each prints one JSON line once it has parsed its options, before it opens the store
            assert p.stdout is not None and p.stdout.readline(), "a worker exited at start"
        return procs

    def submit(self, n: int, seed: int) -> tuple[list[str], float]:
        def one(i: int) -> str:
            r = self.client.post("/v1/videos", json={**BODY, "seed": seed + i})
            r.raise_for_status()
            return str(r.json()["id"])

        began = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            ids = list(pool.map(one, range(n)))
        return ids, time.perf_counter() - began

    def api_timings(self, submits: int, poll_s: float) -> dict[str, float]:
        """With no worker running: ``submits`` submits by CLIENTS clients, each timed, then GET polls of those jobs
        by CLIENTS clients for ``poll_s`` seconds; the jobs are deleted afterwards."""

        def one(i: int) -> tuple[str, float]:
            began = time.perf_counter()
            r = self.client.post("/v1/videos", json={**BODY, "seed": 30_000 + i})
            took = time.perf_counter() - began
            r.raise_for_status()
            return str(r.json()["id"]), took

        with ThreadPoolExecutor(CLIENTS) as pool:
            done = list(pool.map(one, range(submits)))
        ids, times = [i for i, _ in done], sorted(t for _, t in done)
        stop_at = time.monotonic() + poll_s

        def poll(k: int) -> int:
            n = 0
            while time.monotonic() < stop_at:
                self.client.get(f"/v1/videos/{ids[(k + n * CLIENTS) % len(ids)]}").raise_for_status()
                n += 1
            return n

        began = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            polls = sum(pool.map(poll, range(CLIENTS)))
        poll_elapsed = time.perf_counter() - began
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda i: self.client.delete(f"/v1/videos/{i}"), ids))
        return {
            "submits": submits,
            "submit_p50_ms": 1000 * _quantile(times, 0.50),
            "submit_p99_ms": 1000 * _quantile(times, 0.99),
            "polls_per_s": polls / poll_elapsed,
        }

    def wait_done(self, ids: list[str], timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        pending = list(ids)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} jobs still not done after {timeout}s")
            pending = [i for i in pending if not ((job := self.store.get(i)) and job.terminal)]
            if pending:
                time.sleep(0.05)
        failed = [i for i in ids if (job := self.store.get(i)) and job.status != "completed"]
        if failed:
            raise RuntimeError(f"jobs did not complete: {failed[:3]}")


def _quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank quantile ``q`` of ascending values: the ceil(q * n)-th."""
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def round_(dep: Deployment, workers: int, jobs: int, submits: int, seed: int) -> dict[str, float]:
    procs = dep.workers(workers)
    try:
        warm, _ = dep.submit(2 * workers, seed=10_000 + seed)  # loads the model in (most likely) every worker
        dep.wait_done(warm)
        began = time.perf_counter()
        ids, _ = dep.submit(jobs, seed=seed)
        dep.wait_done(ids)
        total_s = time.perf_counter() - began
        # submits/s on its own, with the workers claiming as they go: a burst too short to time would be noise;
        # those jobs are then deleted (a running one is stopped), not run
        burst, submit_s = dep.submit(submits, seed=20_000 + seed)
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda i: dep.client.delete(f"/v1/videos/{i}"), burst))
    finally:
        _stop(procs)
    return {
        "workers": workers,
        "jobs": jobs,
        "submits": submits,
        "submits_per_s": submits / submit_s,
        "completed_per_s": jobs / total_s,
    }


def run(
    stores: dict[str, str | None], jobs: int, submits: int, worker_counts: tuple[int, ...], poll_s: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per store: the API timings (no worker running), then a scale-out round per worker count; returns
    (scale-out rows, API rows)."""
    rows, api = [], []
    for name, url in stores.items():
        dep = Deployment(tempfile.mkdtemp(prefix=f"kinema-bench-{name}-"), url or "")
        try:
            api.append({"store": name, **dep.api_timings(submits, poll_s)})
            for k, n in enumerate(worker_counts):
                rows.append({"store": name, **round_(dep, n, jobs, submits, seed=1000 * k)})
        finally:
            dep.close()
    return rows, api


def claims(location: str, jobs: int, threads: int) -> dict[str, float]:
    """Pre-submit ``jobs`` jobs to the store at ``location`` (it should hold no queued job), then claim and complete
    them (no generation) from ``threads`` threads sharing one store object; claims/s = jobs / time to drain."""
    from kinema.service.stores import open_store

    store = open_store(location)
    try:
        for i in range(jobs):
            store.submit_job(owner="bench", request={**BODY, "seed": i}, summary={"backend": "builtin"})
        counts = [0] * threads
        start = threading.Barrier(threads + 1)

        def drain(k: int) -> None:
            start.wait()
            while (job := store.claim(f"bench-{k}", lease_seconds=60)) is not None:
                ok = store.complete(
                    job.id,
                    f"bench-{k}",
                    job.attempts,
                    result={},
                    output_path="noop.mp4",
                    thumbnail_path=None,
                    expires_at=time.time() + 3600,
                )
                counts[k] += ok

        pool = [threading.Thread(target=drain, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        start.wait()
        began = time.perf_counter()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - began
    finally:
        store.close()
    if sum(counts) != jobs:
        raise RuntimeError(f"{sum(counts)} of {jobs} jobs claimed and completed")
    return {"threads": threads, "jobs": jobs, "claims_per_s": jobs / elapsed}


def claims_phase(new_location: dict[str, Callable[[], str]], jobs: int) -> list[dict[str, Any]]:
    """claims/s per store and claimer count, each round on a fresh store from ``new_location[store]()``."""
    return [{"store": name, **claims(make(), jobs, k)} for name, make in new_location.items() for k in CLAIMERS]


def ray_phase(jobs: int, actor_counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """Built-in jobs per minute through a :class:`RayWorkerPool` on a local Ray (2 CPUs, 2 logical GPUs), on a
    fresh SQLite store per round. Built-in jobs are placed on CPU actors (``placement_of``): one CPU each, so each
    actor's PyTorch runs on 1 thread, as a benchmarked ``kinema worker`` process does."""
    import ray

    from kinema.service.config import ServiceConfig
    from kinema.service.ray_workers import RayOptions, RayWorkerPool
    from kinema.service.stores import open_store

    env = {k: v for k, v in os.environ.items() if k.startswith(("KINEMA_", "HF_"))}
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    rows = []
    try:
        for n in actor_counts:
            data = Path(tempfile.mkdtemp(prefix="kinema-bench-ray-"))
            config = ServiceConfig(data_dir=data, workers=1)
            config.ensure_dirs()
            store = open_store(config.store_location)
            options = RayOptions(gpu_actors=0, cpu_actors=n, cpus_per_cpu_actor=1.0, start_timeout=300)
            pool = RayWorkerPool(store, config, options)
            try:
                pool.start()
                _ray_drain(store, 2 * n, seed=10_000)  # warm-up: loads the model in (most likely) every actor
                load0 = os.getloadavg()[0]
                began = time.perf_counter()
                _ray_drain(store, jobs, seed=0)
                elapsed = time.perf_counter() - began
                rows.append(
                    {
                        "actors": n,
                        "jobs": jobs,
                        "jobs_per_min": 60 * jobs / elapsed,
                        "load_start": load0,
                        "load_end": os.getloadavg()[0],
                    }
                )
            finally:
                pool.stop(graceful=False, timeout=30)
                store.close()
                shutil.rmtree(data, ignore_errors=True)
    finally:
        ray.shutdown()
    return rows


def _ray_drain(store: Any, jobs: int, seed: int, timeout: float = 600) -> None:
    """Queue ``jobs`` built-in jobs as the API would (the same request as BODY) and wait until all completed."""
    request = {
        "prompt": BODY["prompt"],
        "backend": "builtin",
        "num_inference_steps": BODY["steps"],
        "format": "mp4",
        "num_frames": 16,
    }
    summary = {"prompt": BODY["prompt"], "backend": "builtin", "model": "builtin"}
    ids = [
        store.submit_job(owner="bench", request={**request, "seed": seed + i}, summary=summary).id for i in range(jobs)
    ]
    deadline = time.monotonic() + timeout
    while not all((job := store.get(i)) is not None and job.terminal for i in ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Ray jobs not done after {timeout}s")
        time.sleep(0.05)
    failed = [(i, job.error) for i in ids if (job := store.get(i)) is not None and job.status != "completed"]
    if failed:
        raise RuntimeError(f"Ray jobs did not complete: {failed[:3]}")


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| store | worker processes | submits/s | completed jobs/s | submits vs 1 | completed vs 1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b["store"] == r["store"] and b["workers"] == 1)
        lines.append(
            f"| {r['store']} | {r['workers']} | {r['submits_per_s']:.1f} | {r['completed_per_s']:.2f} | "
            f"{r['submits_per_s'] / base['submits_per_s']:.2f}x | "
            f"{r['completed_per_s'] / base['completed_per_s']:.2f}x |"
        )
    return "\n".join(lines)


def ratio_rows(rows: list[dict[str, Any]], key: str, label: str) -> list[str]:
    """Markdown rows of ``key`` per store, with PostgreSQL's figure against SQLite's (when both ran)."""
    pg, lite = ({r["store"]: r for r in rows}.get(name) for name in ("PostgreSQL", "SQLite"))
    vs = f"{pg[key] / lite[key]:.2f}x" if pg and lite else "n/a"
    cells = " | ".join(f"{r[key]:.1f}" if r else "n/a" for r in (pg, lite))
    return [f"| {label} | {cells} | {vs} |"]


def claims_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| claims/s (claim + no-op complete) | PostgreSQL | SQLite | PostgreSQL vs SQLite |", "|---|---|---|---|"]
    for k in sorted({r["threads"] for r in rows}):
        lines += ratio_rows([r for r in rows if r["threads"] == k], "claims_per_s", f"{k} thread{'s' * (k > 1)}")
    return "\n".join(lines)


def api_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| one API process, no worker | PostgreSQL | SQLite | PostgreSQL vs SQLite |", "|---|---|---|---|"]
    lines += ratio_rows(rows, "submit_p50_ms", "submit p50 (ms)")
    lines += ratio_rows(rows, "submit_p99_ms", "submit p99 (ms)")
    lines += ratio_rows(rows, "polls_per_s", "GET /v1/videos/{id} polls/s")
    return "\n".join(lines)


def ray_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| Ray CPU actors | built-in jobs/min | vs 1 actor | load average (start, end) |", "|---|---|---|---|"]
    base = next((r for r in rows if r["actors"] == 1), None)
    for r in rows:
        vs = f"{r['jobs_per_min'] / base['jobs_per_min']:.2f}x" if base else "n/a"
        lines.append(
            f"| {r['actors']} | {r['jobs_per_min']:.1f} | {vs} | {r['load_start']:.1f}, {r['load_end']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=24, help="jobs per round (after the warm-up)")
    ap.add_argument("--submits", type=int, default=300, help="jobs per round's submit burst (deleted, not run)")
    ap.add_argument("--claims", type=int, default=2000, help="jobs pre-submitted per round of the claims phase")
    ap.add_argument("--ray-jobs", type=int, default=60, help="jobs per round of the Ray phase (after the warm-up)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray phase (--quick skips it too)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 3 jobs, 20 submits, 20 claims per round, 1 s of polls, no Ray; no report",
    )
    ap.add_argument("--database-url", default=None, help="a PostgreSQL server to use (default: a throwaway one)")
    ap.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    jobs, submits, n_claims, poll_s = (
        (3, 20, 20, 1.0) if args.quick else (args.jobs, args.submits, args.claims, POLL_SECONDS)
    )
    server = None
    stores: dict[str, str | None] = {}
    # a fresh store per claims round: a database on the throwaway server; on a given one, its only database
    new_location: dict[str, Callable[[], str]] = {}
    if not args.sqlite_only:
        if args.database_url:
            url = args.database_url
            stores["PostgreSQL"] = url
            new_location["PostgreSQL"] = lambda: url
        else:
            sys.path.insert(0, str(ROOT / "tests" / "service"))
            import pg

            reason = pg.why_not()
            if reason:
                sys.exit(f"bench/cluster.py: no PostgreSQL ({reason}); pass --database-url or --sqlite-only")
            server = pg.start_server()
            stores["PostgreSQL"] = server.new_database("bench")
            new_location["PostgreSQL"] = lambda: server.new_database("claims")
    stores["SQLite"] = None
    scratch = Path(tempfile.mkdtemp(prefix="kinema-bench-claims-"))
    new_location["SQLite"] = lambda: str(Path(tempfile.mkdtemp(dir=scratch)) / "kinema.sqlite3")
    load0 = os.getloadavg()[0]
    try:
        claim_rows = claims_phase(new_location, n_claims)
        rows, api = run(stores, jobs, submits, (1, 2), poll_s)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    ray_rows = [] if args.quick or args.no_ray else ray_phase(args.ray_jobs, (1, 2))
    load1 = os.getloadavg()[0]
    if args.json:
        figures = {"scale_out": rows, "claims": claim_rows, "api": api, "ray": ray_rows, "load": [load0, load1]}
        sys.stdout.write(json.dumps(figures) + "\n")
    else:
        print(
            "\n\n".join(
                t
                for t in (
                    table(rows),
                    claims_table(claim_rows),
                    api_table(api),
                    ray_table(ray_rows) if ray_rows else "",
                )
                if t
            )
        )
    if args.quick or args.no_write:
        return
    write_section(
        "cluster",
        f"""
## Scale-out: 1 vs 2 workers, PostgreSQL vs SQLite (`bench/cluster.py`)

Built-in jobs (64x64, 16 frames, 2 steps) submitted by {CLIENTS} concurrent clients to one API process while
`kinema worker` processes (one job at a time each) drain them, a fresh store per store type. Per round, after a
warm-up: completed jobs/s = {jobs} jobs from the first submit to the last completion; submits/s = a burst of {submits}
submits while the workers claim (then deleted, not run). Each worker process runs PyTorch on
{THREADS} thread (`OMP_NUM_THREADS`). Read the ratios, not the absolute numbers: this machine's CPUs are
shared with other work (load average {load0:.1f} at the start, {load1:.1f} at the end, on {os.cpu_count()} cores), and
a built-in job is CPU-bound (PyTorch and the MP4 encode), so on one host a second worker process gains only the
CPU that is free; a ratio under 1 means there was none, and the second process's own cost showed. The design's gain
is on separate hosts or GPUs, where claims never overlap and each worker holds one job at a time.

{table(rows)}

**Claims/s, PostgreSQL against SQLite.** {n_claims} jobs submitted through the Store API to a fresh store (a new
database; a new SQLite file), then claimed and completed with a no-op completion (no generation, no file) as fast as
K threads sharing one store object can (as a `kinema worker --workers K` process shares its store): claims/s =
{n_claims} / time to drain. Same machine, same jobs, one run; PostgreSQL here is a local throwaway server on a Unix
socket, without fsync (as the tests run it), so its figure is an upper bound for a networked, durable one.

{claims_table(claim_rows)}

**One API process, PostgreSQL against SQLite.** Per store, before the rounds above and with no worker running:
{submits} submits by {CLIENTS} concurrent clients, each timed from request to response (p50, p99 by nearest rank),
then `GET /v1/videos/{{id}}` of those jobs by {CLIENTS} clients for {poll_s:.0f} s (polls/s); the jobs are then
deleted.

{api_table(api)}
{ray_section(ray_rows)}
Machine: {machine()}.
""",
    )


def ray_section(rows: list[dict[str, Any]]) -> str:
    """The Ray part of the report (empty when the phase did not run)."""
    if not rows:
        return ""
    return f"""
**Built-in jobs per minute, 1 against 2 Ray actors.** `RayWorkerPool` (the driver of `kinema worker --ray`) on a
local Ray started with `num_cpus=2, num_gpus=2` (logical GPUs, as tests/cluster/conftest.py starts it), a fresh
SQLite store per round; after a warm-up of 2 jobs per actor, {rows[0]["jobs"]} built-in jobs (the same request as
above) queued at once, jobs/min = {rows[0]["jobs"]} / time until the last completed. CPU actors, one CPU each: the pool
places built-in jobs on its CPU actors (GPU actors are for local-model backends such as `diffusers`; a logical GPU
would not run them faster), and a whole CPU per actor gives each actor's PyTorch one thread, as each benchmarked
`kinema worker` process has. Two actors can reach 2x only with two idle cores: the driver (claims, store writes, a
0.2 s poll of each running actor) and Ray's own processes share the same 2 cores, and the load average below (1
minute, at the start and end of each timed round) shows what else was running.

{ray_table(rows)}
"""


if __name__ == "__main__":
    main()
