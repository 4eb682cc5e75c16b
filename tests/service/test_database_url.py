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


def test_keys_commands_take_database_url(tmp_path: Path, pg_server: Any, monkeypatch: Any) -> None:
    """An operator of a PostgreSQL deployment creates, lists and revokes keys with --database-url."""
    import json

    from typer.testing import CliRunner

    from kinema.cli import app as cli

    monkeypatch.delenv("KINEMA_DATABASE_URL", raising=False)
    url = pg_server.new_database()
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--name", "ops", "--database-url", url, "--json", "--data-dir", str(tmp_path)]
    )
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert PostgresStore(url).authenticate(key["key"]) is not None  # in PostgreSQL, not in the data dir's SQLite
    assert not (tmp_path / "kinema.sqlite3").exists()
    listed = runner.invoke(cli, ["keys", "list", "--database-url", url, "--json", "--data-dir", str(tmp_path)])
    assert [k["id"] for k in json.loads(listed.stdout)["keys"]] == [key["id"]]
    revoked = runner.invoke(cli, ["keys", "revoke", key["id"], "--database-url", url, "--data-dir", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    assert PostgresStore(url).authenticate(key["key"]) is None
