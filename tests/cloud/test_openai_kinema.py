"""The openai (/v1/videos) backend pointed at a real Kinema server (`kinema serve` in a subprocess): it takes the
server's models and what they accept from `GET /v1/models`, and asks for a key only when the server wants one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import kinema
from kinema.errors import BackendUnavailable

pytest.importorskip("fastapi")
pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

PROMPT = "a red ball bouncing on green grass"


@dataclass
class KinemaServer:
    url: str
    key: str | None


def _serve(data: Path, *, auth: bool, workers: int) -> Iterator[KinemaServer]:
    from kinema.service.config import ServiceConfig
    from kinema.service.store import Store

    config = ServiceConfig(data_dir=data)
    config.ensure_dirs()
    key = Store(config.db_path).create_key("openai-backend-tests")[1] if auth else None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    # the server must not point its own openai backend at itself: its model listing would ask itself
    env = {k: v for k, v in os.environ.items() if k not in ("KINEMA_OPENAI_VIDEOS_BASE_URL", "OPENAI_API_KEY")}
    args = [
        sys.executable,
        "-m",
        "kinema",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    if not auth:
        args.append("--no-auth")
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("kinema serve did not start:\n" + (data / "server.log").read_text())
            time.sleep(0.1)
        yield KinemaServer(url=url + "/v1", key=key)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KinemaServer]:
    """A Kinema server started with --no-auth, with a worker."""
    yield from _serve(tmp_path_factory.mktemp("kinema-noauth"), auth=False, workers=1)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KinemaServer]:
    """A Kinema server that wants a key (no worker: these tests only plan)."""
    yield from _serve(tmp_path_factory.mktemp("kinema-auth"), auth=True, workers=0)


def _openai() -> kinema.BackendInfo:
    return {b.name: b for b in kinema.list_backends()}["openai"]


def test_no_key_no_model_against_a_no_auth_kinema_server(
    open_server: KinemaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "API key missing: set OPENAI_API_KEY" about its own environment, and without --model asked for
    sora-2 at 1280x720, which a Kinema server refuses."""
    monkeypatch.setenv("KINEMA_OPENAI_VIDEOS_BASE_URL", open_server.url)
    listed = _openai()
    assert listed.usable, listed.reason
    plan = kinema.plan(kinema.VideoRequest(prompt=PROMPT, backend="openai"))
    p = plan.params
    assert (p.model, p.width, p.height, p.num_frames, p.fps) == ("builtin", 128, 128, 16, 8.0)
    # the server's frame rule: 3 s is rounded to 28 frames here, and the server makes exactly that
    result = kinema.run(
        kinema.VideoRequest(prompt=PROMPT, backend="openai", duration=3.5, options={"poll_interval": 0.05})
    )
    assert result.video.frames.shape == (28, 128, 128, 3)
    assert result.recipe["backend"] == "openai" and result.recipe["model"] == "builtin"


def test_a_server_that_wants_a_key_is_named_with_its_setting(
    keyed_server: KinemaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_OPENAI_VIDEOS_BASE_URL", keyed_server.url)
    listed = _openai()
    assert not listed.usable
    reason = listed.reason or ""
    assert keyed_server.url in reason and "OPENAI_API_KEY" in reason and "401" in reason
    assert "KINEMA_OPENAI_VIDEOS_BASE_URL" in reason and "kinema keys create" in reason
    with pytest.raises(BackendUnavailable) as info:
        kinema.plan(kinema.VideoRequest(prompt=PROMPT, backend="openai"))
    assert keyed_server.url in info.value.message


def test_the_servers_models_and_sizes_are_planned(keyed_server: KinemaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --model it asked a Kinema server for sora-2 at 1280x720, which the server refused."""
    monkeypatch.setenv("KINEMA_OPENAI_VIDEOS_BASE_URL", keyed_server.url)
    assert keyed_server.key is not None
    monkeypatch.setenv("OPENAI_API_KEY", keyed_server.key)
    assert _openai().usable
    p = kinema.plan(kinema.VideoRequest(prompt=PROMPT, backend="openai")).params
    assert (p.model, p.width, p.height) == ("builtin", 128, 128)
    with pytest.raises(kinema.InvalidRequest) as refused:  # refused here, before anything is sent
        kinema.plan(kinema.VideoRequest(prompt=PROMPT, backend="openai", width=1280, height=720))
    assert refused.value.field in ("size", "width") and "128x128" in str(refused.value)


def test_an_unreachable_server_without_a_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    monkeypatch.setenv("KINEMA_OPENAI_VIDEOS_BASE_URL", url)
    listed = _openai()
    assert not listed.usable
    assert url in (listed.reason or "") and "could not be reached" in (listed.reason or "")
    assert "OPENAI_API_KEY" in (listed.reason or "")
