"""Costs per API key: GET /v1/usage sums what each key's jobs cost, and a key's budget refuses new paid jobs (402)
once it is spent, never free ones."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the provider fakes (tests/fakes) are shared

from conftest import FAST, make_config, wait_status  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from fakes.luma import FakeLuma  # noqa: E402
from kinema.service.app import create_app  # noqa: E402
from kinema.service.store import Store  # noqa: E402
from kinema.service.usage import parse_budget, summarize  # noqa: E402

#: a Luma ray-2 clip of 5 s at 720p: Luma reports no cost, Kinema estimates $0.71 (kinema.backends.prices)
LUMA = {"prompt": "a red fox in snow", "model": "luma/ray-2", "seconds": "5", "size": "1280x720"}


@pytest.fixture
def luma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLuma]:
    import kinema

    frames = np.zeros((8, 32, 32, 3), np.uint8)
    kinema.Video(frames, fps=8).save(tmp_path / "clip.mp4")
    fake = FakeLuma((tmp_path / "clip.mp4").read_bytes())
    monkeypatch.setenv("LUMAAI_API_KEY", fake.key)
    monkeypatch.setenv("LUMAAI_BASE_URL", fake.url + "/dream-machine/v1")
    monkeypatch.setenv("KINEMA_POLL_INTERVAL", "0.02")
    try:
        yield fake
    finally:
        fake.close()


def _service(tmp_path: Path, budget: tuple[float, str] | None = None) -> tuple[TestClient, Store]:
    cfg = make_config(tmp_path)
    cfg.ensure_dirs()
    store = Store(cfg.db_path)
    key = store.create_key("k", budget=budget)[1]
    return TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}), store


def _run(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = client.post("/v1/videos", json=body)
    assert resp.status_code == 200, resp.text
    done = wait_status(client, resp.json()["id"])
    assert done["status"] == "completed", done["error"]
    return done


def test_usage_sums_jobs_seconds_and_costs_per_unit(tmp_path: Path, luma: FakeLuma) -> None:
    client, _ = _service(tmp_path)
    with client:
        empty = client.get("/v1/usage").json()
        assert empty["jobs"] == {"total": 0} and empty["cost"] == {} and empty["budget"] is None
        _run(client, LUMA)
        _run(client, LUMA)
        _run(client, {"prompt": "a ball", **FAST})  # free: no cost
        usage = client.get("/v1/usage").json()
        assert usage["object"] == "usage" and usage["jobs"] == {"total": 3, "completed": 3}
        assert usage["cost"]["usd"] == {"amount": pytest.approx(1.42), "estimated": True}
        assert usage["estimated"] is True and usage["seconds"] > 10
        later = client.get("/v1/usage", params={"since": "2999-01-01"}).json()
        assert later["jobs"] == {"total": 0} and later["since"] > 0
        bad = client.get("/v1/usage", params={"since": "last tuesday"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"
        assert "ISO 8601" in bad.json()["error"]["message"]
        unknown = client.get("/v1/usage", params={"sinse": "0"})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "sinse"


def test_usage_is_per_key(tmp_path: Path, luma: FakeLuma) -> None:
    client, store = _service(tmp_path)
    other = store.create_key("other")[1]
    with client:
        _run(client, LUMA)
        theirs = client.get("/v1/usage", headers={"Authorization": f"Bearer {other}"}).json()
        assert theirs["jobs"] == {"total": 0} and theirs["cost"] == {}


def test_a_spent_budget_refuses_paid_jobs_with_402_but_never_free_ones(tmp_path: Path, luma: FakeLuma) -> None:
    client, _ = _service(tmp_path, budget=(1.0, "USD"))
    with client:
        _run(client, LUMA)  # $0.71 of $1.00
        assert client.get("/v1/usage").json()["budget"] == {
            "amount": 1.0,
            "currency": "USD",
            "spent": pytest.approx(0.71),
            "remaining": pytest.approx(0.29),
        }
        _run(client, LUMA)  # allowed: $0.71 < $1.00 was spent when it was submitted
        refused = client.post("/v1/videos", json=LUMA)
        assert refused.status_code == 402, refused.text
        error = refused.json()["error"]
        assert error["code"] == "budget_exhausted" and error["param"] == "model"
        assert "1.42 USD" in error["message"] and "1.00 USD budget" in error["message"]
        assert luma.submissions == 2
        _run(client, {"prompt": "a ball", **FAST})  # builtin is free: never refused


def test_parse_budget_names_the_field_and_what_is_allowed() -> None:
    from kinema.errors import InvalidRequest

    assert parse_budget("10USD") == (10.0, "USD") and parse_budget("$0.5") == (0.5, "USD")
    for bad in ("10EUR", "ten", "0USD", "-3"):
        with pytest.raises(InvalidRequest, match="budget") as err:
            parse_budget(bad)
        assert err.value.field == "budget" and "USD" in str(err.value)


def test_summarize_ignores_what_is_not_an_amount() -> None:
    rows = [
        {
            "id": "a",
            "status": "completed",
            "created_at": 0,
            "request": {},
            "result": {
                "recipe": {"duration": 5},
                "cost": {"credits": 50, "usd": 0.5, "estimate": True, "price_date": "2026-11-21", "price_source": "x"},
            },
        },
        {"id": "b", "status": "failed", "created_at": 0, "request": {}, "result": None},
    ]
    totals = summarize(rows)
    assert totals["jobs"] == {"total": 2, "completed": 1, "failed": 1} and totals["seconds"] == 5
    assert totals["cost"] == {
        "credits": {"amount": 50.0, "estimated": False},
        "usd": {"amount": 0.5, "estimated": True},
    }


def test_keys_create_with_a_budget(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from kinema.cli import app

    runner = CliRunner()
    made = runner.invoke(
        app, ["keys", "create", "--name", "ci", "--budget", "10USD", "--data-dir", str(tmp_path), "--json"]
    )
    assert made.exit_code == 0, made.output
    body = json.loads(made.stdout)
    assert body["budget"] == {"amount": 10.0, "currency": "USD"}
    assert Store(tmp_path / "kinema.sqlite3").key_budget(body["id"]) == (10.0, "USD")
    listed = runner.invoke(app, ["keys", "list", "--data-dir", str(tmp_path)])
    assert "10 USD" in listed.output
    bad = runner.invoke(app, ["keys", "create", "--budget", "10EUR", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "--budget: '10EUR' is not an amount of US dollars" in bad.output


def test_a_storyboards_cost_is_its_scenes_costs(tmp_path: Path, luma: FakeLuma) -> None:
    client, _ = _service(tmp_path)
    body = {
        "title": "two",
        "model": "luma/ray-2",
        "size": "1280x720",
        "scenes": [{"prompt": "a red fox", "duration": 5}, {"prompt": "a fox", "duration": 5}],
    }
    with client:
        resp = client.post("/v1/storyboards", json=body)
        assert resp.status_code == 200, resp.text
        done = wait_status(client, resp.json()["id"])
        assert done["status"] == "completed", done["error"]
        usage = client.get("/v1/usage").json()
    assert luma.submissions == 2
    assert usage["cost"]["usd"] == {"amount": pytest.approx(1.42), "estimated": True}, "two scenes of $0.71"


def test_sum_costs_adds_each_unit_and_keeps_estimate() -> None:
    from kinema.service.budgets import sum_costs

    assert sum_costs([None, {}]) is None
    assert sum_costs([{"credits": 5, "estimate": False}, {"credits": 2.5, "price_source": "x"}]) == {"credits": 7.5}
    assert sum_costs([{"usd": 0.71, "estimate": True}, {"usd": 0.71}]) == {"usd": 1.42, "estimate": True}
