"""Workflow commands: prompt, batch, storyboard, enhance, concat, thumbnail.

Added to the ``kinema`` app by :func:`register`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import InvalidRequest, KinemaError
from .console import err, fail, out, parse_options

PROMPT_EXAMPLES = """
Examples:

  kinema prompt --subject "a red fox" --action "trots through fresh snow" --camera tracking --lighting golden-hour

  kinema prompt --template product --subject "a glass perfume bottle" --json

  kinema prompt --list
"""

BATCH_EXAMPLES = """
Examples:

  kinema batch examples/batch.jsonl -o out/ --concurrency 2

  kinema batch prompts.csv -o out/ --backend builtin --set num_inference_steps=10 --json
"""

ENHANCE_EXAMPLES = """
Examples:

  kinema enhance clip.mp4 -o big.mp4 --upscale 4 --interpolate 2 --sharpen

  kinema enhance clip.mp4 -o scored.mp4 --trim 0.5:3 --audio music.wav

  kinema enhance clip.mp4 -o loop.gif --loop
"""


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")


# -- prompt -----------------------------------------------------------------------------------------------------------
def prompt_cmd(
    subject: Annotated[str | None, typer.Option("--subject", "-s", help="Who or what the video shows.")] = None,
    action: Annotated[str | None, typer.Option("--action", "-a", help="What the subject does.")] = None,
    setting: Annotated[str | None, typer.Option("--setting", help="Where it happens.")] = None,
    style: Annotated[str | None, typer.Option("--style", help="A library style name or free text.")] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="A library camera move or free text.")] = None,
    lighting: Annotated[str | None, typer.Option("--lighting", help="A library lighting name or free text.")] = None,
    mood: Annotated[str | None, typer.Option("--mood", help="A library mood or free text.")] = None,
    negative: Annotated[str | None, typer.Option("--negative", help="Negative prompt.")] = None,
    template: Annotated[str | None, typer.Option("--template", "-t", help="cinematic, product or nature.")] = None,
    list_library: Annotated[bool, typer.Option("--list", help="List the library and the templates.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print prompt, negative prompt and parts as JSON.")] = False,
) -> None:
    """Build a well-formed prompt from parts (subject, action, setting, style, camera, lighting, mood)."""
    from ..prompts import LIBRARY, TEMPLATES, VideoPrompt, from_template

    if list_library:
        if as_json:
            _emit_json({"library": LIBRARY, "templates": TEMPLATES})
            return
        for kind, entries in LIBRARY.items():
            out.print(f"[bold]{kind}[/]")
            for name, phrase in entries.items():
                out.print(f"  {name:<16} {phrase}", highlight=False)
        out.print("[bold]templates[/]")
        for name, template_parts in TEMPLATES.items():
            listed = ", ".join(f"{k}={v}" for k, v in template_parts.items() if v)
            out.print(f"  {name:<16} {listed}", highlight=False)
        return
    try:
        if subject is None:
            raise InvalidRequest("subject", "is required (who or what the video shows), e.g. --subject 'a red fox'")
        parts: dict[str, str | None] = {
            "subject": subject,
            "action": action,
            "setting": setting,
            "style": style,
            "camera": camera,
            "lighting": lighting,
            "mood": mood,
            "negative": negative,
        }
        if template is not None:
            prompt = from_template(template, **parts)
        else:
            prompt = VideoPrompt(**{k: v for k, v in parts.items() if v is not None})
    except KinemaError as exc:
        fail(exc)
    if as_json:
        _emit_json(prompt.to_dict())
    else:
        sys.stdout.write(prompt.render() + "\n")
        if prompt.negative:
            sys.stderr.write(f"negative prompt: {prompt.negative}\n")


# -- batch ------------------------------------------------------------------------------------------------------------
def batch_cmd(
    file: Annotated[Path, typer.Argument(help="JSONL (one request per line) or CSV (a header of field names).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the clips and batch-report.json.")],
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", help="Requests run at once.")] = 2,
    backend: Annotated[str | None, typer.Option("--backend", "-b", help="Backend for rows that name none.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Default field for every row, KEY=VALUE (repeatable); a row's own value wins."),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Report bad rows as failed and run the rest (default: refuse the whole file)."
        ),
    ] = False,
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="Result cache folder: a fixed-seed request made before is not generated again."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Generate many videos from a file of requests, resumably (a re-run skips what is done)."""
    from ..batch import REPORT_NAME, load_batch, run_batch

    try:
        defaults: dict[str, Any] = parse_options(set_) if set_ else {}
        if backend is not None:
            defaults["backend"] = backend
        try:
            rows = load_batch(file, defaults=defaults, skip_invalid=skip_invalid)
        except InvalidRequest as exc:  # the defaults come from --set: name the flag
            if not exc.field.startswith("defaults."):
                raise
            key = exc.field.removeprefix("defaults.")
            raise InvalidRequest(
                f"--set {key}", exc.message.split(": ", 1)[-1], value=exc.value, allowed=exc.allowed
            ) from None
    except KinemaError as exc:
        fail(exc)
    total = len(rows)
    finished = [0]

    def on_row(entry: dict[str, Any]) -> None:
        finished[0] += 1
        status = entry["status"]
        color = {"done": "green", "failed": "red"}.get(status, "yellow")
        detail = entry["path"] if status == "done" else (entry.get("error") or {}).get("message", "")
        err.print(f"[{finished[0]}/{total}] [{color}]{status}[/] line {entry['line']}: {detail}", highlight=False)

    try:
        report = run_batch(rows, output, concurrency=concurrency, cache=cache, on_row=on_row)
    except (KinemaError, KeyboardInterrupt) as exc:
        fail(exc)
    report.source = str(file)
    data = report.to_dict()
    if as_json:
        _emit_json(data)
    else:
        from rich.table import Table

        table = Table("line", "status", "seed", "time", "output / error")
        for row in data["rows"]:
            color = {"done": "green", "skipped": "cyan", "failed": "red"}.get(row["status"], "yellow")
            msg = row["path"] if row["status"] != "failed" else (row.get("error") or {}).get("message", "")
            t = f"{row['time']:.1f}s" if isinstance(row.get("time"), int | float) else ""
            table.add_row(str(row["line"]), f"[{color}]{row['status']}[/]", str(row.get("seed") or ""), t, msg)
        out.print(table)
        counts = data["counts"]
        done, skipped, failed = (counts.get(k, 0) for k in ("done", "skipped", "failed"))
        out.print(
            f"{done} done, {skipped} skipped, {failed} failed; report: {Path(output) / REPORT_NAME}", highlight=False
        )
    if not report.ok:
        raise typer.Exit(1)


# -- storyboard -------------------------------------------------------------------------------------------------------
def storyboard_cmd(
    file: Annotated[Path, typer.Argument(help="Storyboard file (.yaml, .yml or .json).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="The film (.mp4, .webm, .gif).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Only validate the file and print the plan.")] = False,
    cache: Annotated[Path | None, typer.Option("--cache", help="Result cache folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON on stdout.")] = False,
) -> None:
    """Make a film from a storyboard: scenes, transitions, continuity, a soundtrack and a title card."""
    from ..storyboard import check_storyboard, render_storyboard

    try:
        if check or output is None:
            if output is None and not check:
                raise InvalidRequest("output", "is required: -o film.mp4 (or --check to only validate)")
            plan = check_storyboard(file, film_suffix=(output.suffix.lower() if output else ".mp4"))
            scenes = [
                {
                    "index": p.index,
                    "prompt": p.request.prompt,
                    "start": round(plan.starts[p.index], 6),
                    "duration": p.duration,
                    "transition": str(p.transition),
                    "continuity": p.scene.continuity,
                }
                for p in plan.scenes
            ]
            summary = {
                "title": plan.board.title,
                "duration": round(plan.duration, 6),
                "fps": plan.fps,
                "scenes": scenes,
            }
            if as_json:
                _emit_json({"ok": True, **summary})
            else:
                out.print(
                    f"[green]ok[/] {plan.board.title!r}: {len(plan.scenes)} scenes, {plan.duration:g}s",
                    highlight=False,
                )
            return
        manifest = render_storyboard(
            file, output, cache=cache, on_event=lambda m: err.print(m, style="dim", highlight=False)
        )
    except (KinemaError, KeyboardInterrupt) as exc:
        fail(exc)
    if as_json:
        _emit_json(manifest)
    else:
        out.print(
            f"[green]saved[/] {manifest['film']}  ({manifest['duration']:g}s, {len(manifest['scenes'])} scenes, "
            f"{manifest['width']}x{manifest['height']} at {manifest['fps']:g} fps)",
            highlight=False,
        )


# -- enhance ----------------------------------------------------------------------------------------------------------
#: the flag that sets each (operation, parameter) of the chain ``kinema enhance`` builds, for its error messages
_ENHANCE_FLAGS = {
    ("upscale", "factor"): "--upscale",
    ("upscale", "model"): "--upscale-model",
    ("interpolate", "factor"): "--interpolate",
    ("fps", "fps"): "--fps",
    ("denoise", "strength"): "--denoise-strength",
    ("denoise", "method"): "--denoise-method",
    ("sharpen", "amount"): "--sharpen-amount",
    ("loop", "mode"): "--loop-mode",
    ("audio", "path"): "--audio",
    ("trim", "start"): "--trim",
    ("trim", "end"): "--trim",
}


def enhance_cmd(
    input: Annotated[Path, typer.Argument(help="The clip to process.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to save (.mp4, .webm, .gif, a folder).")],
    upscale: Annotated[float | None, typer.Option("--upscale", help="Enlarge by FACTOR (Lanczos).")] = None,
    upscale_model: Annotated[
        Path | None,
        typer.Option(
            "--upscale-model",
            help="A local super-resolution model file (ESRGAN etc., needs spandrel) instead of Lanczos.",
        ),
    ] = None,
    interpolate: Annotated[
        float | None, typer.Option("--interpolate", help="FACTOR times the frame rate (motion-compensated).")
    ] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Retime to N fps (motion-compensated).")] = None,
    denoise: Annotated[bool, typer.Option("--denoise", help="Spatio-temporal denoising.")] = False,
    denoise_strength: Annotated[
        float | None, typer.Option("--denoise-strength", help="0 to 10 (default 1 = moderate; implies --denoise).")
    ] = None,
    denoise_method: Annotated[
        str | None,
        typer.Option("--denoise-method", help="nlmeans (better, the default) or hqdn3d (faster); implies --denoise."),
    ] = None,
    sharpen: Annotated[bool, typer.Option("--sharpen", help="Unsharp-mask sharpening.")] = False,
    sharpen_amount: Annotated[
        float | None, typer.Option("--sharpen-amount", help="0 to 5 (default 1 = moderate; implies --sharpen).")
    ] = None,
    audio: Annotated[Path | None, typer.Option("--audio", help="Soundtrack to mux (trimmed to the video).")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Make it loop seamlessly (see --loop-mode).")] = False,
    loop_mode: Annotated[
        str | None,
        typer.Option("--loop-mode", help="crossfade (the default), pingpong or repeat; implies --loop."),
    ] = None,
    trim: Annotated[str | None, typer.Option("--trim", help="START:END in seconds, e.g. 0.5:3 or :2.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Upscale, interpolate, denoise, sharpen, trim, loop a clip and put sound under it."""
    from ..media.edit import parse_trim
    from ..media.enhance import process_file
    from ..video import probe

    try:
        if interpolate is not None and fps is not None:
            raise InvalidRequest("fps", "give --interpolate or --fps, not both")
        if upscale_model is not None and upscale is None:
            upscale = 4.0  # the usual scale of super-resolution checkpoints; their own scale is used, then fitted
        # the order matters: cut first (less to process), clean before enlarging, retime before looping
        steps: list[dict[str, Any]] = []
        if trim is not None:
            start, end = parse_trim(trim)
            steps.append({"op": "trim", "start": start, "end": end})
        # a setting of an operation asks for that operation: `--sharpen-amount 2` alone sharpens
        if denoise or denoise_strength is not None or denoise_method is not None:
            steps.append(
                {
                    "op": "denoise",
                    "strength": 1.0 if denoise_strength is None else denoise_strength,
                    "method": denoise_method or "nlmeans",
                }
            )
        if interpolate is not None:
            steps.append({"op": "interpolate", "factor": interpolate})
        if fps is not None:
            steps.append({"op": "fps", "fps": fps})
        if upscale is not None:
            steps.append({"op": "upscale", "factor": upscale, "model": str(upscale_model) if upscale_model else None})
        if sharpen or sharpen_amount is not None:
            steps.append({"op": "sharpen", "amount": 1.0 if sharpen_amount is None else sharpen_amount})
        if loop or loop_mode is not None:
            steps.append({"op": "loop", "mode": loop_mode or "crossfade"})
        if audio is not None:
            steps.append({"op": "audio", "path": str(audio)})
        if not steps:
            raise InvalidRequest(
                "operation",
                "nothing to do: give at least one of --upscale, --interpolate, --fps, "
                "--denoise, --sharpen, --audio, --loop, --trim",
            )
        try:
            path = process_file(input, output, steps)
        except InvalidRequest as exc:  # steps are built from flags: name the flag, not postprocess[i].<param>
            field = exc.field
            if field.startswith("postprocess["):
                op = steps[int(field[len("postprocess[") : field.index("]")])]["op"]
                param = field.partition("].")[2]
                flag = _ENHANCE_FLAGS.get((op, param), f"--{op}")
                raise InvalidRequest(
                    flag, exc.message.split(": ", 1)[-1], value=exc.value, allowed=exc.allowed
                ) from None
            raise
        clip = probe(path)  # the file as written (a PNG folder too), not what the steps were meant to make
    except (KinemaError, KeyboardInterrupt) as exc:
        fail(exc)
    if as_json:
        _emit_json(
            {
                "path": str(path),
                "steps": steps,
                "frames": clip["num_frames"],
                "fps": clip["fps"],
                "width": clip["width"],
                "height": clip["height"],
                "duration": clip["duration"],
                "audio": clip["audio"],
            }
        )
    else:
        sound = ", with sound" if clip["audio"] else ""
        out.print(
            f"[green]saved[/] {path}  ({clip['num_frames']} frames, {clip['width']}x{clip['height']}, "
            f"{clip['fps']:g} fps{sound})",
            highlight=False,
        )


# -- concat -----------------------------------------------------------------------------------------------------------
def concat_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="The clips, in order.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to save the joined clip.")],
    transition: Annotated[
        list[str] | None,
        typer.Option(
            "--transition", "-t", help="cut, fade:S, dissolve:S or wipe:S; once for every join, or once per join."
        ),
    ] = None,
    audio: Annotated[Path | None, typer.Option("--audio", help="Soundtrack under the result.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Join clips with transitions (each non-cut transition overlaps the two shots by its length)."""
    from ..media.edit import concat, mux_audio
    from ..video import Video

    try:
        if len(inputs) < 2:
            raise InvalidRequest("inputs", f"give at least two clips to join, got {len(inputs)}")
        clips = [Video.open(p) for p in inputs]
        spec: Any = transition[0] if transition and len(transition) == 1 else transition
        joined = concat(clips, spec)
        first = clips[0]
        warnings: list[str] = []
        for p, clip in zip(inputs[1:], clips[1:], strict=True):  # the join fits every clip to the first one
            changes = []
            if (clip.width, clip.height) != (first.width, first.height):
                crop = " (centre-cropped)" if clip.width * first.height != clip.height * first.width else ""
                changes.append(f"scaled from {clip.width}x{clip.height} to {first.width}x{first.height}{crop}")
            if abs(clip.fps - first.fps) > 1e-6:
                changes.append(f"retimed from {clip.fps:g} to {first.fps:g} fps")
            if changes:
                warnings.append(
                    f"{p}: {'; '.join(changes)}: the result takes the first clip's size and frame "
                    "rate (put another clip first to keep its own)"
                )
        for warning in warnings:
            err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
        joined.metadata = {
            **clips[0].metadata,
            "concat": {"inputs": [str(p) for p in inputs], "transitions": list(transition or ["cut"])},
        }
        path = joined.save(output)
        if audio is not None:
            mux_audio(path, audio)
    except (KinemaError, KeyboardInterrupt) as exc:
        fail(exc)
    if as_json:
        _emit_json(
            {
                "path": str(path),
                "frames": joined.num_frames,
                "fps": joined.fps,
                "duration": joined.duration,
                "width": joined.width,
                "height": joined.height,
                "audio": audio is not None,
                "warnings": warnings,
            }
        )
    else:
        out.print(f"[green]saved[/] {path}  ({joined.num_frames} frames, {joined.duration:g}s)", highlight=False)


# -- thumbnail --------------------------------------------------------------------------------------------------------
def thumbnail_cmd(
    input: Annotated[Path, typer.Argument(help="The clip.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Image to write (.png, .jpg, .webp); default: next to the clip."),
    ] = None,
    time: Annotated[
        float | None,
        typer.Option("--time", help="Seconds into the clip (default: the sharpest frame of the middle half)."),
    ] = None,
    width: Annotated[
        int | None, typer.Option("--width", help="Width in pixels of the image (with --sheet: of the whole sheet).")
    ] = None,
    sheet: Annotated[bool, typer.Option("--sheet", help="A contact sheet of evenly spaced frames instead.")] = False,
    columns: Annotated[int, typer.Option("--columns", help="Contact sheet: frames per row.")] = 4,
    count: Annotated[int, typer.Option("--count", help="Contact sheet: number of frames.")] = 12,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Save a thumbnail (one representative frame) or a contact sheet of a clip."""
    from ..media.thumbnail import contact_sheet, pick_frame, save_image, thumbnail
    from ..video import Video

    try:
        clip = Video.open(input)
        target = output or input.with_name(f"{input.stem}.{'sheet' if sheet else 'thumb'}.png")
        frame_index: int | None = None
        if sheet:
            image = contact_sheet(clip, columns=columns, count=count, width=width)
        else:
            frame_index = pick_frame(clip, time)
            image = thumbnail(clip, time, width)
        path = save_image(image, target)
    except (KinemaError, KeyboardInterrupt) as exc:
        fail(exc)
    if as_json:
        _emit_json(
            {"path": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]), "frame": frame_index}
        )
    else:
        out.print(f"[green]saved[/] {path}  ({image.shape[1]}x{image.shape[0]})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the workflow commands to the ``kinema`` app."""
    app.command(name="prompt", epilog=PROMPT_EXAMPLES)(prompt_cmd)
    app.command(name="batch", epilog=BATCH_EXAMPLES)(batch_cmd)
    app.command(name="storyboard")(storyboard_cmd)
    app.command(name="enhance", epilog=ENHANCE_EXAMPLES)(enhance_cmd)
    app.command(name="concat")(concat_cmd)
    app.command(name="thumbnail")(thumbnail_cmd)
