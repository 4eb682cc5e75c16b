"""``kinema worker --ray``: the command joins a running Ray cluster, says what it serves, runs a job, stops on
SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinema.service.stores import open_store

from .test_ray_workers import submit, wait_done

ray = pytest.importorskip("ray")


def test_kinema_worker_ray_joins_the_cluster_and_runs_jobs(ray_session: Path, tmp_path: Path) -> None:
    data, out, err = tmp_path / "data", tmp_path / "out", tmp_path / "err"
    address = ray.get_runtime_context().gcs_address  # the session's Ray, as `--address auto` finds a host's own
    cmd = [
        sys.executable,
        "-m",
        "kinema.cli",
        "worker",
        "--ray",
        "--address",
        address,
        "--gpu-actors",
        "0",
        "--cpu-actors",
        "1",
        "--json",
        "--data-dir",
        str(data),
        "--lease",
        "5",
    ]
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.read_text(), f"nothing printed (exit {proc.poll()}): {err.read_text()[-2000:]}"
        info = json.loads(out.read_text())
        assert info["ray"] is True and (info["gpu_actors"], info["cpu_actors"]) == (0, 1), info
        assert info["store"] == f"SQLite {data / 'kinema.sqlite3'}" and info["kinds"] == ["video"]
        store = open_store(data / "kinema.sqlite3")
        job_id = submit(store, "from the command", "builtin")
        wait_done(store, [job_id])
        job = store.get(job_id)
        assert job is not None and job.status == "completed", job and job.error
        assert [a["outcome"] for a in store.attempts_of(job_id)] == ["completed"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, err.read_text()[-2000:]
