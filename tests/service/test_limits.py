"""Slow and oversized requests, and credentials in logged URLs, against a real ``kinema serve`` process (uvicorn with
httptools, as deployed) spoken to over raw sockets: a huge header gets 431 without costing the server memory, slow
headers and a slow body get 408 within the configured time, and a key in a query string never reaches the access
log."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import wait_for

pytest.importorskip("httptools")

HEADER_LIMIT = 8192
TIMEOUT = 1.0


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("limits")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "kinema.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
        "--workers",
        "0",
        "--no-auth",
        "--access-log",
        "--max-header-bytes",
        str(HEADER_LIMIT),
        "--header-timeout",
        str(TIMEOUT),
        "--body-timeout",
        str(TIMEOUT),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    try:
        wait_for(up, timeout=60)
        assert proc.poll() is None, log.read_text()
        yield Served(proc, port, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _read_answer(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or ``timeout``), and the seconds that took."""
    sock.settimeout(timeout)
    start, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data, time.monotonic() - start


def _status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_huge_header_gets_431_and_costs_no_memory(served: Served) -> None:
    before = served.rss_kib()
    with served.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0  # the server answers at once and discards the rest unread while the client sends it
        try:
            while sent < 32 * 2**20:  # 32 MB, as in the report; the server stops reading long before
                sock.sendall(b"a" * 2**16)
                sent += 2**16
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        answer, _ = _read_answer(sock, 5)
    assert _status(answer) == 431, answer[:200]
    assert b"request_header_too_large" in answer
    assert served.rss_kib() - before < 4096  # no megabytes kept for the header
    assert httpx.get(f"http://127.0.0.1:{served.port}/healthz").status_code == 200


def test_headers_just_under_the_limit_pass(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (HEADER_LIMIT - 200) + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        answer, _ = _read_answer(sock, 5)
    assert _status(answer) == 200, answer[:200]


def test_slow_headers_get_408(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        answer, took = _read_answer(sock, 10)
    assert _status(answer) == 408, answer[:200]
    assert took < TIMEOUT + 2


@pytest.mark.parametrize("path", ["/v1/videos", "/healthz"])  # a route that reads its body, and one that does not
def test_slow_body_gets_408_within_the_timeout(served: Served, path: str) -> None:
    with served.connect() as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        answer, took = _read_answer(sock, 10)
    assert took < TIMEOUT + 3, took  # closed, not held
    if path == "/v1/videos":
        assert _status(answer) == 408, answer[:300]
        assert b"request_timeout" in answer


def test_many_slow_bodies_are_all_closed(served: Served) -> None:
    socks = [served.connect() for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(
                b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
        time.sleep(TIMEOUT + 2)
        statuses = [_status(_read_answer(sock, 3)[0]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert statuses == [408] * 50


def test_a_key_in_the_query_string_never_reaches_the_access_log(served: Served) -> None:
    secret = "kin_" + "S3cr3tK3yV4lu3" * 3
    base = f"http://127.0.0.1:{served.port}"
    assert httpx.get(f"{base}/v1/videos?api_key={secret}&limit=2").status_code == 401
    assert httpx.get(f"{base}/v1/videos?access_token=tok123456789&x={secret}").status_code == 401
    assert httpx.get(f"{base}/healthz?signature=abcdef0123").status_code == 200
    assert httpx.get(f"{base}/v1/models/{secret}").status_code in (401, 404)

    def logged() -> str:
        text = served.log.read_text()
        return text if "/v1/models/" in text else ""

    text = wait_for(logged, timeout=10)
    assert "GET /v1/videos?api_key=[REDACTED]&limit=2" in text
    assert "access_token=[REDACTED]" in text and "signature=[REDACTED]" in text
    assert secret not in text and "S3cr3tK3y" not in text and "tok123456789" not in text
    assert "abcdef0123" not in text


@pytest.mark.parametrize("ctype", ["multipart/form-data; boundary=b", "application/json"])
def test_the_app_answers_408_for_a_body_it_waits_for(tmp_path: Path, ctype: str) -> None:
    """The app's own deadline (any server, TestClient included): a route reading its body gets 408, not a hang."""
    import asyncio

    from kinema.service.app import create_app
    from kinema.service.config import ServiceConfig

    app = create_app(ServiceConfig(data_dir=tmp_path, workers=0, auth=False, body_timeout=0.3))
    sent: list[dict[str, object]] = []

    async def call() -> None:
        chunks = [{"type": "http.request", "body": b"--b\r\n" if "multipart" in ctype else b"{", "more_body": True}]

        async def receive() -> dict[str, object]:
            if chunks:
                return chunks.pop()
            await asyncio.sleep(3600)  # the client stalls
            raise AssertionError("unreachable")

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        headers = [(b"content-type", ctype.encode()), (b"content-length", b"100")]
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/videos",
            "raw_path": b"/v1/videos",
            "query_string": b"",
            "headers": headers,
            "http_version": "1.1",
            "scheme": "http",
            "server": ("t", 80),
            "client": ("c", 1),
            "root_path": "",
            "app": app,
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=5)

    began = time.monotonic()
    asyncio.run(call())
    assert sent[0]["status"] == 408 and time.monotonic() - began < 2
    assert b"request_timeout" in sent[1]["body"]  # type: ignore[operator]
