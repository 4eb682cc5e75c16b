"""Scale-out, for real: two ``kinema serve`` replicas and two ``kinema worker`` processes on one PostgreSQL store and
one shared data dir. Jobs are spread over both APIs (an Idempotency-Key sent to both at once makes one job), one
worker is killed with SIGKILL while it runs a job, and every accepted job still completes exactly once."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("psycopg")

from kinema.service.config import ServiceConfig  # noqa: E402
from kinema.service.stores import open_store  # noqa: E402
from kinema.service.video_job import ATTEMPT_FILE  # noqa: E402
from kinema.service.worker import WorkerPool  # noqa: E402

#: a quick built-in job (64x64, 16 frames, 2 steps): still a second or more, with its encode, to be killed inside
JOB = {"model": "builtin", "steps": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    """The processes of one test; every one is stopped (SIGKILL as a last resort) when the test ends."""

    def __init__(self, url: str, data_dir: Path, logs: Path, weights: Path) -> None:
        self.url, self.data_dir, self.logs = url, data_dir, logs
        self.env = {**os.environ, "KINEMA_BUILTIN_WEIGHTS": str(weights), "HF_HUB_OFFLINE": "1"}
        self.procs: list[subprocess.Popen[bytes]] = []

    def _start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kinema.cli",
                    *args,
                    "--data-dir",
                    str(self.data_dir),
                    "--database-url",
                    self.url,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def api(self, name: str) -> str:
        port = _free_port()
        self._start(name, "serve", "--port", str(port), "--workers", "0", "--log-level", "warning")
        return f"http://127.0.0.1:{port}"

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        # a short lease: a killed worker's job is reaped (by the other worker) within about 2 s
        return self._start(name, "worker", "--workers", "1", "--lease", "2", "--quiet")

    def log(self) -> str:
        return "".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.logs.iterdir()))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def cluster(pg_server: Any, tmp_path: Path, builtin_weights: Path) -> Iterator[Cluster]:
    url = pg_server.new_database("replicas")
    logs = tmp_path / "logs"
    logs.mkdir()
    c = Cluster(url, tmp_path / "data", logs, builtin_weights)
    try:
        yield c
    finally:
        c.stop()
        pg_server.drop_database(url)


def test_two_apis_two_workers_kill9_every_job_completes_exactly_once(cluster: Cluster) -> None:
    store = open_store(cluster.url)  # migrates the fresh database once, before the replicas race to
    try:
        secret = store.create_key("replicas")[1]
        apis = [cluster.api("api-a"), cluster.api("api-b")]
        workers = [cluster.worker("worker-a"), cluster.worker("worker-b")]
        clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {secret}"}, timeout=30) for u in apis]

        def up(client: httpx.Client) -> bool:
            try:
                return client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                assert all(p.poll() is None for p in cluster.procs), cluster.log()
                return False

        for client in clients:
            _wait(lambda c=client: up(c), 60, "the API replicas")  # type: ignore[misc]

        def submit(client: httpx.Client, body: dict[str, Any], key: str | None = None) -> str:
            headers = {"Idempotency-Key": key} if key else {}
            for _ in range(100):
                r = client.post("/v1/videos", json=body, headers=headers)
                if r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_in_use":
                    time.sleep(0.05)  # the other replica holds the key right now: retry, as a client would
                    continue
                assert r.status_code == 200, r.text
                return str(r.json()["id"])
            raise AssertionError("the idempotency key stayed in flight")

        ids: list[str] = []
        for i in range(6):  # plain jobs, alternating replicas
            ids.append(submit(clients[i % 2], {**JOB, "prompt": f"a red ball bouncing {i}", "seed": i}))
        for k in range(2):  # one key, both replicas at once: one job
            body, key = {**JOB, "prompt": f"sunrise over mountains {k}", "seed": 100 + k}, f"replicas-{k}"
            with ThreadPoolExecutor(2) as pool:
                got = list(pool.map(functools.partial(submit, body=body, key=key), clients))
            assert len(got) == 2 and got[0] == got[1], got
            ids.append(got[0])
        assert len(ids) == len(set(ids)) == 8

        # kill -9 a worker process while it runs a job (the worker's name holds its pid)
        victim = workers[0]

        def running_on_victim() -> str | None:
            for job_id in ids:
                job = store.get(job_id)
                if job is not None and job.status == "in_progress" and f":{victim.pid}:" in (job.worker or ""):
                    return job_id
            return None

        killed_job = _wait(running_on_victim, 60, "a job running on the first worker")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert store.get(killed_job).status == "in_progress"  # type: ignore[union-attr]

        def all_done() -> bool:
            assert workers[1].poll() is None, cluster.log()
            return all((j := store.get(i)) is not None and j.terminal for i in ids)

        _wait(all_done, 90, "every job to finish")

        for job_id in ids:
            answers = [c.get(f"/v1/videos/{job_id}").json() for c in clients]
            assert all(a["status"] == "completed" for a in answers), answers
            outcomes = [a["outcome"] for a in store.attempts_of(job_id)]
            assert outcomes.count("completed") == 1, (job_id, outcomes)
            contents = [c.get(f"/v1/videos/{job_id}/content") for c in clients]
            assert [r.status_code for r in contents] == [200, 200]
            assert contents[0].content == contents[1].content and contents[0].content[4:8] == b"ftyp"
        killed = store.get(killed_job)
        assert killed is not None and killed.crashes == 1 and killed.attempts == 2, killed
        assert [a["outcome"] for a in store.attempts_of(killed_job)] == ["lost", "completed"]
        # no duplicates: exactly these jobs exist, each with one output (video, thumbnail, recipe sidecar)
        listed = clients[1].get("/v1/videos", params={"limit": 100}).json()["data"]
        assert sorted(v["id"] for v in listed) == sorted(ids)
        # each under the name of the attempt that completed it (the killed job's second), as its row records
        outputs_dir = cluster.data_dir / "outputs"
        published = set()
        for job_id in ids:
            job = store.get(job_id)
            assert job is not None and job.output_path and job.thumbnail_path
            published |= {
                Path(job.output_path).name,
                Path(job.output_path).name + ".json",
                Path(job.thumbnail_path).name,
            }
        assert published == {
            f"{i}.a{2 if i == killed_job else 1}{ext}" for i in ids for ext in (".mp4", ".mp4.json", ".png")
        }
        # anything else is what the killed attempt had written (a half-saved file): the housekeeping deletes it
        leftovers = {p.name for p in outputs_dir.iterdir()} - published
        matches = [ATTEMPT_FILE.match(n) for n in leftovers]
        assert all(m and (m["job"], m["attempt"]) == (killed_job, "1") for m in matches), leftovers
        WorkerPool(store, ServiceConfig(data_dir=cluster.data_dir), threads=0).sweep_lost_outputs(grace=0)
        assert {p.name for p in outputs_dir.iterdir()} == published
        for client in clients:
            client.close()
    finally:
        store.close()


# -- bench/cluster.py ------------------------------------------------------------------------------------------------
BENCH = Path(__file__).resolve().parents[2] / "bench" / "cluster.py"


def _bench() -> Any:
    import importlib.util

    # by path, under a name of its own: "cluster" could be this test package
    spec = importlib.util.spec_from_file_location("kinema_bench_cluster", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_table_reports_ratios_against_one_worker() -> None:
    bench = _bench()
    rows = [
        {"store": "S", "workers": 1, "submits_per_s": 100.0, "completed_per_s": 2.0},
        {"store": "S", "workers": 2, "submits_per_s": 50.0, "completed_per_s": 3.0},
    ]
    lines = bench.table(rows).splitlines()
    assert lines[2] == "| S | 1 | 100.0 | 2.00 | 1.00x | 1.00x |"
    assert lines[3] == "| S | 2 | 50.0 | 3.00 | 0.50x | 1.50x |"


def test_bench_tables_compare_the_stores_and_the_actors() -> None:
    bench = _bench()
    assert [bench._quantile(list(range(1, 101)), q) for q in (0.5, 0.99, 1.0)] == [50, 99, 100]  # nearest rank
    claims = [
        {"store": "PostgreSQL", "threads": 1, "claims_per_s": 400.0},
        {"store": "SQLite", "threads": 1, "claims_per_s": 1600.0},
        {"store": "PostgreSQL", "threads": 4, "claims_per_s": 800.0},
    ]
    lines = bench.claims_table(claims).splitlines()
    assert lines[2:] == ["| 1 thread | 400.0 | 1600.0 | 0.25x |", "| 4 threads | 800.0 | n/a | n/a |"]
    api = [
        {"store": "PostgreSQL", "submit_p50_ms": 20.0, "submit_p99_ms": 90.0, "polls_per_s": 1500.0},
        {"store": "SQLite", "submit_p50_ms": 10.0, "submit_p99_ms": 60.0, "polls_per_s": 1000.0},
    ]
    assert bench.api_table(api).splitlines()[3] == "| submit p99 (ms) | 90.0 | 60.0 | 1.50x |"
    ray = [
        {"actors": 1, "jobs_per_min": 400.0, "load_start": 2.0, "load_end": 2.1},
        {"actors": 2, "jobs_per_min": 700.0, "load_start": 2.0, "load_end": 1.9},
    ]
    assert bench.ray_table(ray).splitlines()[3] == "| 2 | 700.0 | 1.75x | 2.0, 1.9 |"


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("KINEMA_BENCH_SMOKE"),
    reason="bench/cluster.py --quick takes 35-50 s on a shared 2-core machine (it starts an API and "
    "3 worker processes per store); set KINEMA_BENCH_SMOKE=1 to run it",
)
def test_bench_cluster_quick_runs(pg_server: Any) -> None:
    url = pg_server.new_database("bench")
    try:
        out = subprocess.run(
            [sys.executable, str(BENCH), "--quick", "--json", "--database-url", url],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        pg_server.drop_database(url)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.splitlines()[-1])
    rows = figures["scale_out"]
    assert [(r["store"], r["workers"]) for r in rows] == [
        ("PostgreSQL", 1),
        ("PostgreSQL", 2),
        ("SQLite", 1),
        ("SQLite", 2),
    ]
    assert all(
        r["jobs"] == 3 and r["submits"] == 20 and r["submits_per_s"] > 0 and r["completed_per_s"] > 0 for r in rows
    )
    claims = figures["claims"]
    assert [(r["store"], r["threads"]) for r in claims] == [
        ("PostgreSQL", 1),
        ("PostgreSQL", 4),
        ("SQLite", 1),
        ("SQLite", 4),
    ]
    assert all(r["jobs"] == 20 and r["claims_per_s"] > 0 for r in claims)
    assert [r["store"] for r in figures["api"]] == ["PostgreSQL", "SQLite"]
    assert all(0 < r["submit_p50_ms"] <= r["submit_p99_ms"] and r["polls_per_s"] > 0 for r in figures["api"])
    assert figures["ray"] == [], "--quick skips the Ray phase"
