"""The MCP server: Kinema's tools and resources on the official ``mcp`` SDK's low-level :class:`~mcp.server.Server`.

The low-level server (not ``MCPServer``'s decorators) because the tools' input schemas come from Kinema's own
models (:mod:`.tools`), not from Python signatures, and the arguments are checked by those models, so an error
names the field, what was wrong and what is allowed, as everywhere else in Kinema. Errors are MCP *tool* errors
(``isError``, the message as text, ``{"error": {...}}`` as structured content), which an assistant reads and acts on.

Jobs go through :class:`~.jobs.Jobs` (the job service's store and worker pool); a tool call that starts one
polls the store for it and forwards its progress as ``notifications/progress``, so progress is reported the same
whichever process (this one, ``kinema serve``, ``kinema worker``) runs the job.

Resources, for every finished job: ``kinema://videos/{id}/video.mp4`` (the clip), ``.../thumbnail.png`` (a frame,
as an image the assistant can look at) and ``.../recipe.json`` (everything needed to make it again).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from .._version import __version__
from ..errors import InvalidRequest, KinemaError, error_dict
from .jobs import ENHANCE_KIND, Jobs, fingerprint
from .tools import INSTRUCTIONS, REQUEST_ONLY, TOOLS, check_arguments, wait_seconds_of

__all__ = ["KinemaMCP", "RESOURCE_FILES", "resource_uri", "MAX_RESOURCE_BYTES"]

log = logging.getLogger("kinema.mcp")

TERMINAL = ("completed", "failed", "cancelled")
#: how often a waiting tool call looks at its job
POLL_SECONDS = 0.2
#: the largest file sent as a resource (base64 in one JSON message); a larger one is named by its path instead
MAX_RESOURCE_BYTES = 64 * 2**20
#: a finished job's resources: file name -> (MIME type, what it is)
RESOURCE_FILES: dict[str, tuple[str, str]] = {
    "video.mp4": ("video/mp4", "the video"),
    "thumbnail.png": ("image/png", "a frame of the video, to look at"),
    "recipe.json": ("application/json", "everything needed to make the video again"),
}
_URI = re.compile(r"^kinema://videos/([A-Za-z0-9_-]{1,100})/([a-z0-9.]+)$")
#: MCP's code for "resource not found"
RESOURCE_NOT_FOUND = -32002
#: what checking a call makes: the job's request and its summary
Prepared = tuple[dict[str, Any], dict[str, Any]]


def resource_uri(job_id: str, name: str) -> str:
    return f"kinema://videos/{job_id}/{name}"


def _summary(obj: dict[str, Any]) -> str:
    return json.dumps(obj, default=str)


class KinemaMCP:
    """Kinema's MCP server over one :class:`~.jobs.Jobs`; ``server`` is the SDK's server to run on a transport."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        #: keys derived from MCP request ids are only unique within this process (ids restart per connection)
        self.instance = secrets.token_hex(6)
        self.server: Server[Any] = Server(
            "kinema",
            version=__version__,
            title="Kinema",
            description="Text (and images, and earlier clips) to video, with any engine.",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
        )
        self._tools: dict[str, Callable[[ServerRequestContext[Any], dict[str, Any]], Awaitable[types.CallToolResult]]]
        self._tools = {
            "generate_video": self._generate_video,
            "get_video": self._get_video,
            "list_videos": self._list_videos,
            "cancel_video": self._cancel_video,
            "build_prompt": self._build_prompt,
            "render_storyboard": self._render_storyboard,
            "list_backends": self._list_backends,
            "enhance_video": self._enhance_video,
        }

    # -- tools: listing and dispatch ----------------------------------------------------------------------------
    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=s.name,
                    title=s.title,
                    description=s.description,
                    input_schema=s.schema,
                    annotations=types.ToolAnnotations(
                        title=s.title,
                        read_only_hint=s.read_only,
                        destructive_hint=s.name == "cancel_video",
                        open_world_hint=False,
                    ),
                )
                for s in TOOLS.values()
            ]
        )

    async def _call_tool(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        args = dict(params.arguments or {})
        handler = self._tools.get(params.name)
        try:
            if handler is None:
                raise InvalidRequest(
                    "name", f"{params.name!r} is not a Kinema tool", value=params.name, allowed=", ".join(self._tools)
                )
            check_arguments(params.name, args)
            return await handler(ctx, args)
        except KinemaError as exc:
            return self._error(exc)
        except Exception as exc:  # a bug: say what broke without a traceback, log the rest
            log.exception("tool %s failed", params.name)
            return self._error(exc)

    @staticmethod
    def _error(exc: BaseException) -> types.CallToolResult:
        d = error_dict(exc)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=d["message"])], structured_content={"error": d}, is_error=True
        )

    @staticmethod
    async def _thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # the store and the planner block (SQLite, loading a backend): never on the event loop
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    def _key(self, ctx: ServerRequestContext[Any], tool: str, args: dict[str, Any]) -> tuple[str, str]:
        """(idempotency key, fingerprint): the caller's key, else this MCP request's id, so a re-delivered request
        is not run twice. A request id is unique only per connection and process, hence the instance token, the
        HTTP session and the fingerprint in the derived key."""
        digest = fingerprint(tool, args)
        if args.get("idempotency_key"):
            return "key:" + str(args["idempotency_key"]), digest
        if ctx.request_id is None:
            return "once:" + secrets.token_hex(12), digest
        session = str(id(ctx.session))  # the connection (an in-process or stdio client)
        headers = getattr(ctx.request, "headers", None)
        if headers is not None:  # streamable HTTP: the session, whichever connection object carries it
            session += ":" + (headers.get("mcp-session-id") or "")
        return f"request:{self.instance}:{session}:{ctx.request_id}:{digest[:16]}", digest

    # -- jobs ---------------------------------------------------------------------------------------------------
    async def _wait(self, ctx: ServerRequestContext[Any], job_id: str, seconds: float) -> Any:
        """Poll the job until it ends or ``seconds`` pass, sending its progress as notifications."""
        deadline = anyio.current_time() + seconds
        sent = -1.0
        while True:
            job = await self._thread(self.jobs.get, job_id)
            progress = 100.0 if job.status == "completed" else float(job.progress)
            if progress > sent:  # MCP: each notification's progress must be larger than the last
                sent = progress
                stage = f": {job.stage}" if job.stage and job.status == "in_progress" else ""
                await ctx.session.report_progress(progress, 100.0, f"{job.status}{stage}")
            if job.status in TERMINAL or anyio.current_time() >= deadline:
                return job
            await anyio.sleep(POLL_SECONDS)

    def _job_result(self, job: Any, *, replayed: bool = False) -> types.CallToolResult:
        from ..service.schemas import video_object

        obj = video_object(job)
        content: list[Any] = []
        if job.status == "completed" and job.output_path:
            obj["file"] = job.output_path
            obj["resources"] = {name.split(".")[0]: resource_uri(job.id, name) for name in RESOURCE_FILES}
        elif job.status not in TERMINAL:
            obj["next"] = (
                f"still {job.status}: call get_video with video_id={job.id!r} and wait_seconds to keep "
                "waiting (calling generate_video again would make it again)"
            )
        if replayed:
            obj["replayed"] = True  # an earlier call with this key made the job: nothing new was started
        content.append(types.TextContent(type="text", text=_summary(obj)))
        if "resources" in obj:
            thumb = Path(job.thumbnail_path) if job.thumbnail_path else None
            if thumb is not None and thumb.is_file():
                content.append(
                    types.ImageContent(
                        type="image", mime_type="image/png", data=base64.b64encode(thumb.read_bytes()).decode()
                    )
                )
            for name, (mime, what) in RESOURCE_FILES.items():
                uri = resource_uri(job.id, name)
                link = types.ResourceLink(
                    type="resource_link", uri=uri, name=f"{job.id}/{name}", mime_type=mime, description=what
                )
                content.append(link)
        failed = job.status == "failed"
        if failed and job.error:
            content.insert(0, types.TextContent(type="text", text=f"the video failed: {job.error.get('message')}"))
        return types.CallToolResult(content=content, structured_content=obj, is_error=failed)

    async def _submit_and_wait(
        self,
        ctx: ServerRequestContext[Any],
        tool: str,
        args: dict[str, Any],
        kind: str,
        prepare: Callable[[], Prepared],
    ) -> types.CallToolResult:
        wait = wait_seconds_of(args)
        key, digest = self._key(ctx, tool, args)
        request, summary = await self._thread(prepare)
        job, replayed = await self._thread(
            self.jobs.submit, kind=kind, request=request, summary=summary, key=key, digest=digest
        )
        return self._job_result(await self._wait(ctx, job.id, wait), replayed=replayed)

    async def _generate_video(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        fields = {k: v for k, v in args.items() if k not in REQUEST_ONLY}
        return await self._submit_and_wait(ctx, "generate_video", args, "video", lambda: plan_video(fields))

    async def _render_storyboard(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        fields = {k: v for k, v in args.items() if k not in REQUEST_ONLY}
        return await self._submit_and_wait(
            ctx, "render_storyboard", args, "storyboard", lambda: plan_storyboard(fields)
        )

    async def _enhance_video(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        def prepare() -> tuple[dict[str, Any], dict[str, Any]]:
            from ..media.enhance import chain_to_json, validate_chain

            source = self.jobs.source_of(args["video_id"])
            steps = validate_chain(args["steps"], field="steps")
            if not steps:
                raise InvalidRequest("steps", "is empty", allowed="at least one {'op': ...} step")
            original = self.jobs.get(args["video_id"])
            summary = {**original.summary, "mode": ENHANCE_KIND, "enhanced_from": original.id}
            return {"source": original.id, "input": str(source), "steps": chain_to_json(steps)}, summary

        return await self._submit_and_wait(ctx, "enhance_video", args, ENHANCE_KIND, prepare)

    async def _get_video(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        wait = wait_seconds_of(args, default=0.0)
        return self._job_result(await self._wait(ctx, args["video_id"], wait))

    async def _cancel_video(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        job = await self._thread(self.jobs.cancel, args["video_id"])
        return self._job_result(job)

    async def _list_videos(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        limit = args.get("limit", 20)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidRequest("limit", f"must be a whole number from 1 to 100, got {limit!r}", value=limit)
        jobs, more = await self._thread(self.jobs.list, limit, args.get("after"))
        rows = [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status,
                "progress": j.progress,
                "prompt": j.summary.get("prompt"),
                "created_at": int(j.created_at),
            }
            for j in jobs
        ]
        obj = {"videos": rows, "has_more": more}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=_summary(obj))], structured_content=obj
        )

    async def _build_prompt(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        from ..prompts import VideoPrompt, from_template

        parts = {k: v for k, v in args.items() if k != "template"}
        template = args.get("template")
        prompt = from_template(template, **parts) if template is not None else VideoPrompt(**parts)
        obj = prompt.to_dict()
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=obj["prompt"])], structured_content=obj
        )

    async def _list_backends(self, ctx: ServerRequestContext[Any], args: dict[str, Any]) -> types.CallToolResult:
        from ..backends import list_backends

        infos = await self._thread(list_backends)
        rows = [
            {
                "name": b.name,
                "description": b.description,
                "usable": b.usable,
                "reason": b.reason,
                "modes": list(b.modes),
                "default": b.default,
            }
            for b in infos
        ]
        obj = {"backends": rows}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=_summary(obj))], structured_content=obj
        )

    # -- resources ----------------------------------------------------------------------------------------------
    async def _list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        jobs, _ = await self._thread(self.jobs.list, 50)
        resources = [
            types.Resource(
                uri=resource_uri(j.id, name),
                name=f"{j.id}/{name}",
                mime_type=mime,
                description=f"{what}: {j.summary.get('prompt') or ''}"[:300],
            )
            for j in jobs
            if j.status == "completed" and j.output_path
            for name, (mime, what) in RESOURCE_FILES.items()
        ]
        return types.ListResourcesResult(resources=resources)

    async def _list_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=resource_uri("{video_id}", name),
                    name=name,
                    mime_type=mime,
                    description=f"{what} (a finished job's)",
                )
                for name, (mime, what) in RESOURCE_FILES.items()
            ]
        )

    async def _read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        m = _URI.match(uri)
        if m is None or m.group(2) not in RESOURCE_FILES:
            raise MCPError(
                RESOURCE_NOT_FOUND,
                f"uri: {uri!r} is not a Kinema resource (allowed: "
                f"kinema://videos/<video id>/{{{','.join(RESOURCE_FILES)}}})",
                {"uri": uri},
            )
        job_id, name = m.groups()
        job = await self._thread(self.jobs.store.get, job_id, "local")
        if job is None or job.status != "completed":
            state = "does not exist" if job is None else f"is {job.status}, not completed"
            raise MCPError(
                RESOURCE_NOT_FOUND,
                f"uri: video {job_id!r} {state} (allowed: a completed video's resources; see list_videos)",
                {"uri": uri},
            )
        mime = RESOURCE_FILES[name][0]
        if name == "recipe.json":
            recipe = (job.result or {}).get("recipe")
            text = json.dumps(recipe, indent=2, sort_keys=True, default=str)
            return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime, text=text)])
        path = Path((job.output_path if name == "video.mp4" else job.thumbnail_path) or "")
        if not path.is_file():
            raise MCPError(
                RESOURCE_NOT_FOUND, f"uri: video {job_id!r} has expired: its files were deleted", {"uri": uri}
            )
        size = path.stat().st_size
        if size > MAX_RESOURCE_BYTES:
            raise MCPError(
                types.INVALID_PARAMS,
                f"uri: {name} is {size} bytes, more than the {MAX_RESOURCE_BYTES} "
                f"sent as a resource; read the file at {path}",
                {"uri": uri},
            )
        data = await self._thread(path.read_bytes)
        blob = base64.b64encode(data).decode()
        return types.ReadResourceResult(contents=[types.BlobResourceContents(uri=uri, mime_type=mime, blob=blob)])

    # -- transports ---------------------------------------------------------------------------------------------
    async def run_stdio(self) -> None:
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())

    def http_app(self, host: str = "127.0.0.1", path: str = "/mcp") -> Any:
        """The streamable HTTP transport as an ASGI app (serve it with uvicorn), at ``path``."""
        return self.server.streamable_http_app(streamable_http_path=path, host=host)


def plan_video(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a generate_video call as ``kinema generate --plan`` does (the request, then :func:`kinema.plan`
    against the backend); the job's request (JSON) and the summary the video object shows."""
    from ..planner import plan
    from ..request import VideoRequest

    image = fields.get("image")
    if image is not None and not isinstance(image, str):
        raise InvalidRequest(
            "image",
            f"must be a file path or an http(s) URL, not {type(image).__name__}",
            value=image,
            allowed="a path or an http(s) URL",
        )
    request = VideoRequest(**fields, format="mp4")  # the job service's outputs are MP4 files
    the_plan = plan(request, seed=0)  # seed 0: a dry run draws no seed; the job draws its own
    params = the_plan.request, the_plan.params
    req = {k: v for k, v in request.model_dump(exclude_none=True).items() if v not in ({}, [])}
    req.update({k: v for k, v in (("backend", params[0].backend), ("model", params[0].model)) if v is not None})
    summary = {
        "prompt": request.prompt,
        "backend": the_plan.backend.name,
        "model": request.model or the_plan.backend.name,
        "seconds": f"{params[1].duration:g}",
        "size": f"{params[1].width}x{params[1].height}",
        "seed": request.seed,
        "track_id": None,
        "mode": params[1].mode,
    }
    return req, summary


def plan_storyboard(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a render_storyboard call as ``kinema storyboard --check`` does; the job's request and summary."""
    from ..planner import plan
    from ..storyboard import load_storyboard
    from ..storyboard import plan_storyboard as plan_board

    # relative paths are the assistant's, from this server's working folder: the job takes them from there too
    base = Path.cwd()
    board_plan = plan_board(load_storyboard(fields, base=base))
    params = plan(board_plan.scenes[0].request, check_available=False, seed=0).params  # the film's size and backend
    scenes = [
        {
            "prompt": p.request.prompt,
            "duration": round(p.duration, 6),
            "transition": str(p.transition),
            "continuity": p.scene.continuity,
            "name": p.scene.name,
        }
        for p in board_plan.scenes
    ]
    title = board_plan.board.title
    card = board_plan.title_card.text if board_plan.title_card is not None else None
    summary = {
        "prompt": title,
        "backend": params.backend,
        "model": params.backend,
        "seconds": f"{board_plan.duration:g}",
        "size": f"{params.width}x{params.height}",
        "seed": fields.get("defaults", {}).get("seed"),
        "track_id": None,
        "mode": "storyboard",
        "storyboard": {"title": title, "title_card": card, "scenes": scenes},
    }
    # the storyboard job reads "storyboard" and pins each scene's seed into "body" for its recipe
    return {"storyboard": fields, "body": fields, "base": str(base)}, summary
