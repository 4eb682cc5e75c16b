"""POST /v1/videos/{id}/retry: the owner of a failed job (a quarantined poison job, say) queues it again."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import make_config
from fastapi.testclient import TestClient

from kinema.service.app import create_app
from kinema.service.store import Store


def test_the_owner_retries_a_failed_job(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, workers=0)
    store = Store(cfg.db_path, max_crashes=1)
    (_, mine), (_, other) = store.create_key("a"), store.create_key("b")
    with TestClient(create_app(cfg, store=store)) as client:
        me, them = {"Authorization": f"Bearer {mine}"}, {"Authorization": f"Bearer {other}"}
        job = client.post("/v1/videos", json={"prompt": "a red ball"}, headers=me).json()
        queued = client.post(f"/v1/videos/{job['id']}/retry", headers=me)
        assert queued.status_code == 409 and queued.json()["error"]["code"] == "not_retryable"
        assert store.claim("w", lease_seconds=0.01) is not None  # its worker dies: quarantined at once here
        time.sleep(0.03)
        store.reap()
        failed = client.get(f"/v1/videos/{job['id']}", headers=me).json()
        assert failed["status"] == "failed" and failed["error"]["code"] == "poison_job"
        assert client.post(f"/v1/videos/{job['id']}/retry", headers=them).status_code == 404
        again = client.post(f"/v1/videos/{job['id']}/retry", headers=me)
        assert again.status_code == 200 and again.json()["status"] == "queued"
        assert store.claim("w", lease_seconds=30) is not None
