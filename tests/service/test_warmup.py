"""The default backend's model is loaded when the workers start, in the background: the first job on a fresh
server does not wait for it before its first step, and startup does not wait for it either."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config, wait_for

import kinema.builtin as builtin
from kinema.service.stores import open_store
from kinema.service.worker import WorkerPool

#: what a cold load of the built-in model costs in this test (the real one is cached for the test process); long
#: enough that a job which waited for it stands out from a warm job's start on a loaded 2-core machine (3.1 s seen)
COLD = 8.0


def _slow_first_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The built-in loader, slow on its first call as on a fresh server; returns the callers' thread names."""
    real = builtin.load_model
    real()  # cached from here on: the fake's first call costs only its sleep
    callers: list[str] = []

    def load_model(path: Any = None) -> Any:
        callers.append(threading.current_thread().name)
        if len(callers) == 1:
            time.sleep(COLD)
        return real(path)

    monkeypatch.setattr(builtin, "load_model", load_model)
    return callers


def test_the_first_job_finds_the_default_model_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    callers = _slow_first_load(monkeypatch)
    cfg = make_config(tmp_path, warm_up=True)  # the default (the test config turns it off)
    store = open_store(cfg.store_location)
    pool = WorkerPool(store, cfg, threads=1)
    started = time.monotonic()
    pool.start()
    try:
        assert time.monotonic() - started < 1.0, "start() must not wait for the model"
        assert pool.warmed.wait(30)
        assert callers == ["kinema-warmup"], "the warm-up loaded the model before any job was claimed"
        request = {
            "prompt": "a red ball",
            "backend": "builtin",
            "num_inference_steps": 2,
            "seed": 1,
            "format": "mp4",
            "num_frames": 16,
        }
        job = store.submit_job(owner="o", request=request, summary={})
        submitted = time.monotonic()
        pool.notify()

        def stepped() -> bool:
            got = store.get(job.id)
            return got is not None and (got.stage == "denoising" or got.status == "completed")

        wait_for(stepped, timeout=30, interval=0.02)
        assert time.monotonic() - submitted < COLD - 1, "the first job paid for loading the model"
        assert callers[0] == "kinema-warmup" and len(callers) == 2
    finally:
        pool.stop(graceful=False, timeout=5)
        store.close()


def test_no_warm_up_when_turned_off_or_without_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    callers = _slow_first_load(monkeypatch)
    for cfg, threads in (
        (make_config(tmp_path / "a", warm_up=False), 1),
        (make_config(tmp_path / "b", warm_up=True), 0),
    ):
        store = open_store(cfg.store_location)
        pool = WorkerPool(store, cfg, threads=threads)
        pool.start(housekeeping=False)
        assert pool.warmed.is_set()
        pool.stop(timeout=1)
        store.close()
    assert callers == []
