"""`kinema serve` and `kinema worker` on PostgreSQL: the store is chosen by --database-url / KINEMA_DATABASE_URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import make_config, wait_for
from fastapi.testclient import TestClient

from kinema.service.app import create_app
from kinema.service.store_postgres import PostgresStore


def test_the_service_runs_a_job_on_postgresql(tmp_path: Path, pg_server: Any, monkeypatch: Any) -> None:
    url = pg_server.new_database()
    monkeypatch.setenv("KINEMA_DATABASE_URL", url)
    cfg = make_config(tmp_path, workers=1)
    assert cfg.store_location == url
    app = create_app(cfg)
    store = app.state.kinema.store
    assert isinstance(store, PostgresStore)
    _, secret = store.create_key("t")
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        job = client.post("/v1/videos", json={"prompt": "a red ball bouncing", "steps": 2, "seed": 1}).json()
        wait_for(lambda: client.get(f"/v1/videos/{job['id']}").json()["status"] == "completed", timeout=60)
        assert client.get(f"/v1/videos/{job['id']}/content").status_code == 200
