"""The core commands: ``kinema generate``, ``kinema info`` and ``kinema backends``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import Cancelled, InvalidRequest, KinemaError
from .console import ProgressBar, err, fail, interrupt_cancels, out, parse_options

__all__ = ["register", "generate", "info", "backends"]

GENERATE_EXAMPLES = """
Examples:

  kinema generate "A cinematic sunrise over mountains, clouds moving slowly" -o sunrise.mp4

  kinema generate "a red ball bouncing on green grass" --seed 7 --frames 28 --json

  kinema generate "the camera pans right" --image first_frame.png -o moving.mp4

  kinema generate --from sunrise.mp4 -o again.mp4

  kinema generate "the same valley at night" --edit sunrise.mp4 --strength 0.3 -o night.mp4

  kinema generate "a sunset over the ocean" --image first.png --last-image last.png -o between.mp4

  kinema generate "a ball rolls across the lawn" --keyframe 1=middle.png --last-image end.png -o timed.mp4
"""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _run_split(the_plan: Any, output: Path, gpus: int, token: Any, as_json: bool) -> None:
    """``--gpus N``: the planned request (its seed fixed, so every rank draws the same noise) on N rank processes."""
    from ..launch import launch

    if the_plan.backend.name != "diffusers":
        raise InvalidRequest(
            "gpus",
            f"backend {the_plan.backend.name!r} runs on one device",
            value=gpus,
            allowed="1, or --backend diffusers with --option ulysses=N",
        )
    request = the_plan.request.model_copy(update={"seed": the_plan.params.seed})
    with ProgressBar(enabled=err.is_terminal and not as_json) as bar, interrupt_cancels(token):
        run = launch(request, gpus=gpus, output=output, on_progress=bar, cancel=token)
    _print_warnings(run.warnings)
    if as_json:
        sys.stdout.write(
            json.dumps({"path": run.path, "recipe": run.recipe, "warnings": run.warnings}, default=str) + "\n"
        )
    else:
        out.print(f"[green]saved[/] {run.path}  (split over {gpus} processes, seed {request.seed})")


def _keyframes(given: list[str] | None) -> list[dict[str, Any]] | None:
    """``--keyframe TIME=IMAGE`` flags as the request's ``keyframes`` (the time in seconds; the image a path or a
    URL, which may hold '=' itself: only the first one splits)."""
    out: list[dict[str, Any]] = []
    for i, text in enumerate(given or []):
        time, sep, image = text.partition("=")
        try:
            seconds = float(time) if sep and image else None
        except ValueError:
            seconds = None
        if seconds is None:
            raise InvalidRequest(
                f"keyframes[{i}]",
                f"--keyframe {text!r} is not TIME=IMAGE",
                value=text,
                allowed="seconds from the clip's start, '=', a path or URL: e.g. 1.5=middle.png",
            )
        out.append({"time": seconds, "image": image})
    return out or None


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


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
    edit: Annotated[
        str | None, typer.Option("--edit", help="Clip to edit: redrawn after the prompt, keeping its layout.")
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option("--strength", help="With --edit: 0 keeps the source, 1 ignores it (default: the backend's)."),
    ] = None,
    last_image: Annotated[
        str | None, typer.Option("--last-image", help="Image (path or URL) the clip ends on: keyframes.")
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option("--reference", help="Reference image of the subject or style (repeatable)."),
    ] = None,
    keyframe: Annotated[
        list[str] | None,
        typer.Option(
            "--keyframe",
            metavar="TIME=IMAGE",
            help="An image (path or URL) the clip shows TIME seconds from its start (repeatable, increasing times): "
            "timed keyframes, on the backends that take them.",
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", "-b", help="Engine (see 'kinema backends').")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model id of the backend.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed; -1 or none for random.")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Number of frames.")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Length in seconds.")] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Frames per second.")] = None,
    size: Annotated[str | None, typer.Option("--size", help="WIDTHxHEIGHT, e.g. 128x128.")] = None,
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
    gpus: Annotated[
        int,
        typer.Option(
            "--gpus",
            min=1,
            help="Split one video over N GPUs (diffusers models with --option ulysses=N or ring=N; docs/models.md).",
        ),
    ] = 1,
    keep_task: Annotated[
        bool,
        typer.Option(
            "--keep-task-on-interrupt",
            help="On Ctrl-C leave a cloud provider's task running (and billed), for 'kinema resume'; by default "
            "Ctrl-C cancels it at the provider.",
        ),
    ] = False,
) -> None:
    """Generate a video from a prompt (and optionally an image or a clip to start from, continue or edit).

    Ctrl-C cancels the generation, and a cloud provider's task with it where the provider has a cancel.
    """
    from .. import engine
    from ..backends.base import CancelToken
    from ..backends.remote import resume_file_for
    from ..planner import plan
    from ..request import VideoRequest
    from ..resume import task_recorder
    from ..video import read_metadata
    from ..vocabulary import request_fields

    try:
        # the CLI's names (--steps, --frames, --negative, --guidance, --size) are translated in one table
        fields: dict[str, Any] = request_fields(
            {
                "prompt": prompt,
                "image": image,
                "video": video,
                "edit": edit,
                "strength": strength,
                "last_image": last_image,
                "references": reference or None,
                "keyframes": _keyframes(keyframe),
                "backend": backend,
                "model": model,
                "seed": seed,
                "frames": frames,
                "duration": duration,
                "fps": fps,
                "aspect_ratio": aspect_ratio,
                "resolution": resolution,
                "steps": steps,
                "guidance": guidance,
                "negative": negative,
                "format": fmt,
                "size": size,
            }
        )
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
        adjusted = list(the_plan.params.warnings)  # what planning changed from the request: said before it runs
        if not as_json:
            _print_warnings(adjusted)
        if show_plan:
            if as_json:
                sys.stdout.write(json.dumps({**the_plan.to_dict(), "warnings": adjusted}) + "\n")
            else:
                out.print(str(the_plan), highlight=False, markup=False)
            return
        assert output is not None
        # a cloud backend's task id is written next to the output the moment it is known, so `kinema resume`
        # can finish a paid generation after a crash; the record goes once the video is saved
        token = CancelToken()
        if gpus > 1:
            _run_split(the_plan, output, gpus, token, as_json)
            return
        with (
            ProgressBar(enabled=err.is_terminal and not as_json) as bar,
            interrupt_cancels(token, keep_provider_task=keep_task),
        ):
            result = engine.run(the_plan, on_progress=bar, on_task_id=task_recorder(output), cancel=token)
        resume_file_for(output).unlink(missing_ok=True)
    except (KinemaError, KeyboardInterrupt) as exc:
        if output is not None and isinstance(exc, Cancelled) and (exc.provider_cancel or {}).get("called"):
            resume_file_for(output).unlink(missing_ok=True)  # the provider's task is cancelled: nothing to resume
        elif output is not None and resume_file_for(output).exists():
            err.print(f"the provider's task may still run; 'kinema resume {output}' picks it up", highlight=False)
        fail(exc)
    _print_warnings([w for w in result.warnings if w not in adjusted])
    if as_json:
        data = result.to_dict()
        data["warnings"] = [*adjusted, *(w for w in data.get("warnings") or [] if w not in adjusted)]
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        t = result.timings.get("total", 0.0)
        out.print(
            f"[green]saved[/] {result.path}  ({result.video.num_frames} frames, {result.video.width}x"
            f"{result.video.height}, {result.video.fps:g} fps, seed {result.seed}, {t:.1f}s)"
        )


#: the recipe's values that describe the generated clip; post-processing can change each in the file
_GENERATED = ("width", "height", "num_frames", "fps")


def _describe(clip: dict[str, Any]) -> str:
    sound = ", with sound" if clip.get("audio") else ""
    seconds = clip["num_frames"] / clip["fps"] if clip["fps"] else 0.0  # a stream without a rate: no length
    return (
        f"{clip['width']}x{clip['height']}, {clip['num_frames']} frames at {clip['fps']:g} fps "
        f"({seconds:.3g} s){sound}"
    )


def info(
    path: Annotated[Path, typer.Argument(help="A video made by Kinema.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the recipe as JSON, with the file as it is under 'file'.")
    ] = False,
) -> None:
    """Show a video as it is (size, frames, fps) and the recipe stored in it (prompt, seed, every parameter)."""
    from ..video import probe, read_metadata

    try:
        recipe = read_metadata(path)
        clip = probe(path)
    except KinemaError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps({**recipe, "file": clip}, default=str) + "\n")
        return
    table = Table(show_header=False, box=None)
    table.add_row("[bold]file[/]", escape(_describe(clip)))
    generated = {k: recipe.get(k) for k in _GENERATED}
    if all(isinstance(v, int | float) and v for v in generated.values()) and any(
        generated[k] != clip[k] for k in _GENERATED
    ):
        # the recipe's size, frames and fps are what the model made; steps after it changed the file
        changed = [str(s.get("op")) for s in recipe.get("postprocess") or [] if isinstance(s, dict)]
        if recipe.get("concat"):
            changed.append("concat")
        why = f" (then: {', '.join(changed)})" if changed else ""
        table.add_row("[bold]generated[/]", escape(_describe(generated)) + escape(why))
    for key in sorted(recipe):
        value = recipe[key]
        if key in (*_GENERATED, "duration") or value is None or value == {} or value == []:
            continue
        shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
        table.add_row(f"[bold]{key}[/]", escape(shown))
    out.print(table)


def backends(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List every backend and whether it can run here; if not, exactly why."""
    from ..backends import list_backends

    infos = list_backends()
    if as_json:
        sys.stdout.write(json.dumps([i.to_dict() for i in infos]) + "\n")
        return
    table = Table("backend", "usable", "modes", "notes")
    for i in infos:
        mark = "[green]yes[/]" if i.usable else "[red]no[/]"
        note = escape(i.description) if i.usable else f"[red]{escape(i.reason or '')}[/]"
        if i.notes:
            note = f"[yellow]{escape(i.notes)}[/]\n{note}"
        name = f"{i.name} (default)" if i.default else i.name
        table.add_row(name, mark, ", ".join(i.modes), note)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command(epilog=GENERATE_EXAMPLES)(generate)
    app.command()(info)
    app.command()(backends)
