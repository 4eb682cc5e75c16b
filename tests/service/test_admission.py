"""Admission holds its bounds under concurrency: many submits at once, through a real server, never queue more jobs
than ``max_queued`` nor more active jobs per key than ``max_active_per_key`` (the store counts in the inserting
transaction; the cached counts alone let a burst through)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
from conftest import FAST, LiveServer, make_config

from kinema.service.app import create_app
from kinema.service.store import Store


def _burst(url: str, key: str, n: int, threads: int = 12) -> Counter[int]:
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def run(count: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            start.wait()
            for _ in range(count):
                status = client.post("/v1/videos", json={"prompt": "a red ball", **FAST}).status_code
                with lock:
                    statuses[status] += 1

    workers = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return statuses


def test_concurrent_submits_never_exceed_max_queued(tmp_path: Path) -> None:
    config = make_config(tmp_path, workers=0, max_queued=20, submit_rate=(0, 0), read_rate=(0, 0))
    config.ensure_dirs()
    store = Store(config.db_path)
    key = store.create_key("t")[1]
    with LiveServer(create_app(config)) as server:
        statuses = _burst(server.url, key, 120)
        depth = httpx.get(server.url + "/healthz").json()["queued"]
    assert statuses == Counter({200: 20, 429: 100}), statuses
    assert depth == 20 and store.queue_depth() == 20


def test_concurrent_submits_never_exceed_max_active_per_key(tmp_path: Path) -> None:
    config = make_config(tmp_path, workers=0, max_active_per_key=7, submit_rate=(0, 0), read_rate=(0, 0))
    config.ensure_dirs()
    store = Store(config.db_path)
    key, other = store.create_key("t")[1], store.create_key("u")[1]
    with LiveServer(create_app(config)) as server:
        statuses = _burst(server.url, key, 48)
        assert (
            httpx.post(
                server.url + "/v1/videos",
                json={"prompt": "a red ball", **FAST},
                headers={"Authorization": f"Bearer {other}"},
            ).status_code
            == 200
        )
        refused = httpx.post(
            server.url + "/v1/videos",
            json={"prompt": "a red ball", **FAST},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert statuses == Counter({200: 7, 429: 41}), statuses
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_active_jobs"
    assert refused.headers["Retry-After"] == "5"
    assert store.queue_depth() == 8
