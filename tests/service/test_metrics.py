"""GET /metrics: Prometheus text format 0.0.4 (checked with prometheus_client's parser), values that follow the
store (jobs, queue, leases, crashes) and the process's request counter, and who may read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, make_config
from fastapi.testclient import TestClient

from kinema.service import metrics
from kinema.service.app import create_app
from kinema.service.config import ServiceConfig
from kinema.service.store import Store


def _app(cfg: ServiceConfig, store: Store | None = None) -> Any:
    return create_app(cfg, store=store)  # create_app installs GET /metrics and the request counter


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value}, through the official parser (which also checks the format)."""
    parser = pytest.importorskip("prometheus_client.parser")
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Store, str]]:
    monkeypatch.setattr(metrics, "CACHE_SECONDS", 0.0)  # every scrape reads the store
    cfg = make_config(tmp_path, workers=0)
    cfg.ensure_dirs()
    store = Store(cfg.db_path)
    key_id, secret = store.create_key("m")
    with TestClient(_app(cfg, store), headers={"Authorization": f"Bearer {secret}"}) as client:
        yield client, store, key_id


def test_metrics_follow_the_store_and_parse(
    served: tuple[TestClient, Store, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store, _ = served
    monkeypatch.setattr(metrics, "SCAN_PAGE", 2)  # several pages per owner
    ids = [client.post("/v1/videos", json={**FAST, "prompt": f"a red ball {i}"}).json()["id"] for i in range(5)]
    assert client.get("/v1/videos/video_nope").status_code == 404
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"] == metrics.CONTENT_TYPE
    m = _parse(r.text)
    assert m[("kinema_jobs", (("kind", "video"), ("status", "queued")))] == 5
    assert m[("kinema_jobs", (("kind", "video"), ("status", "completed")))] == 0
    assert m[("kinema_jobs", (("kind", "storyboard"), ("status", "queued")))] == 0
    assert m[("kinema_queue_depth", ())] == 5
    assert m[("kinema_oldest_queued_job_age_seconds", ())] > 0
    assert m[("kinema_leases_in_flight", ())] == 0 and m[("kinema_store_job_attempts", ())] == 0
    http = ("kinema_http_requests_total", (("code", "200"), ("method", "POST"), ("route", "/v1/videos")))
    assert m[http] == 5  # answered by the JSON fast path, counted all the same
    assert m[("kinema_http_requests_total", (("code", "404"), ("method", "GET"), ("route", "/v1/videos/{id}")))] == 1
    assert ("kinema_build_info", (("version", metrics.__version__),)) in m

    # a worker holds one job; another worker's lease has run out (it died); the reaper then counts a crash
    live = store.claim("host:1:live", lease_seconds=60)
    dead = store.claim("host:2:dead", lease_seconds=-1)
    assert live is not None and dead is not None
    m = _parse(client.get("/metrics").text)
    assert m[("kinema_jobs", (("kind", "video"), ("status", "in_progress")))] == 2
    assert m[("kinema_queue_depth", ())] == 3
    assert m[("kinema_leases_in_flight", ())] == 1
    assert m[("kinema_worker_leases", (("worker", "host:1:live"),))] == 1
    assert m[("kinema_leases_expired", ())] == 1 and m[("kinema_store_job_attempts", ())] == 2
    assert [job_id for job_id, _ in store.reap()] == [dead.id]
    assert store.complete(
        live.id, "host:1:live", 1, result={}, output_path="x.mp4", thumbnail_path=None, expires_at=2e9
    )
    m = _parse(client.get("/metrics").text)
    assert m[("kinema_jobs", (("kind", "video"), ("status", "completed")))] == 1
    assert m[("kinema_jobs", (("kind", "video"), ("status", "queued")))] == 4
    assert m[("kinema_store_job_crashes", ())] == 1 and m[("kinema_leases_expired", ())] == 0
    assert (
        m[http] == 5
        and m[("kinema_http_requests_total", (("code", "200"), ("method", "GET"), ("route", "/metrics")))] == 2
    )
    assert set(ids) >= {live.id, dead.id}


def test_metrics_need_a_key_unless_configured_otherwise(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, workers=0)
    with TestClient(_app(cfg)) as client:
        r = client.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        assert "/metrics" in client.get("/openapi.json").json()["paths"]
    open_cfg = make_config(tmp_path / "b", workers=0)
    open_cfg.metrics_auth = False
    with TestClient(_app(open_cfg)) as client:
        assert client.get("/metrics").status_code == 200
    no_auth = make_config(tmp_path / "c", workers=0, auth=False)
    with TestClient(_app(no_auth)) as client:
        assert "kinema_queue_depth 0" in client.get("/metrics").text


def test_a_scrape_is_reused_for_cache_seconds(
    served: tuple[TestClient, Store, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, _ = served
    monkeypatch.setattr(metrics, "CACHE_SECONDS", 60.0)
    client.get("/metrics")
    client.post("/v1/videos", json={**FAST, "prompt": "a red ball"})
    # the store's count is the cached one; the live queue depth (one cheap count) is not cached
    text = client.get("/metrics").text
    assert 'kinema_jobs{status="queued",kind="video"} 0' in text and "kinema_queue_depth 1" in text


def test_a_store_with_job_stats_is_asked_instead_of_scanned(tmp_path: Path) -> None:
    class StatsStore(Store):
        def job_stats(self, now: float | None = None) -> metrics.JobStats:
            return metrics.JobStats(jobs={("failed", "video"): 7}, leases={"w": 2})

        def list_jobs(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("scanned")

    cfg = make_config(tmp_path, workers=0, auth=False)
    cfg.ensure_dirs()
    with TestClient(_app(cfg, StatsStore(cfg.db_path))) as client:
        m = _parse(client.get("/metrics").text)
    assert m[("kinema_jobs", (("kind", "video"), ("status", "failed")))] == 7
    assert m[("kinema_leases_in_flight", ())] == 2


def test_render_escapes_label_values_and_help() -> None:
    text = metrics.render([metrics.Sample("x", "gauge", "a \\ b\nc", {"w": 'h"o\\st\n'}, 1.5)])
    assert text == '# HELP x a \\\\ b\\nc\n# TYPE x gauge\nx{w="h\\"o\\\\st\\n"} 1.5\n'
    assert _parse(text)[("x", (("w", 'h"o\\st\n'),))] == 1.5


def test_a_deleted_cursor_job_makes_the_scan_count_that_owner_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "SCAN_PAGE", 2)
    store = Store(tmp_path / "db.sqlite3")
    for i in range(5):
        store.submit_job(owner="o", request={"prompt": f"p{i}"}, summary={})
    real = store.list_jobs
    calls = {"n": 0}

    def deleted_once(owner: str, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the second page's cursor: gone
            raise KeyError(kwargs.get("after"))
        return real(owner, **kwargs)

    monkeypatch.setattr(store, "list_jobs", deleted_once)
    stats = metrics.scan_job_stats(store, owners=["o"])
    assert stats.jobs == {("queued", "video"): 5} and calls["n"] > 4
