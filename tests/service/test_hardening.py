"""The "Service hardening" issue: each item's regression test."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config
from fastapi.testclient import TestClient

from kinema.service.app import create_app
from kinema.service.store import Store


def _client(tmp_path: Path, **overrides):
    cfg = make_config(tmp_path, workers=0, **overrides)
    store = Store(cfg.db_path)
    key = store.create_key("a")[1]
    return TestClient(create_app(cfg, store=store), headers={"Authorization": f"Bearer {key}"})


PATHS = [
    "diffusers/~/.cache",
    "diffusers//root/.ssh",
    "diffusers//nonexistent/x",
    "~/.cache",
    "/etc",
    "./m",
    "diffusers/../x",
    "diffusers/a\\b",
    "diffusers/x.safetensors",
    "model.safetensors",
]


def test_model_path_refused_with_one_answer(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        answers = set()
        for ref in PATHS:
            board = {"title": "t", "model": ref, "scenes": [{"prompt": "x"}]}
            for url, body in (("/v1/videos", {"prompt": "x", "model": ref}), ("/v1/storyboards", board)):
                r = client.post(url, json=body)
                assert r.status_code == 400, (ref, url, r.text)
                err = r.json()["error"]
                assert err["param"] == "model"
                answers.add(err["message"])
        assert len(answers) == 1
        message = next(iter(answers))
        assert "root" not in message and ".cache" not in message and "ssh" not in message
        assert client.post("/v1/videos", json={"prompt": "x", "model": "builtin"}).status_code == 200


def test_model_dir_allows_folders_inside(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "m").mkdir(parents=True)
    with _client(tmp_path, model_dir=models) as client:
        r = client.post("/v1/videos", json={"prompt": "x", "model": f"diffusers/{tmp_path}/elsewhere"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "model"
        r = client.post("/v1/videos", json={"prompt": "x", "model": f"diffusers/{models / 'm'}"})
        assert (
            r.json().get("error", {}).get("message")
            != client.post("/v1/videos", json={"prompt": "x", "model": "diffusers//etc"}).json()["error"]["message"]
        )


@pytest.mark.parametrize("ref", ["diffusers/Org/Repo"])
def test_hub_ids_pass_the_path_check(ref: str) -> None:
    from kinema.service.modelref import check_model_ref

    check_model_ref(ref, None, None)
