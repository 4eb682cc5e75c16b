"""Kinema as an MCP server (``kinema mcp``): assistants generate, watch and post-process videos through tools.

``kinema mcp`` serves over stdio (what desktop assistants launch); ``kinema mcp --http --port P`` over the
protocol's streamable HTTP transport at ``http://127.0.0.1:P/mcp``. Both use the official ``mcp`` SDK (the ``mcp``
extra). Jobs go into the job service's durable store (``--data-dir``, ``--database-url``; by default
``kinema serve``'s), so they survive a restart of the assistant and are never paid twice. docs/agents.md shows the
configuration for common assistants.

* :mod:`.tools`: the tools' names, descriptions and schemas (from Kinema's own models);
* :mod:`.jobs`: the store, the worker pool, idempotency, and the ``enhance`` job kind;
* :mod:`.server`: the SDK server: tool calls, progress notifications, resources, transports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve"]


def serve(
    *,
    http: bool = False,
    host: str = "127.0.0.1",
    port: int = 8765,
    data_dir: Any = None,
    database_url: str | None = None,
    workers: int = 1,
    log_level: str = "warning",
) -> None:
    """Run the MCP server until the client goes away (stdio) or until interrupted (HTTP)."""
    import anyio

    from ..backends.base import require_module
    from ..errors import InvalidRequest

    require_module("mcp", "mcp", feature="the MCP server")
    if http:
        from ..service.config import is_loopback_host

        if not is_loopback_host(host):  # the MCP server has no authentication: loopback only
            raise InvalidRequest(
                "--host",
                f"must be a loopback address, not {host!r} (the MCP server has no authentication)",
                value=host,
                allowed="127.0.0.1, ::1 or localhost",
            )
        if not 1 <= port <= 65535:
            raise InvalidRequest("--port", f"must be between 1 and 65535, got {port}", value=port)
    from .jobs import Jobs
    from .server import KinemaMCP

    jobs = Jobs.open(data_dir, database_url, workers=workers)
    jobs.start()
    try:
        mcp = KinemaMCP(jobs)
        if not http:
            anyio.run(mcp.run_stdio)
            return
        import uvicorn

        uvicorn.run(mcp.http_app(host=host), host=host, port=port, log_level=log_level)
    finally:
        jobs.close()
