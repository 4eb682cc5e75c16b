"""A backend written against the Backend protocol alone, driven through the job service (a video job, the model
list, a storyboard job); and model references resolved over HTTP exactly as in Python."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_config, wait_status
from fastapi.testclient import TestClient

import kinema
from kinema.backends import unregister_backend
from kinema.backends.base import Availability, BackendOutput, Capabilities, GenerationContext, GenerationParams
from kinema.errors import KinemaError
from kinema.service.app import create_app
from kinema.service.store import Store

NAME = "protocol-http"


class ProtocolOnly:
    """No BaseBackend: name, description, availability, capabilities and generate, nothing else."""

    name = NAME
    description = "grey frames (a protocol-only test backend)"

    def availability(self) -> Availability:
        return Availability.ok()

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            default_size=(16, 16), max_size=32, default_frames=4, max_frames=16, default_fps=4.0, max_steps=8
        )

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        frames = np.full((params.num_frames, params.height, params.width, 3), 128, np.uint8)
        return BackendOutput(video=kinema.Video(frames, fps=params.fps))


class Offline(ProtocolOnly):
    name = "protocol-offline"

    def availability(self) -> Availability:
        return Availability.no("API key missing: set PROTOCOL_OFFLINE_KEY")


@pytest.fixture
def protocol_backend() -> Iterator[str]:
    """The backend registered for one test (the registry is global: it is removed again afterwards)."""
    kinema.register_backend(NAME, ProtocolOnly)
    kinema.register_backend(Offline.name, Offline)
    try:
        yield NAME
    finally:
        unregister_backend(NAME)
        unregister_backend(Offline.name)


@pytest.fixture
def submit_only(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    """An app without workers: jobs are planned and stored, never run (nothing is downloaded)."""
    cfg = make_config(tmp_path, workers=0)
    store = Store(cfg.db_path)
    key = store.create_key("t")[1]
    with TestClient(create_app(cfg, store=store), headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, store


def test_a_protocol_only_backend_runs_a_video_job(protocol_backend: str, client: TestClient) -> None:
    r = client.post("/v1/videos", json={"prompt": "grey", "model": protocol_backend, "seed": 3})
    assert r.status_code == 200, r.text
    video = r.json()
    assert video["backend"] == protocol_backend and video["size"] == "16x16" and video["seconds"] == "1"
    done = wait_status(client, video["id"])
    assert done["status"] == "completed", done
    content = client.get(f"/v1/videos/{video['id']}/content")
    assert content.status_code == 200 and content.content[4:8] == b"ftyp"


def test_a_protocol_only_backend_is_listed_with_its_capabilities(protocol_backend: str, client: TestClient) -> None:
    models = client.get("/v1/models").json()["data"]
    entry = next(m for m in models if m["id"] == protocol_backend)
    assert entry["usable"] and entry["reason"] is None, entry
    assert entry["description"] == ProtocolOnly.description and entry["model"] is None
    assert entry["capabilities"]["default_size"] == [16, 16] and entry["capabilities"]["max_frames"] == 16
    offline = next(m for m in models if m["id"] == Offline.name)
    assert not offline["usable"] and "PROTOCOL_OFFLINE_KEY" in offline["reason"]
    assert not any("failed to load" in str(m.get("reason")) for m in models), models


def test_a_protocol_only_backend_runs_a_storyboard_job(protocol_backend: str, client: TestClient) -> None:
    scenes = [{"prompt": "one", "duration": 1}, {"prompt": "two", "duration": 1, "transition": "fade:0.25"}]
    body = {"title": "grey film", "model": protocol_backend, "scenes": scenes}
    r = client.post("/v1/storyboards", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "storyboard" and r.json()["backend"] == protocol_backend
    done = wait_status(client, r.json()["id"])
    assert done["status"] == "completed", done
    assert [s["backend"] for s in done["recipe"]["scenes"]] == [protocol_backend] * 2


def test_a_protocol_only_backend_refuses_by_the_fields_sent(protocol_backend: str, submit_only: Any) -> None:
    client, store = submit_only
    cases = [({"num_frames": 17}, "num_frames"), ({"steps": 9}, "steps"), ({"size": "64x64"}, "size")]
    for extra, param in cases:
        r = client.post("/v1/videos", json={"prompt": "p", "model": protocol_backend, **extra})
        assert r.status_code == 400, (extra, r.text)
        err = r.json()["error"]
        assert err["param"] == param and err["message"].startswith(f"{param}: "), err
    board = {"title": "t", "model": protocol_backend, "steps": 9, "scenes": [{"prompt": "one", "duration": 1}]}
    r = client.post("/v1/storyboards", json=board)
    assert r.status_code == 400 and r.json()["error"]["param"] == "steps", r.text
    assert store.queue_depth() == 0


def test_an_unusable_backend_is_blamed_on_the_field_that_chose_it(protocol_backend: str, submit_only: Any) -> None:
    client, _store = submit_only
    for body, param in (({"model": Offline.name}, "model"), ({"backend": Offline.name}, "backend")):
        r = client.post("/v1/videos", json={"prompt": "p", **body})
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == "backend_unavailable" and err["param"] == param, err
        assert "PROTOCOL_OFFLINE_KEY" in err["message"]
    r = client.post("/v1/storyboards", json={"title": "t", "model": Offline.name, "scenes": [{"prompt": "one"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model", r.text


# -- model references: the same backend over HTTP as from Python ------------------------------------------------
def test_a_bare_model_id_picks_the_backend_that_lists_it(submit_only: Any) -> None:
    client, store = submit_only
    # what Python makes of it (here, as on any machine: diffusers may lack its extra, or be usable without weights)
    try:
        planned = kinema.plan(kinema.VideoRequest(prompt="a fox", model="wan2.1-t2v-1.3b"))
    except KinemaError as exc:
        planned, refused = None, exc
    r = client.post("/v1/videos", json={"prompt": "a fox", "model": "wan2.1-t2v-1.3b"})
    if planned is None:  # refused for the same reason, blamed on the field the client sent
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == refused.code and err["param"] == "model", err
        assert "diffusers" in err["message"]
        return
    assert r.status_code == 200, r.text
    video = r.json()
    assert planned.backend.name == "diffusers" and video["backend"] == "diffusers"
    assert video["model"] == "wan2.1-t2v-1.3b" and video["size"] == f"{planned.params.width}x{planned.params.height}"
    stored = store.get(video["id"]).request
    assert stored["backend"] == "diffusers" and stored["model"] == "wan2.1-t2v-1.3b"


def test_an_unknown_model_is_refused_naming_model_and_what_exists(submit_only: Any) -> None:
    client, store = submit_only
    with pytest.raises(kinema.InvalidRequest) as python:
        kinema.plan(kinema.VideoRequest(prompt="a fox", model="nosuch"))
    r = client.post("/v1/videos", json={"prompt": "a fox", "model": "nosuch"})
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "model" and err["code"] == "invalid_request", err
    assert err["message"] == python.value.message  # the same words as the library's
    assert "nosuch" in err["message"] and "builtin" in err["message"] and "diffusers" in err["message"]
    board = client.post("/v1/storyboards", json={"title": "t", "model": "nosuch", "scenes": [{"prompt": "one"}]})
    assert board.status_code == 400 and board.json()["error"]["param"] == "model", board.text
    unknown = client.post("/v1/videos", json={"prompt": "a fox", "backend": "nosuch"})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "backend", unknown.text
    assert store.queue_depth() == 0


def test_backend_slash_model_and_a_backend_name_resolve_as_in_python(submit_only: Any) -> None:
    client, store = submit_only
    for model in ("builtin", "builtin/builtin"):
        planned = kinema.plan(kinema.VideoRequest(prompt="a red ball", model=model, num_inference_steps=2))
        r = client.post("/v1/videos", json={"prompt": "a red ball", "model": model, "steps": 2})
        assert r.status_code == 200, r.text
        stored = store.get(r.json()["id"]).request
        assert (stored["backend"], stored.get("model")) == (planned.request.backend, planned.request.model)
