"""``kinema mcp``: Kinema as an MCP server for assistants (stdio, or streamable HTTP with ``--http``).

kinema mcp                          # stdio: what Claude Desktop, Claude Code, Cursor and VS Code launch
kinema mcp --http --port 8765       # streamable HTTP at http://127.0.0.1:8765/mcp
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def mcp(
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP instead of stdio.")] = False,
    host: Annotated[str, typer.Option("--host", help="Address to bind with --http (loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port with --http (the endpoint is /mcp).")] = 8765,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Where jobs and outputs live (default: kinema serve's, or KINEMA_DATA_DIR)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="The job store: postgresql://... (default: KINEMA_DATABASE_URL, else SQLite in the data dir).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Jobs run at once in this process (0: leave them to kinema worker).")
    ] = 1,
) -> None:
    """Serve Kinema's tools to an AI assistant over the Model Context Protocol (docs/agents.md)."""
    from .console import fail

    try:
        import logging

        # stdout is the protocol on stdio: everything else goes to stderr
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        from ..mcp import serve

        serve(http=http, host=host, port=port, data_dir=data_dir, database_url=database_url, workers=workers)
    except Exception as exc:
        fail(exc)


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)
