"""The ``kinema`` command line (Typer + Rich).

Progress goes to stderr, results to stdout (``--json`` prints one JSON object), so the output can be piped. Exit
codes: 0 success, 1 a failed generation, 2 bad input, 130 cancelled. No traceback unless ``--debug``.

Commands of the optional areas (local models, cloud providers, the job service, workflows) live in their own modules
(``kinema.cli_<area>``), each with a ``register(app)`` function, and are added here when present.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .errors import Cancelled, InvalidRequest, KinemaError

app = typer.Typer(
    name="kinema",
    help="Turn text prompts (and images, and earlier clips) into videos, with any engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

_debug = False

GENERATE_EXAMPLES = """
Examples:

  kinema generate "A cinematic sunrise over mountains, clouds moving slowly" -o sunrise.mp4

  kinema generate "a red ball bouncing on green grass" --seed 7 --frames 28 --json

  kinema generate "the camera pans right" --image first_frame.png -o moving.mp4

  kinema generate --from sunrise.mp4 -o again.mp4
"""


def fail(exc: BaseException) -> None:
    """Print a short message and exit with the code for this kind of failure."""
    if _debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, InvalidRequest):
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2)
    if isinstance(exc, Cancelled | KeyboardInterrupt):
        err.print("[yellow]cancelled[/]")
        raise typer.Exit(130)
    if isinstance(exc, KinemaError):
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(1)
    err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", highlight=False)
    if not _debug:
        err.print("run again with --debug for the traceback", style="dim")
    raise typer.Exit(1)


def parse_options(items: list[str] | None) -> dict[str, Any]:
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


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


class _ProgressBar:
    """A Rich progress bar on stderr, driven by Kinema's progress events."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("{task.description:<14}"), BarColumn(),
                                     TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                                     console=err, transient=True)  # fmt: skip
            self.progress.__enter__()
            self.task = self.progress.add_task("starting", total=100)
        return self

    def __call__(self, event: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=event.fraction * 100, description=event.stage)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    global _debug
    _debug = debug
    if version:
        from ._version import __version__

        out.print(f"kinema {__version__}")
        raise typer.Exit(0)


@app.command(epilog=GENERATE_EXAMPLES)
def generate(
    prompt: Annotated[str | None, typer.Argument(help="What the video shows (1 to 5000 characters).")] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Where to save (.mp4, .webm, .gif or a folder for PNG frames). Default: kinema-<time>.mp4",
        ),
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Image (path or URL) to start from: image-to-video.")
    ] = None,
    video: Annotated[str | None, typer.Option("--video", help="Clip to continue: video extension.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", "-b", help="Engine (see 'kinema backends').")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model id of the backend.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed; -1 or none for random.")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Number of frames.")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Length in seconds.")] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Frames per second.")] = None,
    size: Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT, e.g. 64x64.")] = None,
    aspect_ratio: Annotated[str | None, typer.Option("--aspect-ratio", help="e.g. 16:9.")] = None,
    resolution: Annotated[str | None, typer.Option("--resolution", help="e.g. 480p.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Denoising steps.")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance", help="Classifier-free guidance scale.")] = None,
    negative: Annotated[str | None, typer.Option("--negative", help="Negative prompt.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="mp4, webm, gif or png.")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Backend option KEY=VALUE (repeatable).")
    ] = None,
    lora: Annotated[
        list[str] | None, typer.Option("--lora", help="LoRA weights PATH[:SCALE] for diffusers models (repeatable).")
    ] = None,
    from_path: Annotated[Path | None, typer.Option("--from", help="Re-run the recipe stored in this video.")] = None,
    show_plan: Annotated[
        bool, typer.Option("--plan", help="Print what would run (backend, size, frames, seed...) and stop.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")] = False,
) -> None:
    """Generate a video from a prompt (and optionally an image or a clip)."""
    from . import engine
    from .planner import plan
    from .request import VideoRequest
    from .video import read_metadata
    from .vocabulary import request_fields

    try:
        # the CLI's names (--steps, --frames, --negative, --guidance, --size) are translated in one table
        fields: dict[str, Any] = request_fields({
            "prompt": prompt, "image": image, "video": video, "backend": backend, "model": model, "seed": seed,
            "frames": frames, "duration": duration, "fps": fps, "aspect_ratio": aspect_ratio,
            "resolution": resolution, "steps": steps, "guidance": guidance, "negative": negative, "format": fmt,
            "size": size,
        })  # fmt: skip
        if option or lora:
            fields["options"] = parse_options(option)
            if lora:
                fields["options"]["lora"] = [*_as_list(fields["options"].get("lora")), *lora]
        if from_path is not None:
            recipe = read_metadata(from_path)
            request = engine.request_from_recipe(recipe, **fields)
        else:
            if prompt is None:
                raise InvalidRequest("prompt", "is required (or use --from PATH to re-run a stored recipe)")
            request = VideoRequest(**{k: v for k, v in fields.items() if v is not None})
        if output is None and not show_plan:
            output = Path(f"kinema-{time.strftime('%Y%m%d-%H%M%S')}.{request.format or 'mp4'}")
        the_plan = plan(request, output=output)
        if show_plan:
            if as_json:
                sys.stdout.write(json.dumps(the_plan.to_dict()) + "\n")
            else:
                out.print(str(the_plan), highlight=False, markup=False)
            return
        assert output is not None
        # a cloud backend's task id is written next to the output the moment it is known, so `kinema resume`
        # can finish a paid generation after a crash; the record goes once the video is saved
        from .backends.remote import resume_file_for
        from .cli_cloud import task_recorder

        with _ProgressBar(enabled=err.is_terminal and not as_json) as bar:
            result = engine.run(the_plan, on_progress=bar, on_task_id=task_recorder(output))
        resume_file_for(output).unlink(missing_ok=True)
    except (KinemaError, KeyboardInterrupt) as exc:
        fail(exc)
        return
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
    else:
        t = result.timings.get("total", 0.0)
        out.print(f"[green]saved[/] {result.path}  ({result.video.num_frames} frames, {result.video.width}x"
                  f"{result.video.height}, {result.video.fps:g} fps, seed {result.seed}, {t:.1f}s)")  # fmt: skip


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A video made by Kinema.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the recipe as JSON.")] = False,
) -> None:
    """Show the recipe stored in a video (prompt, seed, backend, every parameter)."""
    from .video import read_metadata

    try:
        recipe = read_metadata(path)
    except KinemaError as exc:
        fail(exc)
        return
    if as_json:
        sys.stdout.write(json.dumps(recipe, default=str) + "\n")
        return
    table = Table(show_header=False, box=None)
    for key in sorted(recipe):
        value = recipe[key]
        if value is None or value == {} or value == []:
            continue
        table.add_row(f"[bold]{key}[/]", json.dumps(value) if isinstance(value, dict | list) else str(value))
    out.print(table)


@app.command()
def backends(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List every backend and whether it can run here; if not, exactly why."""
    from .backends import list_backends

    infos = list_backends()
    if as_json:
        sys.stdout.write(json.dumps([i.to_dict() for i in infos]) + "\n")
        return
    table = Table("backend", "usable", "modes", "notes")
    for i in infos:
        mark = "[green]yes[/]" if i.usable else "[red]no[/]"
        note = i.description if i.usable else f"[red]{i.reason}[/]"
        name = f"{i.name} (default)" if i.default else i.name
        table.add_row(name, mark, ", ".join(i.modes), note)
    out.print(table)


@app.command()
def train(
    target: Annotated[str, typer.Argument(help="What to train: 'builtin'.")],
    config: Annotated[str, typer.Option("--config", help="tiny, cpu or full.")] = "cpu",
    steps: Annotated[int | None, typer.Option("--steps", help="Training steps (default: the config's).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/builtin"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    time_limit: Annotated[float | None, typer.Option("--time-limit", help="Stop after this many minutes.")] = None,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after",
            help="Stop after this many steps, on the schedule of --steps (replays a run that a time limit ended).",
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    init: Annotated[Path | None, typer.Option("--init", help="Start from these weights (fine-tune).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
) -> None:
    """Train the built-in model from scratch on the procedural world (seeded and reproducible)."""
    if target != "builtin":
        fail(InvalidRequest("target", f"unknown training target {target!r}", value=target, allowed="builtin"))
    from .builtin.train import TRAIN_PRESETS, TrainConfig
    from .builtin.train import train as run_train

    if config not in TRAIN_PRESETS:
        fail(InvalidRequest("config", f"unknown config {config!r}", value=config, allowed=", ".join(TRAIN_PRESETS)))
    params = dict(TRAIN_PRESETS[config])
    if steps is not None:
        params["steps"] = steps
    if batch_size is not None:
        params["batch_size"] = batch_size
    params["seed"] = seed
    if init is not None:
        params["init"] = str(init)
        params["warmup"] = min(int(params.get("warmup", 150)), 30)  # the trunk is trained already
    if lr is not None:
        params["lr"] = lr
    if time_limit is not None:
        params["time_limit"] = time_limit * 60
    if stop_after is not None:
        params["stop_after"] = stop_after
    try:
        cfg = TrainConfig(**params)
    except InvalidRequest as exc:  # names the field: stop_after beyond --steps, a learning rate of 0...
        fail(exc)

    def log(entry: dict[str, Any]) -> None:
        line = (
            f"step {entry['step']:>6}/{entry['total_steps']}  loss {entry['loss']:.4f}  "
            f"lr {entry['lr']:.2e}  clips {entry['clips']}  {entry['elapsed']:.0f}s"
        )
        err.print(line, highlight=False)

    summary = run_train(cfg, out_dir, on_log=log)
    out.print(f"[green]trained[/] {summary['steps_run']} steps in {summary['train_seconds']:.0f}s "
              f"on {summary['hardware']}: {summary['path']}")  # fmt: skip


@app.command(name="eval")
def eval_cmd(
    target: Annotated[str, typer.Argument(help="What to evaluate: 'builtin'.")],
    n: Annotated[int, typer.Option("--n", help="Number of held-out prompts.")] = 200,
    weights: Annotated[Path | None, typer.Option("--weights", help="Checkpoint (default: the shipped one).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps.")] = 20,
    seed: Annotated[int, typer.Option("--seed")] = 1234,
    guidance: Annotated[
        float | None, typer.Option("--guidance", help="Guidance scale (default: the model's; 1: none).")
    ] = None,
    guidance_interval: Annotated[
        str | None, typer.Option("--guidance-interval", help="LO,HI: the noise levels t in 0..1 guidance acts at.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Measure the built-in model's prompt adherence on held-out captions, with frame-based detectors."""
    if target != "builtin":
        fail(InvalidRequest("target", f"unknown evaluation target {target!r}", value=target, allowed="builtin"))
    from .builtin import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL
    from .builtin.evaluate import evaluate, format_report

    interval = DEFAULT_GUIDANCE_INTERVAL
    if guidance_interval is not None:
        try:
            lo, hi = (float(v) for v in guidance_interval.split(","))
        except ValueError:
            allowed = "LO,HI with 0 <= LO <= HI <= 1, such as 0.8,1"
            message = f"must be two numbers LO,HI, got {guidance_interval!r}"
            fail(InvalidRequest("guidance_interval", message, value=guidance_interval, allowed=allowed))
            return
        interval = (lo, hi)
    try:
        report = evaluate(n=n, weights=weights, steps=steps, seed=seed, guidance_interval=interval,
                          guidance=DEFAULT_GUIDANCE if guidance is None else guidance)  # fmt: skip
    except KinemaError as exc:
        fail(exc)
        return
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        out.print(format_report(report))


_AREAS = ("kinema.cli_local", "kinema.cli_cloud", "kinema.cli_service", "kinema.cli_workflows")


def _register_areas() -> None:
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(app)


_register_areas()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
