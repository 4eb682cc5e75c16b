"""``kinema serve`` as a real process: binds, answers without a key on loopback with --no-auth, stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx

from conftest import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_no_auth_on_loopback_then_sigterm(tmp_path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "kinema.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path),
           "--workers", "0", "--no-auth", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    try:
        wait_for(up, timeout=60)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        r = httpx.post(url + "/v1/videos", json={"prompt": "a red ball", "model": "builtin"})
        assert r.status_code == 200 and r.json()["status"] == "queued"
        assert httpx.get(url + "/healthz").json()["queued"] == 1
        assert httpx.get(url + "/openapi.json").json()["info"]["title"] == "Kinema job service"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says "terminated by SIGTERM"
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    assert (tmp_path / "kinema.sqlite3").is_file() and (tmp_path / "outputs").is_dir()
