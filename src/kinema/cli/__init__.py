"""The ``kinema`` command line (Typer + Rich).

Progress goes to stderr, results to stdout (``--json`` prints one JSON object), so the output can be piped. Exit
codes: 0 success, 1 a failed generation, 2 bad input, 130 cancelled. No traceback unless ``--debug``.

The package, by area, each module with a ``register(app)`` function that adds its commands:

* :mod:`.console`: the consoles, :func:`~.console.fail`, ``KEY=VALUE`` options, the progress bar, ``--debug``
  (a leaf: it imports no other command module);
* :mod:`.generate`: ``generate``, ``info``, ``backends``; :mod:`.builtin`: ``train``, ``eval``;
* :mod:`.local`: ``models``, ``pull``; :mod:`.cloud`: ``resume``; :mod:`.workflows`: ``prompt``, ``batch``,
  ``storyboard``, ``enhance``, ``concat``, ``thumbnail``; :mod:`.service`: ``serve``, ``worker``, ``keys``,
  ``jobs``; :mod:`.mcp`: ``mcp``

Command modules import their optional dependencies (diffusers, the provider SDKs, FastAPI, PyYAML) inside the
commands, never at import time, so every command is listed without any extra installed and a command whose extra is
missing says which one to install.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import builtin, cloud, generate, local, mcp, service, workflows
from .console import out, set_debug

__all__ = ["app", "main"]


class _KinemaGroup(TyperGroup):
    """The ``kinema`` group: ``--debug`` is taken anywhere on the command line, not only before the command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Any: typer vendors its own click's Context
        # users add --debug at the end, after a failure; a subcommand would refuse it as an unknown option, so it
        # moves in front where the group reads it (arguments after "--" are left alone)
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:
            args = ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="kinema",
    cls=_KinemaGroup,
    help="Turn text prompts (and images, and earlier clips) into videos, with any engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        out.print(f"kinema {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also accepted after the command).")] = False,
    version: Annotated[
        bool,
        # eager: handled while the options are parsed, before Typer asks for a command ("Missing command.")
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    set_debug(debug)


# in this order in ``kinema --help``
for _area in (generate, builtin, local, cloud, service, workflows, mcp):
    _area.register(app)


def main() -> None:
    app()
