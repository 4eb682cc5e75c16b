"""``GET /v1/videos/{id}/content?variant=input_reference``: the image a job was submitted with, for its owner (the
web page re-runs an image-to-video job from it after a reload); 404 naming ``variant`` when there was none."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, make_config
from fastapi.testclient import TestClient
from PIL import Image

from kinema.service.app import create_app
from kinema.service.store import Store


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), color, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_owner_downloads_the_input_image_others_and_imageless_jobs_get_404(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, workers=0)  # queued jobs are enough: the image is there whatever the status
    cfg.ensure_dirs()
    store = Store(cfg.db_path)
    key, other = store.create_key("a")[1], store.create_key("b")[1]
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        made = client.post(
            "/v1/videos",
            data={"prompt": "a red ball", **{k: str(v) for k, v in FAST.items()}},
            files={"input_reference": ("ball.png", _png((200, 10, 10)), "image/png")},
        )
        assert made.status_code == 200, made.text
        video_id = made.json()["id"]
        got = client.get(f"/v1/videos/{video_id}/content", params={"variant": "input_reference"})
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "image/png"
        sent = np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))
        assert sent.shape == (16, 16, 3) and tuple(sent[0, 0]) == (200, 10, 10)

        theirs = client.get(
            f"/v1/videos/{video_id}/content",
            params={"variant": "input_reference"},
            headers={"Authorization": f"Bearer {other}"},
        )
        assert theirs.status_code == 404 and theirs.json()["error"]["param"] == "video_id"

        plain = client.post("/v1/videos", json={"prompt": "a red ball", **FAST}).json()["id"]
        none = client.get(f"/v1/videos/{plain}/content", params={"variant": "input_reference"})
        assert none.status_code == 404, none.text
        error = none.json()["error"]
        assert (
            error["param"] == "variant"
            and error["code"] == "no_input_reference"
            and "input_reference" in error["message"]
        )
        schema = client.get("/openapi.json").json()["paths"]["/v1/videos/{video_id}/content"]["get"]
        variant = next(p for p in schema["parameters"] if p["name"] == "variant")
        assert "input_reference" in variant["schema"]["pattern"]


def test_an_image_outside_the_services_inputs_is_never_served_nor_deleted(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, workers=0)
    cfg.ensure_dirs()
    store = Store(cfg.db_path)
    key = store.create_key("a")[1]
    own = tmp_path / "mine.png"  # an MCP caller's own file, named by path in the job's request
    own.write_bytes(_png((1, 2, 3)))
    key_id = store.authenticate(key)
    assert key_id is not None
    job = store.submit_job(owner=key_id, request={"prompt": "p", "image": str(own)}, summary={})
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        got = client.get(f"/v1/videos/{job.id}/content", params={"variant": "input_reference"})
        assert got.status_code == 404 and got.json()["error"]["param"] == "variant"
        assert client.delete(f"/v1/videos/{job.id}").status_code == 200
    assert own.is_file(), "deleting the job must not delete the caller's own image"


def test_the_last_frame_and_each_reference_come_back_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a reload the page fetches a job's last frame and reference images to run it again, as the start image."""
    monkeypatch.setenv("FAL_KEY", "unused")  # the reference job is only queued (no workers): nothing is sent
    cfg = make_config(tmp_path, workers=0)
    cfg.ensure_dirs()
    store = Store(cfg.db_path)
    key = store.create_key("a")[1]
    colors = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]

    def color_of(got: object) -> tuple[int, ...]:
        assert got.status_code == 200, got.text  # type: ignore[attr-defined]
        return tuple(np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))[0, 0])  # type: ignore[attr-defined]

    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        fields = {"prompt": "a red ball", **{k: str(v) for k, v in FAST.items()}}
        ends = client.post(
            "/v1/videos",
            data=fields,
            files=[
                ("input_reference", ("a.png", _png(colors[0]), "image/png")),
                ("last_image", ("b.png", _png(colors[1]), "image/png")),
            ],
        )
        assert ends.status_code == 200, ends.text
        url = f"/v1/videos/{ends.json()['id']}/content"
        assert color_of(client.get(url, params={"variant": "input_reference"})) == colors[0]
        assert color_of(client.get(url, params={"variant": "last_image"})) == colors[1]
        none = client.get(url, params={"variant": "reference"})
        assert none.status_code == 404 and none.json()["error"]["code"] == "no_reference", none.text

        refs = client.post(
            "/v1/videos",
            data={"prompt": "a red ball", "model": "fal"},
            files=[("references", (f"r{i}.png", _png(c), "image/png")) for i, c in enumerate(colors[1:])],
        )
        assert refs.status_code == 200, refs.text
        url = f"/v1/videos/{refs.json()['id']}/content"
        assert [color_of(client.get(url, params={"variant": "reference", "index": i})) for i in (0, 1)] == colors[1:]
        past = client.get(url, params={"variant": "reference", "index": 2})
        assert past.status_code == 404 and "reference 2" in past.json()["error"]["message"]
        assert client.get(url, params={"variant": "last_image"}).status_code == 404
        bad = client.get(url, params={"variant": "reference", "index": -1})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "index", bad.text
