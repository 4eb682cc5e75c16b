"""Idempotency-Key per Stripe and the IETF draft (R6): replay, 422 on another body, 409 while in flight, per-key
scope, 24 h retention."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import make_config
from fastapi.testclient import TestClient

from kinema.service import submit as submit_module
from kinema.service.app import create_app
from kinema.service.store import Store

BODY = {"prompt": "a red ball bouncing on green grass", "model": "builtin", "steps": 2}


@pytest.fixture
def svc(tmp_path):
    cfg = make_config(tmp_path, workers=0)
    store = Store(cfg.db_path)
    keys = [store.create_key(n)[1] for n in ("a", "b")]
    with TestClient(create_app(cfg, store=store)) as client:
        yield client, store, keys


def _post(client, key, body, idem):
    return client.post("/v1/videos", json=body, headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem})


def _count_jobs(store) -> int:
    return store.connection().execute("SELECT count(*) FROM jobs").fetchone()[0]


def test_same_key_same_body_replays_the_stored_response(svc) -> None:
    client, store, (key, _) = svc
    first = _post(client, key, BODY, "k-1")
    second = _post(client, key, dict(reversed(list(BODY.items()))), "k-1")  # same body, other key order
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"
    assert _count_jobs(store) == 1


def test_same_key_other_body_is_422(svc) -> None:
    client, store, (key, _) = svc
    assert _post(client, key, BODY, "k-2").status_code == 200
    r = _post(client, key, {**BODY, "prompt": "something else"}, "k-2")
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
    assert _count_jobs(store) == 1


def test_same_key_while_in_flight_is_409(svc, monkeypatch: pytest.MonkeyPatch) -> None:
    client, store, (key, _) = svc
    entered, release = threading.Event(), threading.Event()
    real = submit_module._execute

    def slow_execute(*args, **kwargs):
        entered.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(submit_module, "_execute", slow_execute)
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("first", _post(client, key, BODY, "k-3")))
    t.start()
    assert entered.wait(10)
    concurrent = _post(client, key, BODY, "k-3")
    release.set()
    t.join(10)
    assert concurrent.status_code == 409 and concurrent.json()["error"]["code"] == "idempotency_key_in_use"
    # Retry-After is true: when the reservation can be taken over at the latest (it said 1 s, for 120 s)
    assert 100 <= int(concurrent.headers["Retry-After"]) <= 120
    assert results["first"].status_code == 200
    again = _post(client, key, BODY, "k-3")
    assert again.status_code == 200 and again.content == results["first"].content
    assert _count_jobs(store) == 1


def test_keys_are_scoped_per_api_key_and_kept_24h(svc) -> None:
    client, store, (key_a, key_b) = svc
    a = _post(client, key_a, BODY, "shared")
    b = _post(client, key_b, BODY, "shared")
    assert a.status_code == b.status_code == 200 and a.json()["id"] != b.json()["id"]
    # 23 hours later the answer is still replayed; after 24 hours the key is forgotten
    store.connection().execute("UPDATE idempotency SET created_at=?", (time.time() - 23 * 3600,))
    assert _post(client, key_a, BODY, "shared").json()["id"] == a.json()["id"]
    store.connection().execute("UPDATE idempotency SET created_at=?", (time.time() - 25 * 3600,))
    assert _post(client, key_a, BODY, "shared").json()["id"] != a.json()["id"]


def test_a_failed_request_is_replayed_too(svc) -> None:
    client, store, (key, _) = svc
    body = {**BODY, "image_url": "data:image/gif;base64,R0lGODlhAQABAAAAACw="}
    first = _post(client, key, body, "k-err")
    assert first.status_code == 422
    second = _post(client, key, body, "k-err")
    assert second.status_code == 422 and second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"
    assert _count_jobs(store) == 0
