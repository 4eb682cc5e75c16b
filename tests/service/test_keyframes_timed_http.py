"""Timed keyframes over HTTP (issue 27): ``POST /v1/videos`` with ``keyframes`` (JSON: ``[{"time", "image"}]``
with image URLs as ``input_reference`` takes them; multipart: ``keyframes`` files or URL fields, each with its
``keyframe_times`` field, paired in order), checked at submit as ``kinema.plan`` checks them and run by the
built-in backend.

One service (one worker) serves the module: each built-in job takes about a second on 2 cores.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST, make_config, wait_status
from fastapi.testclient import TestClient
from PIL import Image

import kinema
from kinema.service.app import create_app
from kinema.service.store import Store

PROMPT = "a red ball bouncing on green grass"
RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


def _png(color: tuple[int, int, int], size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), color, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _data_url(color: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(color)).decode()


@dataclass
class Service:
    client: TestClient
    config: Any

    def inputs(self) -> set[str]:
        return {p.name for p in self.config.inputs_dir.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("keyframes")
    cfg = make_config(tmp)
    cfg.ensure_dirs()
    key = Store(cfg.db_path).create_key("a")[1]
    with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
        yield Service(client, cfg)


def _error(response: Any, status: int, param: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    return error


def _completed(svc: Service, response: Any, tmp: Path) -> tuple[dict[str, Any], np.ndarray]:
    assert response.status_code == 200, response.text
    done = wait_status(svc.client, response.json()["id"])
    assert done["status"] == "completed", done
    path = tmp / f"{done['id']}.mp4"
    path.write_bytes(svc.client.get(f"/v1/videos/{done['id']}/content").content)
    return done, kinema.Video.open(path).frames.astype(np.float32)


def _near(frame: np.ndarray, color: tuple[int, int, int]) -> bool:
    """A flat keyframe comes back flat through the MP4: its mean colour within a few levels of the image's."""
    return bool(np.abs(frame.mean(axis=(0, 1)) - np.array(color)).max() < 12)


def test_json_keyframes_with_image_urls(svc: Service, tmp_path: Path) -> None:
    r = svc.client.post(
        "/v1/videos",
        json={
            "prompt": PROMPT,
            **FAST,
            "keyframes": [
                {"time": 0.5, "image": _data_url(RED)},
                {"time": 1.5, "image": {"image_url": _data_url(BLUE)}},
            ],
        },
    )
    assert r.status_code == 200, r.text
    job = r.json()["id"]
    assert {f"{job}.kf0.png", f"{job}.kf1.png"} <= svc.inputs()  # checked and re-encoded at submit
    done, frames = _completed(svc, r, tmp_path)
    recipe = done["recipe"]
    assert recipe["mode"] == "keyframes" and [(k["time"], k["frame"]) for k in recipe["keyframes"]] == [
        (0.5, 4),
        (1.5, 12),
    ]
    assert recipe["keyframes"][0]["image"]["name"] == f"{job}.kf0.png" and recipe["keyframes"][0]["image"]["sha256"]
    assert _near(frames[4], RED) and _near(frames[12], BLUE)
    assert not _near(frames[8], RED) and not _near(frames[8], BLUE)
    # deleting the job takes the service's copies of its keyframe images along
    assert svc.client.delete(f"/v1/videos/{job}").status_code == 200
    assert not {f"{job}.kf0.png", f"{job}.kf1.png"} & svc.inputs()


def test_multipart_keyframes_pair_each_part_with_its_time(svc: Service, tmp_path: Path) -> None:
    # a URL as a text field and two files: the times pair with the parts in the order they were sent
    r = svc.client.post(
        "/v1/videos",
        data={
            "prompt": PROMPT,
            "steps": "2",
            "seed": "2",
            "keyframe_times": ["0.25", "1", "1.75"],
            "keyframes": _data_url(GREEN),
        },
        files=[("keyframes", ("a.png", _png(RED), "image/png")), ("keyframes", ("b.png", _png(BLUE), "image/png"))],
    )
    done, frames = _completed(svc, r, tmp_path)
    assert [k["frame"] for k in done["recipe"]["keyframes"]] == [2, 8, 14]
    # httpx sends a form's text fields before its files: the URL is the first keyframes part, then the two files
    assert _near(frames[2], GREEN) and _near(frames[8], RED) and _near(frames[14], BLUE)


def test_keyframes_are_refused_at_submit_naming_the_field(svc: Service) -> None:
    c, url = svc.client, _data_url(RED)
    before = svc.inputs()
    _error(c.post("/v1/videos", json={"prompt": "x", "keyframes": [{"time": 1}]}), 400, "keyframes[0].image")
    _error(
        c.post("/v1/videos", json={"prompt": "x", "keyframes": [{"time": -1, "image": url}]}), 400, "keyframes[0].time"
    )
    _error(
        c.post("/v1/videos", json={"prompt": "x", "keyframes": [{"time": 1, "image": url, "frame": 8}]}),
        400,
        "keyframes[0].frame",
    )
    error = _error(
        c.post(
            "/v1/videos", json={"prompt": "x", "keyframes": [{"time": 1, "image": url}, {"time": 0.5, "image": url}]}
        ),
        400,
        "keyframes[1].time",
    )
    assert "not after keyframes[0].time" in error["message"]
    error = _error(
        c.post("/v1/videos", json={"prompt": "x", "keyframes": [{"time": 3, "image": url}]}), 400, "keyframes[0].time"
    )
    assert "past the end of the clip" in error["message"]
    error = _error(
        c.post("/v1/videos", json={"prompt": "x", "input_reference": url, "keyframes": [{"time": 0, "image": url}]}),
        400,
        "keyframes[0].time",
    )
    assert "ambiguous" in error["message"]
    error = _error(
        c.post("/v1/videos", json={"prompt": "x", "model": "runway/veo3.1", "keyframes": [{"time": 1, "image": url}]}),
        400,
        "keyframes",
    )
    assert "does not take keyframes at given times" in error["message"] and "builtin" in error["message"]
    many = [{"time": i / 8, "image": url} for i in range(17)]
    _error(c.post("/v1/videos", json={"prompt": "x", "keyframes": many}), 400, "keyframes")
    # forms: one time per image, numbers only, images that decode
    one = [("keyframes", ("a.png", _png(RED), "image/png"))]
    _error(
        c.post("/v1/videos", data={"prompt": "x", "keyframe_times": ["0.5", "1"]}, files=one), 400, "keyframe_times"
    )
    _error(c.post("/v1/videos", data={"prompt": "x", "keyframe_times": "soon"}, files=one), 400, "keyframe_times[0]")
    _error(
        c.post(
            "/v1/videos",
            data={"prompt": "x", "keyframe_times": "1"},
            files=[("keyframes", ("a.png", b"not an image", "image/png"))],
        ),
        422,
        "keyframes[0].image",
    )
    assert svc.inputs() == before  # nothing kept for a refused job


def test_the_idempotency_fingerprint_covers_the_keyframe_files(svc: Service) -> None:
    c = svc.client
    data = {"prompt": PROMPT, "steps": "2", "keyframe_times": "1"}
    first = c.post(
        "/v1/videos",
        data=data,
        files=[("keyframes", ("a.png", _png(RED), "image/png"))],
        headers={"Idempotency-Key": "kf-1"},
    )
    assert first.status_code == 200, first.text
    other = c.post(
        "/v1/videos",
        data=data,
        files=[("keyframes", ("a.png", _png(BLUE), "image/png"))],
        headers={"Idempotency-Key": "kf-1"},
    )
    _error(other, 422, "Idempotency-Key")
    wait_status(c, first.json()["id"])
