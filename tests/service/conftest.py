"""Fixtures of the job-service tests: a config on a temp data dir, an app with its lifespan, an API key."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from kinema.service.app import create_app  # noqa: E402
from kinema.service.config import ServiceConfig  # noqa: E402
from kinema.service.store import Store  # noqa: E402

HERE = Path(__file__).parent
#: a quick built-in job: the tiny random-weight model, 2 denoising steps
FAST = {"model": "builtin", "steps": 2, "seed": 1}


def make_config(tmp_path: Path, **overrides: Any) -> ServiceConfig:
    base: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        workers=1,
        lease_seconds=3.0,
        heartbeat_seconds=0.3,
        reap_interval=0.3,
        shutdown_grace=5.0,
        webhook_secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        webhook_timeout=5.0,
        warm_up=False,  # each pool would load the built-in model in the background: CPU the tests share
    )
    base.update(overrides)
    return ServiceConfig(**base)


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    return make_config(tmp_path)


@pytest.fixture
def api_key(config: ServiceConfig) -> str:
    config.ensure_dirs()
    return Store(config.db_path).create_key("test")[1]


@pytest.fixture
def client(config: ServiceConfig, api_key: str) -> Iterator[TestClient]:
    with TestClient(create_app(config), headers={"Authorization": f"Bearer {api_key}"}) as c:
        yield c


def wait_for(fn: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``fn`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {fn}")


def wait_status(
    client: TestClient,
    video_id: str,
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
    timeout: float = 60.0,
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/v1/videos/{video_id}").json()
        return body if body.get("status") in statuses else None

    return wait_for(done, timeout)


class LiveServer:
    """The app served by uvicorn on a real loopback socket, in a thread."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=30, interval=0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture
def live(config: ServiceConfig) -> Iterator[LiveServer]:
    with LiveServer(create_app(config)) as server:
        yield server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server (tests/service/pg.py), started once per session on a Unix socket; skipped
    where PostgreSQL or psycopg is missing. Use ``pg_server.new_database()`` for a fresh database per test."""
    import pg

    reason = pg.why_not()
    if reason:
        pytest.skip(reason)
    server = pg.start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real MP4 for a provider fake to serve as its result."""
    import numpy as np

    import kinema

    frames = np.zeros((8, 32, 32, 3), np.uint8)
    frames[:, :, :, 1] = np.arange(8, dtype=np.uint8)[:, None, None] * 30
    path = tmp_path_factory.mktemp("fake-video") / "result.mp4"
    kinema.Video(frames, fps=8).save(path)
    return path.read_bytes()
