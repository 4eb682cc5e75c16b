"""Security basics: API keys (R10), tenant isolation, rate limits and queue bounds (429), body limits (413) and
uploaded images (R11)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from conftest import make_config
from fastapi.testclient import TestClient

from kinema.errors import InvalidRequest
from kinema.service.app import create_app
from kinema.service.security import check_image
from kinema.service.store import Store

BODY = {"prompt": "a red ball bouncing on green grass", "model": "builtin", "steps": 2}


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries almost no data (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _image(fmt: str, size=(24, 16)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def svc(tmp_path):
    cfg = make_config(tmp_path, workers=0, submit_rate=(0, 0), max_body_bytes=200_000, max_json_bytes=50_000)
    store = Store(cfg.db_path)
    ids_keys = [store.create_key(n) for n in ("a", "b")]
    with TestClient(create_app(cfg, store=store)) as client:
        yield client, store, ids_keys


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_api_key_required(svc) -> None:
    client, store, [(key_id, key), _] = svc
    assert client.get("/v1/videos").status_code == 401
    bad = client.get("/v1/videos", headers=_auth("kin_not-a-key"))
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
    in_url = client.get("/v1/videos", params={"api_key": key})
    assert in_url.status_code == 401 and in_url.json()["error"]["code"] == "key_in_url"
    assert client.get("/v1/videos", headers=_auth(key)).status_code == 200
    assert store.revoke_key(key_id)
    assert client.get("/v1/videos", headers=_auth(key)).status_code == 401
    assert client.get("/healthz").status_code == 200  # liveness needs no key


def test_another_keys_job_is_404(svc) -> None:
    client, _store, [(_, key_a), (_, key_b)] = svc
    vid = client.post("/v1/videos", json=BODY, headers=_auth(key_a)).json()["id"]
    for method, path in (("GET", ""), ("GET", "/content"), ("GET", "/events"), ("POST", "/cancel"), ("DELETE", "")):
        r = client.request(method, f"/v1/videos/{vid}{path}", headers=_auth(key_b))
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "not_found"
    assert client.get("/v1/videos", headers=_auth(key_b)).json()["data"] == []
    assert client.get(f"/v1/videos/{vid}", headers=_auth(key_a)).status_code == 200


def test_body_over_the_limit_is_413(svc) -> None:
    client, store, [(_, key), _] = svc
    big = {**BODY, "negative_prompt": "x" * 60_000}
    r = client.post("/v1/videos", json=big, headers=_auth(key))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def stream():  # no Content-Length: the limit is enforced while reading
        yield b'{"prompt": "' + b"y" * 30_000
        yield b"z" * 30_000 + b'"}'

    r = client.post("/v1/videos", content=stream(), headers={**_auth(key), "Content-Type": "application/json"})
    assert r.status_code == 413
    files = {"input_reference": ("big.png", b"\0" * 300_000, "image/png")}
    r = client.post("/v1/videos", data={"prompt": "p"}, files=files, headers=_auth(key))
    assert r.status_code == 413
    assert store.queue_depth() == 0


def test_decompression_bomb_and_wrong_types_are_refused(svc) -> None:
    client, store, [(_, key), _] = svc
    bomb = _png_header_only(30000, 30000)
    r = client.post(
        "/v1/videos",
        data={"prompt": "p", "model": "builtin"},
        files={"input_reference": ("bomb.png", bomb, "image/png")},
        headers=_auth(key),
    )
    assert r.status_code == 422 and "decompression bomb" in r.json()["error"]["message"]
    gif = _image("GIF")
    r = client.post(
        "/v1/videos", data={"prompt": "p"}, files={"input_reference": ("a.png", gif, "image/png")}, headers=_auth(key)
    )
    assert r.status_code == 422 and "accepted type" in r.json()["error"]["message"]
    assert store.queue_depth() == 0


def test_uploaded_images_are_reencoded(svc, tmp_path) -> None:
    client, store, [(_, key), _] = svc
    jpeg = _image("JPEG") + b"trailing bytes that are not part of the image"
    r = client.post(
        "/v1/videos",
        data={"prompt": "p", "model": "builtin", "steps": "2"},
        files={"input_reference": ("x.bin", jpeg, "application/octet-stream")},
        headers=_auth(key),
    )
    assert r.status_code == 200, r.text
    stored = store.get(r.json()["id"]).request["image"]
    data = open(stored, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"trailing" not in data


def test_check_image_limits() -> None:
    with pytest.raises(InvalidRequest, match="decompression bomb|at most"):
        check_image(_png_header_only(9000, 9000), max_pixels=10_000_000, max_bytes=10**6)
    with pytest.raises(InvalidRequest, match="corrupt|truncated"):
        png = _image("PNG")
        check_image(png[: len(png) // 2], max_pixels=10**6, max_bytes=10**6)
    assert check_image(_image("WEBP"), max_pixels=10**6, max_bytes=10**6)[:4] == b"\x89PNG"


def test_rate_limit_and_full_queue_answer_429(tmp_path) -> None:
    cfg = make_config(tmp_path, workers=0, submit_rate=(0.5, 2), max_queued=3)
    store = Store(cfg.db_path)
    key = store.create_key("a")[1]
    with TestClient(create_app(cfg, store=store), headers=_auth(key)) as client:
        codes = [client.post("/v1/videos", json=BODY).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = client.post("/v1/videos", json=BODY)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error"
    cfg2 = make_config(tmp_path / "b", workers=0, max_queued=2)
    store2 = Store(cfg2.db_path)
    key2 = store2.create_key("a")[1]
    with TestClient(create_app(cfg2, store=store2), headers=_auth(key2)) as client:
        codes = [client.post("/v1/videos", json=BODY).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert client.post("/v1/videos", json=BODY).json()["error"]["code"] == "queue_full"


def test_bad_input_names_the_field(svc) -> None:
    client, _store, [(_, key), _] = svc
    cases = [
        ({"prompt": ""}, "prompt"),
        ({**BODY, "size": "1280x720"}, "size"),
        ({**BODY, "model": "nope"}, "model"),
        ({**BODY, "num_frames": 17}, "num_frames"),
        ({**BODY, "colour": "red"}, "colour"),
        ({**BODY, "seconds": "soon"}, "seconds"),
    ]
    for body, param in cases:
        r = client.post("/v1/videos", json=body, headers=_auth(key))
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert err["param"] == param and err["message"].startswith(param), err
        assert err["type"] == "invalid_request_error"


def test_keys_cli_and_no_auth_only_on_loopback(tmp_path) -> None:
    from typer.testing import CliRunner

    from kinema.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--name", "ci", "--data-dir", str(tmp_path), "--json"])
    assert made.exit_code == 0, made.output
    import json

    secret = json.loads(made.stdout)["key"]
    listed = runner.invoke(app, ["keys", "list", "--data-dir", str(tmp_path), "--json"])
    assert secret not in listed.stdout and json.loads(listed.stdout)["keys"][0]["name"] == "ci"
    assert secret not in (tmp_path / "kinema.sqlite3").read_bytes().decode("latin-1")
    key_id = json.loads(made.stdout)["id"]
    assert runner.invoke(app, ["keys", "revoke", key_id, "--data-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", key_id, "--data-dir", str(tmp_path)]).exit_code == 2
    r = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "serve", "--host", "0.0.0.0", "--no-auth", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "loopback" in r.stderr


def test_seconds_accepts_numbers_and_names_itself_in_errors(svc) -> None:
    client, _store, [(_, key), _] = svc
    ok = client.post("/v1/videos", json={**BODY, "seconds": 2}, headers=_auth(key))
    assert ok.status_code == 200 and ok.json()["seconds"] == "2"
    for bad in ("inf", "-1", "0"):
        r = client.post("/v1/videos", json={**BODY, "seconds": bad}, headers=_auth(key))
        assert r.status_code == 400 and r.json()["error"]["param"] == "seconds", r.text


def test_unusable_backend_is_refused_at_submit(svc, monkeypatch: pytest.MonkeyPatch) -> None:
    client, store, [(_, key), _] = svc
    monkeypatch.setenv("KINEMA_EXTRA_BACKENDS", "")
    from kinema.backends import register_backend
    from kinema.backends.base import Availability, BaseBackend

    class Offline(BaseBackend):
        name = "offline-test"

        def availability(self) -> Availability:
            return Availability.no("API key missing: set OFFLINE_TEST_KEY")

    register_backend("offline-test", Offline)
    r = client.post("/v1/videos", json={"prompt": "p", "model": "offline-test"}, headers=_auth(key))
    assert r.status_code == 400 and r.json()["error"]["code"] == "backend_unavailable"
    assert "OFFLINE_TEST_KEY" in r.json()["error"]["message"] and store.queue_depth() == 0
