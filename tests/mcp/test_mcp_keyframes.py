"""Timed keyframes through the MCP server's generate_video (issue 27): the schema an assistant sees, a job that puts
each image on its frame, and refusals that name ``keyframes[i]`` as the request does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp.client import Client  # noqa: E402
from PIL import Image  # noqa: E402

from kinema.mcp.jobs import Jobs  # noqa: E402
from kinema.mcp.server import KinemaMCP  # noqa: E402

TINY = {"num_frames": 16, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KinemaMCP]:
    jobs = Jobs.open(tmp_path_factory.mktemp("mcp") / "data", workers=1, heartbeat_seconds=0.3, reap_interval=0.3)
    jobs.start()
    try:
        yield KinemaMCP(jobs)
    finally:
        jobs.close()


@pytest.fixture
def png(tmp_path: Path) -> str:
    path = tmp_path / "mid.png"
    Image.fromarray(np.full((64, 64, 3), (230, 40, 40), np.uint8)).save(path)
    return str(path)


def call(server: KinemaMCP, tool: str, arguments: dict[str, Any]) -> Any:
    async def main() -> Any:
        async with Client(server.server) as client:
            return await client.call_tool(tool, arguments)

    return anyio.run(main)


def test_the_schema_describes_keyframes_as_times_and_paths(server: KinemaMCP) -> None:
    async def main() -> Any:
        async with Client(server.server) as client:
            return await client.list_tools()

    tools = {t.name: t for t in anyio.run(main).tools}
    prop = tools["generate_video"].input_schema["properties"]["keyframes"]
    assert prop["type"] == "array" and prop["maxItems"] == 16 and "seconds" in prop["description"]
    item = prop["items"]
    assert item["required"] == ["time", "image"] and item["additionalProperties"] is False
    assert item["properties"]["time"] == {"type": "number", "minimum": 0, "description": "Seconds from the clip's "
                                          "start."}  # fmt: skip
    assert item["properties"]["image"]["type"] == "string"
    assert "$ref" not in json.dumps(prop)  # every part spelled out: the Keyframe model's $defs are not carried


def test_generate_video_takes_keyframes(server: KinemaMCP, png: str) -> None:
    result = call(server, "generate_video", {"prompt": "a red ball bouncing on green grass", "seed": 3, **TINY,
                                             "keyframes": [{"time": 1, "image": png}]})  # fmt: skip
    assert not result.is_error, result.content
    video = result.structured_content
    assert video["status"] == "completed" and video["recipe"]["mode"] == "keyframes"
    assert [(k["time"], k["frame"]) for k in video["recipe"]["keyframes"]] == [(1.0, 8)]
    assert video["recipe"]["keyframes"][0]["image"]["name"] == "mid.png"
    assert any("keyframes:" in w for w in video["recipe"]["warnings"])


@pytest.mark.parametrize(
    ("keyframes", "extra", "field", "words"),
    [
        ([{"time": 1, "image": "PNG"}, {"time": 0.5, "image": "PNG"}], {}, "keyframes[1].time", "not after"),
        ([{"time": 1, "image": "/no/such.png"}], {}, "keyframes[0].image", "file not found"),
        ([{"time": 2.5, "image": "PNG"}], {}, "keyframes[0].time", "past the end of the clip"),
        ([{"time": 1, "image": "PNG"}], {"backend": "kling"}, "keyframes", "does not take keyframes at given times"),
    ],
)
def test_bad_keyframes_are_tool_errors_naming_the_field(
    server: KinemaMCP, png: str, keyframes: list[dict[str, Any]], extra: dict[str, Any], field: str, words: str
) -> None:
    given = [{**k, "image": png if k["image"] == "PNG" else k["image"]} for k in keyframes]
    result = call(server, "generate_video", {"prompt": "a ball", **TINY, **extra, "keyframes": given})
    assert result.is_error
    message = result.content[0].text
    assert message.startswith(f"{field}: ") and words in message, message
