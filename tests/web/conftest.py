"""Fixtures of the page tests: `kinema serve` in a subprocess on a free loopback port, and Debian's Chromium driven
headless by Playwright (the system browser; `playwright install` is never needed).

The server uses the tiny random-weight built-in model (KINEMA_BUILTIN_WEIGHTS from the root conftest.py), and the
tests ask for 2 denoising steps, so a generation takes about a second.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

import httpx  # noqa: E402

CHROMIUM = os.environ.get("KINEMA_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: generous for a loaded 2-core machine; a built-in job with 2 steps takes about a second
JOB_TIMEOUT_MS = 90_000

pytestmark = pytest.mark.browser


@dataclass
class Server:
    url: str
    key: str
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def make_video(self, **fields: Any) -> dict[str, Any]:
        """A completed built-in job made through the API (for tests about the gallery)."""
        with self.api() as c:
            r = c.post("/v1/videos", json={"prompt": "red ball", "model": "builtin", "steps": 2, **fields})
            assert r.status_code == 200, r.text
            return wait_job(c, r.json()["id"])


def wait_job(client: httpx.Client, video_id: str, timeout: float = JOB_TIMEOUT_MS / 1000) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/videos/{video_id}").json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{video_id} did not finish in {timeout}s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} is missing: run .ci/system-packages (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, builtin_weights: Path) -> Iterator[Server]:
    from kinema.service.config import ServiceConfig
    from kinema.service.store import Store

    data = tmp_path_factory.mktemp("web-data")
    config = ServiceConfig(data_dir=data)
    config.ensure_dirs()
    key = Store(config.db_path).create_key("browser-tests")[1]
    port = _free_port()
    # the service tests' slow backend too: its steps take a known time, so the page can be seen counting them
    service_tests = str(Path(__file__).resolve().parent.parent / "service")
    env = {
        **os.environ,
        "KINEMA_BUILTIN_WEIGHTS": str(builtin_weights),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "KINEMA_EXTRA_BACKENDS": "slow=slow_backend:SlowBackend",
        "PYTHONPATH": os.pathsep.join(filter(None, [service_tests, os.environ.get("PYTHONPATH")])),
    }
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
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
            "1",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise AssertionError("kinema serve did not start:\n" + (data / "server.log").read_text(errors="replace"))
        time.sleep(0.1)
    try:
        yield Server(url=url, key=key, data_dir=data, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Visit:
    """A page in a fresh browser context, with every request it made recorded."""

    page: Any
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def foreign_requests(self, server_url: str) -> list[str]:
        own = urlsplit(server_url).netloc
        return [u for u in self.requests if not u.startswith(("data:", "blob:")) and urlsplit(u).netloc != own]


@pytest.fixture
def open_page(browser: Any, server: Server) -> Iterator[Callable[..., Visit]]:
    """open_page(viewport=DESKTOP, with_key=True): the page at "/", signed in (the key already in localStorage)."""
    contexts: list[Any] = []

    def open_(viewport: dict[str, int] | None = None, with_key: bool = True) -> Visit:
        context = browser.new_context(viewport=viewport or DESKTOP, device_scale_factor=1)
        contexts.append(context)
        if with_key:
            context.add_init_script(f"localStorage.setItem('kinema.apiKey', {server.key!r});")
        page = context.new_page()
        page.set_default_timeout(JOB_TIMEOUT_MS)
        visit = Visit(page)
        page.on("request", lambda r: visit.requests.append(r.url))
        page.on("console", lambda m: visit.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: visit.console_errors.append(str(e)))
        page.goto(server.url + "/")
        if with_key:
            page.wait_for_selector("body[data-ready='1']")
        return visit

    yield open_
    for c in contexts:
        c.close()


def update_screenshots() -> bool:
    return os.environ.get("KINEMA_UPDATE_SCREENSHOTS") == "1"


def save_screenshot(page: Any, name: str, tmp: Path) -> Path:
    """A screenshot in tmp, copied to docs/screenshots/ only with KINEMA_UPDATE_SCREENSHOTS=1 (CI stays clean)."""
    shot = tmp / f"{name}.png"
    page.screenshot(path=str(shot), full_page=False)
    if update_screenshots():
        target = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    return shot
