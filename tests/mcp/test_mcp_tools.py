"""The MCP server's tools and resources, driven by the ``mcp`` SDK's own client connected in-process.

One server (a job store in a temp data dir, one in-process worker) serves the module: the built-in model's first
generation warms it up, later ones take a fraction of a second. Transports (stdio, streamable HTTP) are in
test_mcp_transports.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp.client import Client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from PIL import Image  # noqa: E402

from kinema.mcp.jobs import Jobs  # noqa: E402
from kinema.mcp.server import KinemaMCP  # noqa: E402
from kinema.mcp.tools import PROMPT_ADVICE, TOOLS  # noqa: E402
from kinema.request import VideoRequest  # noqa: E402

#: a quick built-in clip: the fewest frames the model makes, 2 denoising steps
TINY = {"num_frames": 16, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KinemaMCP]:
    jobs = Jobs.open(tmp_path_factory.mktemp("mcp") / "data", workers=1, heartbeat_seconds=0.3, reap_interval=0.3)
    jobs.start()
    try:
        yield KinemaMCP(jobs)
    finally:
        jobs.close()


def drive(server: KinemaMCP, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run ``body`` with a client connected to ``server``."""

    async def main() -> Any:
        async with Client(server.server) as client:
            return await body(client)

    return anyio.run(main)


def call(server: KinemaMCP, tool: str, arguments: dict[str, Any], progress: list[float] | None = None) -> Any:
    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        assert progress is not None
        progress.append(value)

    async def body(client: Client) -> Any:
        return await client.call_tool(tool, arguments, progress_callback=on_progress if progress is not None else None)

    return drive(server, body)


def read(server: KinemaMCP, uri: str) -> Any:
    """The resource's first contents; an MCP error is returned (raised, it would leave the client's task group
    wrapped in an exception group)."""

    async def body(client: Client) -> Any:
        try:
            return (await client.read_resource(uri)).contents[0]
        except MCPError as exc:
            return exc

    return drive(server, body)


@pytest.fixture(scope="module")
def finished(server: KinemaMCP) -> dict[str, Any]:
    """One generated video (the module's warm-up), with the progress notifications its call got."""
    progress: list[float] = []
    result = call(
        server, "generate_video", {"prompt": "a red ball bouncing on green grass", "seed": 7, **TINY}, progress
    )
    assert not result.is_error, result.content
    return {"result": result, "video": result.structured_content, "progress": progress}


# -- the tools' descriptions ----------------------------------------------------------------------------------------
def test_the_schemas_come_from_kinemas_models_and_every_argument_is_described(server: KinemaMCP) -> None:
    tools = drive(server, lambda c: c.list_tools()).tools
    assert {t.name for t in tools} == {
        "generate_video",
        "get_video",
        "list_videos",
        "cancel_video",
        "build_prompt",
        "render_storyboard",
        "list_backends",
        "enhance_video",
    }
    listed = {t.name: t for t in tools}
    generate = listed["generate_video"].input_schema
    # every request field but the output format (jobs write MP4), plus the MCP server's own two
    assert set(generate["properties"]) == (set(VideoRequest.model_fields) - {"format"}) | {
        "wait_seconds",
        "idempotency_key",
    }
    for tool in tools:
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
    # the prompt advice: motion, the camera move, one action, the duration
    for words in ("motion", "camera move", "ONE clear action", "duration"):
        assert words in listed["generate_video"].description
    assert PROMPT_ADVICE in generate["properties"]["prompt"]["description"]
    assert "dolly-in" in listed["build_prompt"].input_schema["properties"]["camera"]["description"]
    # nested step schemas are referenced from the root, where JSON Schema resolves them
    assert "UpscaleStep" in generate["$defs"] and "$defs" not in generate["properties"]["postprocess"]


# -- generating -----------------------------------------------------------------------------------------------------
def test_generate_reports_progress_and_hands_back_the_video_with_its_thumbnail(finished: dict[str, Any]) -> None:
    video, result, progress = finished["video"], finished["result"], finished["progress"]
    assert video["status"] == "completed" and video["seed"] == 7
    assert progress and progress[-1] == 100 and progress == sorted(set(progress))  # rising, as MCP requires
    assert len(progress) >= 2  # not only the final notification
    kinds = [c.type for c in result.content]
    assert kinds[:2] == ["text", "image"] and kinds.count("resource_link") == 3
    assert Path(video["file"]).is_file()


def test_the_thumbnail_and_the_recipe_read_back_as_resources(server: KinemaMCP, finished: dict[str, Any]) -> None:
    import base64

    resources = finished["video"]["resources"]
    thumb = read(server, resources["thumbnail"])
    assert thumb.mime_type == "image/png"
    image = Image.open(io.BytesIO(base64.b64decode(thumb.blob)))
    assert image.format == "PNG" and image.size == (128, 128)
    recipe = json.loads(read(server, resources["recipe"]).text)
    assert recipe["seed"] == 7 and recipe["prompt"] == "a red ball bouncing on green grass"
    clip = read(server, resources["video"])
    assert clip.mime_type == "video/mp4" and base64.b64decode(clip.blob)[4:8] == b"ftyp"
    listed = drive(server, lambda c: c.list_resources()).resources
    assert resources["thumbnail"] in {str(r.uri) for r in listed}


def test_a_missing_resource_is_an_error_naming_the_uri(server: KinemaMCP) -> None:
    missing = read(server, "kinema://videos/nope/thumbnail.png")
    assert isinstance(missing, MCPError) and missing.code == -32002  # MCP's "resource not found"
    assert missing.message.startswith("uri: video 'nope' does not exist") and "allowed" in missing.message
    other = read(server, "kinema://elsewhere/x")
    assert isinstance(other, MCPError) and "kinema://videos/<video id>/" in other.message


# -- bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "field", "allowed"),
    [
        ({"prompt": "a ball", "num_frames": 4}, "num_frames", "12k+4"),  # the backend's check (kinema.plan)
        ({"prompt": "a ball", "frames": 16}, "frames", "num_frames"),  # not an argument: the allowed ones listed
        ({"prompt": "", **TINY}, "prompt", "1 to 5000 characters"),  # the request's own check
        ({"prompt": "a ball", "wait_seconds": 9999}, "wait_seconds", "between 0 and 600"),
        ({"prompt": "a ball", "postprocess": [{"op": "blur"}]}, "postprocess[0].op", "upscale"),
        ({"prompt": "a ball", "backend": "nope"}, "backend", "builtin"),
    ],
)
def test_bad_input_is_a_tool_error_naming_the_field_and_what_is_allowed(
    server: KinemaMCP, arguments: dict[str, Any], field: str, allowed: str
) -> None:
    result = call(server, "generate_video", arguments)
    assert result.is_error
    message = result.content[0].text
    assert message.startswith(f"{field}: ") or f"'{field}'" in message, message
    assert allowed in message, message
    assert result.structured_content["error"]["message"] == message
    assert drive(server, lambda c: c.call_tool("get_video", {"video_id": "video_nope"})).is_error


# -- cancelling, storyboards, enhancing ------------------------------------------------------------------------------
def test_cancel_stops_a_job(server: KinemaMCP, finished: dict[str, Any]) -> None:
    started = call(
        server,
        "generate_video",
        {
            "prompt": "a slow pan over a city at night",
            "num_frames": 160,
            "num_inference_steps": 200,
            "wait_seconds": 0,
        },
    )
    video_id = started.structured_content["id"]
    assert started.structured_content["status"] in ("queued", "in_progress")
    assert "get_video" in started.structured_content["next"]
    call(server, "cancel_video", {"video_id": video_id})
    after = call(server, "get_video", {"video_id": video_id, "wait_seconds": 30})
    assert after.structured_content["status"] == "cancelled"
    assert call(server, "cancel_video", {"video_id": "video_nope"}).is_error


def test_a_storyboard_renders_as_one_film(server: KinemaMCP, finished: dict[str, Any]) -> None:
    board = {
        "title": "Valley",
        "defaults": {"seed": 3, "num_inference_steps": 2},
        "scenes": [
            {"prompt": "sunrise over mountains", "duration": 2, "transition": "fade:0.5"},
            {"prompt": "clouds drift over the mountains", "duration": 2},
        ],
    }
    result = call(server, "render_storyboard", board)
    assert not result.is_error, result.content
    film = result.structured_content
    assert film["kind"] == "storyboard" and film["status"] == "completed"
    assert [s["seed"] for s in film["recipe"]["scenes"]] == [3, 3]
    assert read(server, film["resources"]["thumbnail"]).mime_type == "image/png"
    bad = call(server, "render_storyboard", {"title": "x", "scenes": [{"prompt": "a", "duraton": 2}]})
    assert bad.is_error and bad.content[0].text.startswith("scenes[0].duraton: ")


def test_a_storyboard_takes_relative_paths_from_the_server_folder(
    server: KinemaMCP, finished: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check and the render take a scene's relative image from the same folder (the server's), not the render
    from the job's work dir: before, a board that passed the check failed in the job with "file not found"."""
    from PIL import Image

    Image.new("RGB", (64, 64), (230, 120, 30)).save(tmp_path / "start.png")
    monkeypatch.chdir(tmp_path)
    board = {
        "title": "From a still",
        "defaults": {"seed": 5, "num_inference_steps": 2},
        "scenes": [{"prompt": "sunrise over mountains", "duration": 2, "image": "start.png"}],
    }
    result = call(server, "render_storyboard", board)
    assert not result.is_error, result.content
    assert result.structured_content["status"] == "completed", result.structured_content


def test_enhance_makes_a_new_video_from_a_finished_one(server: KinemaMCP, finished: dict[str, Any]) -> None:
    import base64

    source = finished["video"]["id"]
    result = call(server, "enhance_video", {"video_id": source, "steps": [{"op": "upscale", "factor": 2}]})
    assert not result.is_error, result.content
    enhanced = result.structured_content
    assert enhanced["id"] != source and enhanced["kind"] == "enhance"
    thumb = read(server, enhanced["resources"]["thumbnail"])
    assert Image.open(io.BytesIO(base64.b64decode(thumb.blob))).size == (256, 256)
    assert enhanced["recipe"]["postprocess"][-1]["op"] == "upscale"
    bad = call(server, "enhance_video", {"video_id": source, "steps": [{"op": "upscale", "factor": 99}]})
    assert bad.is_error and bad.content[0].text.startswith("steps[0].factor: ")


# -- never paid twice, and found again after a restart ---------------------------------------------------------------
def test_a_retried_call_with_the_same_key_gets_the_same_job(server: KinemaMCP, finished: dict[str, Any]) -> None:
    args = {"prompt": "a paper boat drifts on a pond, static camera", "idempotency_key": "boat-1", **TINY}
    first = call(server, "generate_video", args).structured_content
    again = call(server, "generate_video", {**args, "wait_seconds": 0}).structured_content  # the wait is no part
    assert again["id"] == first["id"] and again.get("replayed") is True
    assert server.jobs.store.get(first["id"]).attempts == 1  # made once
    other = call(server, "generate_video", {**args, "prompt": "something else"})
    assert other.is_error and other.content[0].text.startswith("idempotency_key: ")


def test_a_job_survives_a_restart_of_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    before = Jobs.open(data, workers=0)  # takes the job, runs nothing, goes away
    started = drive(
        KinemaMCP(before),
        lambda c: c.call_tool(
            "generate_video", {"prompt": "waves roll onto a beach", "wait_seconds": 0, "idempotency_key": "k", **TINY}
        ),
    )
    before.close()
    video_id = started.structured_content["id"]
    assert started.structured_content["status"] == "queued"
    after = Jobs.open(data, workers=1)
    after.start()
    try:
        again = KinemaMCP(after)
        done = drive(again, lambda c: c.call_tool("get_video", {"video_id": video_id, "wait_seconds": 120}))
        assert done.structured_content["status"] == "completed"
        # the assistant, restarted, retries its call: the same video, not a second one
        retried = drive(
            again,
            lambda c: c.call_tool(
                "generate_video", {"prompt": "waves roll onto a beach", "idempotency_key": "k", **TINY}
            ),
        )
        assert retried.structured_content["id"] == video_id
        assert [
            v["id"] for v in drive(again, lambda c: c.call_tool("list_videos", {})).structured_content["videos"]
        ] == [video_id]
    finally:
        after.close()


# -- the other tools ------------------------------------------------------------------------------------------------
def test_build_prompt_and_list_backends(server: KinemaMCP) -> None:
    built = call(
        server, "build_prompt", {"subject": "a red fox", "action": "trots through fresh snow", "camera": "tracking"}
    )
    expected = "A red fox trots through fresh snow. Tracking shot, the camera follows the subject."
    assert built.content[0].text == expected
    assert call(server, "build_prompt", {"subject": "x", "template": "nope"}).content[0].text.startswith("template: ")
    backends = call(server, "list_backends", {}).structured_content["backends"]
    builtin = next(b for b in backends if b["name"] == "builtin")
    assert builtin["usable"] and builtin["default"]
    assert all(b["reason"] for b in backends if not b["usable"])  # what cannot run says why
    assert TOOLS["list_backends"].schema["properties"] == {}


def test_without_a_key_the_mcp_request_id_keys_the_call(server: KinemaMCP) -> None:
    from types import SimpleNamespace

    session = object()
    args = {"prompt": "a ball"}

    def key(request_id: int | None, args: dict[str, Any], conn: object = session) -> str:
        ctx: Any = SimpleNamespace(request_id=request_id, session=conn, request=None)
        return server._key(ctx, "generate_video", args)[0]

    assert key(3, args) == key(3, args)  # the same request delivered again: one job
    assert key(3, args) != key(4, args)  # another request
    assert key(3, args) != key(3, {"prompt": "another"})  # ids restart per connection: the arguments count too
    assert key(3, args) != key(3, args, object())  # another connection
    assert key(3, {**args, "idempotency_key": "mine"}) == "key:mine"  # the caller's key wins
    assert key(None, args) != key(None, args)  # no id: never merged


# -- timed keyframes (issue 27) ---------------------------------------------------------------------------------------


@pytest.fixture
def red_png(tmp_path: Path) -> str:
    path = tmp_path / "mid.png"
    Image.fromarray(np.full((64, 64, 3), (230, 40, 40), np.uint8)).save(path)
    return str(path)


def test_the_schema_describes_keyframes_as_times_and_paths(server: KinemaMCP) -> None:
    async def main() -> Any:
        async with Client(server.server) as client:
            return await client.list_tools()

    tools = {t.name: t for t in anyio.run(main).tools}
    prop = tools["generate_video"].input_schema["properties"]["keyframes"]
    assert prop["type"] == "array" and prop["maxItems"] == 16 and "seconds" in prop["description"]
    item = prop["items"]
    assert item["required"] == ["time", "image"] and item["additionalProperties"] is False
    assert item["properties"]["time"] == {
        "type": "number",
        "minimum": 0,
        "description": "Seconds from the clip's start.",
    }
    assert item["properties"]["image"]["type"] == "string"
    assert "$ref" not in json.dumps(prop)  # every part spelled out: the Keyframe model's $defs are not carried


def test_generate_video_takes_keyframes(server: KinemaMCP, red_png: str) -> None:
    result = call(
        server,
        "generate_video",
        {
            "prompt": "a red ball bouncing on green grass",
            "seed": 3,
            **TINY,
            "keyframes": [{"time": 1, "image": red_png}],
        },
    )
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
    server: KinemaMCP, red_png: str, keyframes: list[dict[str, Any]], extra: dict[str, Any], field: str, words: str
) -> None:
    given = [{**k, "image": red_png if k["image"] == "PNG" else k["image"]} for k in keyframes]
    result = call(server, "generate_video", {"prompt": "a ball", **TINY, **extra, "keyframes": given})
    assert result.is_error
    message = result.content[0].text
    assert message.startswith(f"{field}: ") and words in message, message
