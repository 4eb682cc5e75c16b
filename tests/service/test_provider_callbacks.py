"""Provider callbacks: a provider fake calls the per-job URL back and the job finishes without waiting out its poll
interval; forged callbacks (wrong token, bad signature, unknown job) are refused and change nothing; a callback is
only a hint, never the result."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: the provider fakes (tests/fakes) are shared

from conftest import LiveServer, make_config, wait_for  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from fakes.base import FakeServer  # noqa: E402
from fakes.fal import FakeFal  # noqa: E402
from fakes.kling import FakeKling  # noqa: E402
from fakes.luma import FakeLuma  # noqa: E402
from fakes.modelslab import FakeModelsLab  # noqa: E402
from fakes.pictory import FakePictory  # noqa: E402
from fakes.replicate import FakeReplicate  # noqa: E402
from kinema.service.app import create_app  # noqa: E402
from kinema.service.config import ServiceConfig  # noqa: E402
from kinema.service.store import Store  # noqa: E402

#: per provider: its fake, the environment pointing the backend at it, and a create body it accepts
PROVIDERS: dict[str, tuple[type[FakeServer], Any, dict[str, Any]]] = {
    "replicate": (
        FakeReplicate,
        lambda f: {"REPLICATE_API_TOKEN": f.key, "REPLICATE_BASE_URL": f.url},
        {"model": "replicate/minimax/video-01", "seconds": "6"},
    ),
    "fal": (
        FakeFal,
        lambda f: {"FAL_KEY": f.key, "KINEMA_FAL_BASE_URL": f.url},
        {"model": "fal/fal-ai/kling-video/v2.5-turbo/pro", "seconds": "5", "size": "1280x720"},
    ),
    "luma": (
        FakeLuma,
        lambda f: {"LUMAAI_API_KEY": f.key, "LUMAAI_BASE_URL": f.url + "/dream-machine/v1"},
        {"model": "luma/ray-2", "seconds": "5", "size": "1280x720"},
    ),
    "kling": (
        FakeKling,
        lambda f: {"KLING_ACCESS_KEY": f.key, "KLING_SECRET_KEY": f.secret, "KINEMA_KLING_BASE_URL": f.url},
        {"model": "kling/kling-v2-6", "seconds": "5", "size": "1280x720"},
    ),
    "pictory": (
        FakePictory,
        lambda f: {"PICTORY_API_KEY": f.key, "KINEMA_PICTORY_BASE_URL": f.url + "/pictoryapis"},
        {"model": "pictory/pixverse5.5", "seconds": "8"},
    ),
    "modelslab": (
        FakeModelsLab,
        lambda f: {"MODELSLAB_API_KEY": f.key, "KINEMA_MODELSLAB_BASE_URL": f.url + "/api"},
        {"model": "modelslab/cogvideox", "size": "256x256", "num_frames": 16},
    ),
}


class Service:
    """A live service (the provider must reach it over HTTP) with a public URL, a key, and one provider's fake."""

    def __init__(self, config: ServiceConfig, fake: FakeServer, provider: str) -> None:
        self.config, self.fake, self.provider = config, fake, provider
        config.ensure_dirs()
        self.store = Store(config.db_path)
        self.key = self.store.create_key("test")[1]
        self.server = LiveServer(create_app(config))
        config.public_url = self.server.url  # known once the socket is bound; read by each attempt

    def submit(self, **extra: Any) -> str:
        import httpx

        body = {"prompt": "a red fox running through fresh snow", **PROVIDERS[self.provider][2], **extra}
        resp = httpx.post(self.server.url + "/v1/videos", json=body, headers={"Authorization": f"Bearer {self.key}"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])

    def video(self, job_id: str) -> dict[str, Any]:
        import httpx

        resp = httpx.get(f"{self.server.url}/v1/videos/{job_id}", headers={"Authorization": f"Bearer {self.key}"})
        return dict(resp.json())

    def callback(self, job_id: str) -> str:
        """The callback URL the fake was given for this job."""
        task = wait_for(lambda: next((t for t in self.fake.tasks.values() if t.extra.get("webhook")), None), 10)
        url = str(task.extra["webhook"])
        assert f"/v1/provider-callbacks/{self.provider}/{job_id}?token=" in url
        return url


@pytest.fixture
def service(
    request: pytest.FixtureRequest, tmp_path: Path, video_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    provider = request.param
    fake_cls, env, _ = PROVIDERS[provider]
    fake = fake_cls(video_bytes)
    fake.finish_after = 1.0
    for var, value in env(fake).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("KINEMA_POLL_INTERVAL", "30")  # the next poll is 23-38 s away: only a callback is quicker
    monkeypatch.setenv("HOME", str(tmp_path))
    extra: dict[str, Any] = {}
    if provider == "replicate":
        extra["replicate_webhook_secret"] = fake.webhook_secret  # type: ignore[attr-defined]
    if provider == "fal":
        extra["fal_jwks"] = fake.jwks  # type: ignore[attr-defined]  # fal's JWKS URL is not reachable here
    svc = Service(make_config(tmp_path, **extra), fake, provider)
    try:
        with svc.server:
            yield svc
    finally:
        fake.close()


@pytest.mark.parametrize("service", list(PROVIDERS), indirect=True)
def test_a_provider_callback_finishes_the_job_without_waiting_for_the_next_poll(service: Service) -> None:
    start = time.monotonic()
    job_id = service.submit()
    done = wait_for(lambda: (v := service.video(job_id))["status"] in ("completed", "failed") and v, timeout=15)
    elapsed = time.monotonic() - start
    assert done["status"] == "completed", done.get("error")
    assert elapsed < 10, f"took {elapsed:.1f}s: the job waited for its 30 s poll"
    url = service.callback(job_id)
    assert (url, 204) in service.fake.webhook_calls
    assert service.fake.submissions == 1


@pytest.mark.parametrize("service", ["replicate", "fal", "luma"], indirect=True)
def test_forged_callbacks_are_refused_and_change_nothing(service: Service) -> None:
    service.fake.finish_after = 120.0  # the task runs on: nothing but a (valid) callback could make it poll early
    job_id = service.submit()
    url = service.callback(job_id)
    wait_for(lambda: service.video(job_id)["status"] == "in_progress", timeout=10)
    time.sleep(0.3)
    polls = service.fake.polls
    task = next(iter(service.fake.tasks.values()))
    base, _, token = url.partition("?token=")
    forged = {"id": task.id, "status": "succeeded", "state": "completed", "output": "https://evil.example/x.mp4"}
    assert service.fake.call_webhook(task, f"{base}?token=wrong-{token}") == 401
    assert service.fake.call_webhook(task, base) == 401
    other = base.rsplit("/", 1)[0] + "/video_000000000000000000000000"
    assert service.fake.call_webhook(task, f"{other}?token={token}") == 404
    other_provider = base.replace(f"/{service.provider}/", "/kling/" if service.provider != "kling" else "/luma/")
    assert service.fake.call_webhook(task, f"{other_provider}?token={token}") == 404
    runway = base.replace(f"/{service.provider}/", "/runway/")  # a provider Kinema takes no callbacks from
    assert service.fake.call_webhook(task, f"{runway}?token={token}") == 400
    if service.provider in ("replicate", "fal"):  # signed providers: the right token with a bad signature
        signed_other = service.fake.webhook_headers(b'{"request_id": "other", "id": "other"}')
        assert service.fake.call_webhook(task, url, body=forged, headers=signed_other) == 401  # another body's
        assert service.fake.call_webhook(task, url, headers={}) == 401  # no signature at all
    time.sleep(1.0)
    assert service.fake.polls == polls, "a refused callback made the job poll"
    video = service.video(job_id)
    assert video["status"] == "in_progress" and video["recipe"] is None


@pytest.mark.parametrize("service", ["luma"], indirect=True)
def test_a_callback_is_only_a_hint_the_poll_decides(service: Service) -> None:
    # Luma does not sign: a callback with the right token but a made-up "completed" body must not complete the job
    service.fake.finish_after = 120.0
    job_id = service.submit()
    url = service.callback(job_id)
    wait_for(lambda: service.video(job_id)["status"] == "in_progress", timeout=10)
    time.sleep(0.3)
    polls = service.fake.polls
    task = next(iter(service.fake.tasks.values()))
    lie = {"id": task.id, "state": "completed", "assets": {"video": "https://evil.example/x.mp4"}}
    assert service.fake.call_webhook(task, url, body=lie) == 204
    wait_for(lambda: service.fake.polls > polls, timeout=5)  # the hint made it poll at once...
    time.sleep(0.5)
    video = service.video(job_id)
    assert video["status"] == "in_progress"  # ...and the poll said the task still runs
    assert service.fake.downloads == 0


def test_a_callback_to_another_process_wakes_the_worker_through_the_store(
    tmp_path: Path, video_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The callback reaches an API-only process; the job runs in another (a worker): the hint goes via the store."""
    fake = FakeLuma(video_bytes)
    fake.finish_after = 1.0
    for var, value in PROVIDERS["luma"][1](fake).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("KINEMA_POLL_INTERVAL", "30")
    api_cfg = make_config(tmp_path, workers=0)
    api = Service(api_cfg, fake, "luma")
    worker_cfg = make_config(tmp_path, workers=1)
    try:
        with api.server, LiveServer(create_app(worker_cfg)):
            worker_cfg.public_url = api.server.url  # the worker makes the submit, naming the API's address
            start = time.monotonic()
            job_id = api.submit()
            done = wait_for(lambda: (v := api.video(job_id))["status"] in ("completed", "failed") and v, timeout=15)
            assert done["status"] == "completed", done.get("error")
            assert time.monotonic() - start < 10
            assert (api.callback(job_id), 204) in fake.webhook_calls
    finally:
        fake.close()


def test_no_public_url_no_callback(tmp_path: Path, video_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLuma(video_bytes)
    for var, value in PROVIDERS["luma"][1](fake).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("KINEMA_POLL_INTERVAL", "0.05")
    cfg = make_config(tmp_path)
    cfg.ensure_dirs()
    key = Store(cfg.db_path).create_key("t")[1]
    try:
        with TestClient(create_app(cfg), headers={"Authorization": f"Bearer {key}"}) as client:
            body = {"prompt": "a fox", **PROVIDERS["luma"][2]}
            job_id = client.post("/v1/videos", json=body).json()["id"]
            wait_for(lambda: client.get(f"/v1/videos/{job_id}").json()["status"] == "completed", timeout=15)
        assert all("callback_url" not in t.input for t in fake.tasks.values())
    finally:
        fake.close()


def test_fal_signatures_expire_and_name_the_problem(video_bytes: bytes) -> None:
    import json

    from kinema.errors import WebhookVerificationError
    from kinema.service.provider_callbacks import FalKeys, verify_fal

    fake = FakeFal(video_bytes)
    try:
        keys = FalKeys(fake.jwks).keys()
        body = json.dumps({"request_id": "r1"}).encode()
        headers = fake.webhook_headers(body)
        verify_fal(keys, headers, body)  # a good one passes
        with pytest.raises(WebhookVerificationError, match="tolerance"):
            verify_fal(keys, headers, body, now=time.time() + 3600)  # a replay an hour later
        with pytest.raises(WebhookVerificationError, match="no matching signature"):
            verify_fal(keys, headers, body + b" ")
        with pytest.raises(WebhookVerificationError, match="missing"):
            verify_fal(keys, {}, body)
    finally:
        fake.close()


def test_public_url_is_checked() -> None:
    from kinema.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="public_url") as err:
        ServiceConfig(data_dir="/tmp/kinema-test-public-url", public_url="ftp://example.com?x=1")
    assert err.value.field == "public_url"


def test_serve_refuses_a_bad_public_url(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kinema.cli import app

    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path), "--public-url", "kinema.example.com"])
    assert result.exit_code == 2, result.output
    assert "--public-url: 'kinema.example.com' is not a public base URL" in result.output
