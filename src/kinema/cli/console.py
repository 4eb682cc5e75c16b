"""What every command shares: the Rich consoles, failing with the right exit code, ``KEY=VALUE`` options, the
progress bar and the ``--debug`` flag.

A leaf of the ``kinema.cli`` package: it imports no other command module, so any of them can import it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import Cancelled, InvalidRequest, KinemaError

if TYPE_CHECKING:
    from ..backends.base import CancelToken

__all__ = ["out", "err", "fail", "parse_options", "ProgressBar", "CountBar", "set_debug"]

#: results go to stdout (``--json`` prints one JSON object), progress and messages to stderr, so output can be piped
out = Console()
err = Console(stderr=True)

_debug = False


def set_debug(enabled: bool) -> None:
    """``kinema --debug``: failures print their traceback."""
    global _debug
    _debug = enabled


def fail(exc: BaseException) -> NoReturn:
    """Print a short message and exit with the code for this kind of failure.

    The message is printed as text, not Rich markup: ``pip install 'kinema[local]'`` keeps its ``[local]``.
    """
    if _debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, InvalidRequest):
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(2)
    if isinstance(exc, Cancelled | KeyboardInterrupt):
        # a provider's cancel answer ("cancel sent", "no cancel ... may still be billed") is worth reading
        detail = exc.message if isinstance(exc, Cancelled) and getattr(exc, "provider_cancel", None) else ""
        err.print("[yellow]cancelled[/]" + (f": {escape(detail)}" if detail else ""), highlight=False)
        raise typer.Exit(130)
    if isinstance(exc, KinemaError):
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
        raise typer.Exit(1)
    err.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
    if not _debug:
        err.print("run again with --debug for the traceback", style="dim")
    raise typer.Exit(1)


@contextmanager
def interrupt_cancels(token: CancelToken, *, keep_provider_task: bool = False) -> Iterator[None]:
    """Ctrl-C cancels ``token`` instead of killing the process, so a cloud backend stops the provider's task (and
    its bill) before the command exits; a second Ctrl-C quits at once. With ``keep_provider_task`` the task is left
    running at the provider, to be picked up by ``kinema resume``. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            raise KeyboardInterrupt
        token.cancel(keep_provider_task=keep_provider_task)
        what = "leaving the provider's task running" if keep_provider_task else "stopping the provider's task"
        err.print(f"[yellow]cancelling[/] ({what}; Ctrl-C again to quit at once)", highlight=False)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict; a value that parses as JSON is taken as such.

    >>> parse_options(["steps=4", "camera=zoom_out", 'lora=["a.safetensors"]'])
    {'steps': 4, 'camera': 'zoom_out', 'lora': ['a.safetensors']}
    """
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest("option", f"{item!r} is not of the form KEY=VALUE", value=item)
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


class ProgressBar:
    """A Rich progress bar on stderr, driven by Kinema's progress events."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description:<14}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("starting", total=100)
        return self

    def __call__(self, event: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=event.fraction * 100, description=event.stage)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


class CountBar:
    """A Rich progress bar on stderr for long work counted in units (training steps, evaluated clips).

    Called as ``bar(done, total)``. Disabled (a no-op) under ``--json`` or when stderr is not a terminal, so logs
    and pipes get no control characters.
    """

    def __init__(self, enabled: bool, description: str, console: Console | None = None) -> None:
        self.enabled = enabled
        self.description = description
        self.console = console if console is not None else err
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> CountBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task(self.description, total=None)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
