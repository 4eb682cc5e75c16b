"""Scale-out: submits/s and completed jobs/s of built-in jobs with 1 and 2 ``kinema worker`` processes, on
PostgreSQL and (for reference) SQLite, side by side in one run; reported as ratios (2 workers / 1 worker).

Per store: one API process (``kinema.service.app`` on uvicorn, no auth, no rate limits, 0 in-process workers) and a
fresh store; per round, N worker processes (``kinema worker --workers 1``) are started and warmed up (each runs a job,
so the model is loaded), then J jobs are submitted by 8 concurrent clients while the workers drain them: completed
jobs/s = J / time from the first submit to the last completion. Then a burst of S submits (deleted afterwards, not
run) while the workers claim: submits/s = S / time to submit them. PostgreSQL is a
throwaway server (tests/service/pg.py) unless ``--database-url`` names a database to use (an empty one: its jobs
would be counted too).

    ./run python bench/cluster.py [--jobs 24] [--submits 300] [--quick] [--json] [--no-write] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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
    return {"workers": workers, "jobs": jobs, "submits": submits, "submits_per_s": submits / submit_s,
            "completed_per_s": jobs / total_s}  # fmt: skip


def run(
    stores: dict[str, str | None], jobs: int, submits: int, worker_counts: tuple[int, ...]
) -> list[dict[str, Any]]:
    rows = []
    for name, url in stores.items():
        dep = Deployment(tempfile.mkdtemp(prefix=f"kinema-bench-{name}-"), url or "")
        try:
            for k, n in enumerate(worker_counts):
                rows.append({"store": name, **round_(dep, n, jobs, submits, seed=1000 * k)})
        finally:
            dep.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| store | worker processes | submits/s | completed jobs/s | submits vs 1 | completed vs 1 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        base = next(b for b in rows if b["store"] == r["store"] and b["workers"] == 1)
        lines.append(f"| {r['store']} | {r['workers']} | {r['submits_per_s']:.1f} | {r['completed_per_s']:.2f} | "
                     f"{r['submits_per_s'] / base['submits_per_s']:.2f}x | "
                     f"{r['completed_per_s'] / base['completed_per_s']:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=24, help="jobs per round (after the warm-up)")
    ap.add_argument("--submits", type=int, default=300, help="jobs per round's submit burst (deleted, not run)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 jobs, 20 submits per round; no report")
    ap.add_argument("--database-url", default=None, help="a PostgreSQL server to use (default: a throwaway one)")
    ap.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    jobs, submits = (3, 20) if args.quick else (args.jobs, args.submits)
    server = None
    stores: dict[str, str | None] = {}
    if not args.sqlite_only:
        if args.database_url:
            stores["PostgreSQL"] = args.database_url
        else:
            sys.path.insert(0, str(ROOT / "tests" / "service"))
            import pg

            reason = pg.why_not()
            if reason:
                sys.exit(f"bench/cluster.py: no PostgreSQL ({reason}); pass --database-url or --sqlite-only")
            server = pg.start_server()
            stores["PostgreSQL"] = server.new_database("bench")
    stores["SQLite"] = None
    load0 = os.getloadavg()[0]
    try:
        rows = run(stores, jobs, submits, (1, 2))
    finally:
        if server is not None:
            server.stop()
    load1 = os.getloadavg()[0]
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        print(table(rows))
    if args.quick or args.no_write:
        return
    write_section(
        "cluster",
        f"""
## Scale-out: 1 vs 2 worker processes (`bench/cluster.py`)

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

Machine: {machine()}.
""",
    )


if __name__ == "__main__":
    main()
