"""``kinema mcp`` over its two transports, each driven by the ``mcp`` SDK's own client against a real process: stdio
(what desktop assistants launch) and streamable HTTP (``--http``). Each makes one tiny video with progress and reads
its thumbnail back as an image."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp.client import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from kinema.cli import app  # noqa: E402

TINY = {"num_frames": 16, "num_inference_steps": 2, "seed": 5}


async def _generate_and_look(client: Client) -> tuple[dict[str, Any], list[float], Image.Image]:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    result = await client.call_tool(
        "generate_video", {"prompt": "a kite rises over a beach, tilt-up", **TINY}, progress_callback=on_progress
    )
    assert not result.is_error, result.content
    video = result.structured_content
    thumb = (await client.read_resource(video["resources"]["thumbnail"])).contents[0]
    assert thumb.mime_type == "image/png"
    return video, progress, Image.open(io.BytesIO(base64.b64decode(thumb.blob)))


def _check(video: dict[str, Any], progress: list[float], image: Image.Image) -> None:
    assert video["status"] == "completed" and video["seed"] == 5
    assert progress and progress[-1] == 100
    assert image.format == "PNG" and image.size == (128, 128)


def test_stdio(tmp_path: Path) -> None:
    command = ["-m", "kinema", "mcp", "--data-dir", str(tmp_path / "data")]
    params = StdioServerParameters(command=sys.executable, args=command, env=dict(os.environ))

    async def main() -> tuple[dict[str, Any], list[float], Image.Image]:
        async with Client(params) as client:
            return await _generate_and_look(client)

    _check(*anyio.run(main))
    assert (tmp_path / "data" / "kinema.sqlite3").is_file()  # the job service's store, in the data dir given


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_streamable_http(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kinema", "mcp", "--http", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until it listens
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "kinema mcp --http did not start listening"
                time.sleep(0.2)

        async def main() -> tuple[dict[str, Any], list[float], Image.Image]:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                return await _generate_and_look(client)

        _check(*anyio.run(main))
    finally:
        proc.terminate()
        proc.wait(30)


def test_http_is_refused_on_a_non_loopback_address(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["mcp", "--http", "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--host: must be a loopback address" in result.output and "127.0.0.1" in result.output
    assert not (tmp_path / "kinema.sqlite3").exists()  # refused before anything was opened
