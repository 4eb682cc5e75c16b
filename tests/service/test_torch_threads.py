"""``kinema worker --torch-threads``: the PyTorch thread count of a worker process, set before any model loads
(several worker processes on one machine with torch's default, a thread per core each, oversubscribe the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import _worker_says

from kinema.errors import InvalidRequest
from kinema.service.worker import apply_torch_threads, default_torch_threads


def test_the_default_is_the_cpus_shared_by_the_claim_loops_unless_omp_num_threads_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [default_torch_threads(n) for n in (1, 2, 3, 8, 16, 0)] == [8, 4, 2, 1, 1, 8]
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert default_torch_threads(2) == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a count: ignored
    assert default_torch_threads(2) == 4


def test_apply_sets_torch_and_the_environment_before_torch_is_imported() -> None:
    # a fresh interpreter: torch not yet imported, as in `kinema worker`
    code = (
        "import os; from kinema.service.worker import apply_torch_threads; n = apply_torch_threads(3); "
        "import torch; print(n, torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "3", "3"]
    with pytest.raises(InvalidRequest):
        apply_torch_threads(0)


def test_kinema_worker_applies_and_reports_its_torch_threads(tmp_path: Path) -> None:
    stdout, stderr = _worker_says(tmp_path, "--json", "--torch-threads", "3")
    assert json.loads(stdout.strip().splitlines()[0])["torch_threads"] == 3, stderr
    (tmp_path / "b").mkdir()
    stdout, stderr = _worker_says(tmp_path / "b")  # the default: --workers 2 share this machine's CPUs
    line = [text for text in stderr.splitlines() if text.startswith("kinema worker:")]
    assert line and line[0].endswith(f"torch threads {default_torch_threads(2)}"), stderr
