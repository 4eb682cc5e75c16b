"""The built-in model's own commands: ``kinema train builtin`` and ``kinema eval builtin``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidRequest, KinemaError
from .console import CountBar, err, fail, out

__all__ = ["register", "train", "eval_cmd", "explain_cmd"]


def train(
    target: Annotated[str, typer.Argument(help="What to train: 'builtin'.")],
    config: Annotated[
        str, typer.Option("--config", help="tiny, cpu, full (v1, pixels); v2, tiny-v2 (latent).")
    ] = "cpu",
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
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start from these weights: the same model's (fine-tune), or for v2 a v1 checkpoint, whose trunk "
            "carries over (the shipped one: src/kinema/builtin/weights/builtin.safetensors).",
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    i2v_only: Annotated[
        bool,
        typer.Option(
            "--i2v-only",
            help="Train only what text-to-video never uses (the known frames' input weights and the ref gate): "
            "with --init, image-to-video improves and text-to-video stays to the bit.",
        ),
    ] = False,
    train_only: Annotated[
        list[str] | None,
        typer.Option(
            "--train-only",
            help="Train only the parameters whose names start with this (repeatable; e.g. ref_gate. with --init: "
            "the image-to-video gate alone, text-to-video unchanged).",
        ),
    ] = None,
    stage: Annotated[
        str,
        typer.Option(
            "--stage",
            help="A latent config (v2): 'all' (the autoencoder, the DiT, then the decoder), 'autoencoder', 'dit' "
            "or 'decoder' (fine-tunes the decoder inside OUT/builtin.safetensors, keeping its latent).",
        ),
    ] = "all",
    autoencoder: Annotated[
        Path | None,
        typer.Option(
            "--autoencoder",
            help="A latent config's DiT stage: the autoencoder to use (default: "
            "OUT/autoencoder/autoencoder.safetensors).",
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads (default: torch's).")] = None,
) -> None:
    """Train the built-in model from scratch on the procedural world (seeded and reproducible).

    A latent configuration (v2, tiny-v2) trains in three stages, each resumable on its own (run the command again to
    continue it): the video autoencoder in OUT/autoencoder, the diffusion transformer in its latent (OUT; --init
    continues it from a checkpoint), then the decoder alone in OUT/decoder, written back into OUT/builtin.safetensors.
    """
    if target != "builtin":
        fail(InvalidRequest("target", f"unknown training target {target!r}", value=target, allowed="builtin"))
    from ..builtin.train import AUTOENCODER_STAGE, DECODER_STAGE, TRAIN_PRESETS, TrainConfig
    from ..builtin.train import train as run_train

    if config not in TRAIN_PRESETS:
        fail(InvalidRequest("config", f"unknown config {config!r}", value=config, allowed=", ".join(TRAIN_PRESETS)))
    stages = ("all", "autoencoder", "dit", "decoder")
    if stage not in stages:
        fail(InvalidRequest("stage", f"unknown stage {stage!r}", value=stage, allowed=", ".join(stages)))
    latent = config in AUTOENCODER_STAGE
    if not latent and (stage != "all" or autoencoder is not None):
        name = "stage" if stage != "all" else "autoencoder"
        fail(
            InvalidRequest(
                name,
                f"the config {config!r} works on pixels: it has no autoencoder stage",
                allowed=f"a latent config ({', '.join(AUTOENCODER_STAGE)})",
            )
        )
    if latent and stage != "dit" and autoencoder is not None:
        fail(
            InvalidRequest(
                "autoencoder",
                "is the DiT stage's input; with it, give --stage dit",
                allowed="--stage dit --autoencoder FILE",
            )
        )
    if latent and stage == "decoder":
        _decoder_stage(DECODER_STAGE[config], out_dir, steps, time_limit, threads)
        return
    if latent and stage in ("all", "autoencoder"):
        ae_path = _train_autoencoder_stage(AUTOENCODER_STAGE[config], out_dir / "autoencoder", seed, threads)
        if stage == "autoencoder":
            return
        autoencoder = ae_path
    params = dict(TRAIN_PRESETS[config])
    if latent:
        path = autoencoder or out_dir / "autoencoder" / "autoencoder.safetensors"
        if not path.is_file():
            allowed = "the autoencoder stage's autoencoder.safetensors (--stage autoencoder)"
            fail(InvalidRequest("autoencoder", f"{path} is not a file", value=str(path), allowed=allowed))
        params["autoencoder"] = str(path)
    if threads is not None:
        params["threads"] = threads
    if steps is not None:
        params["steps"] = steps
    if batch_size is not None:
        params["batch_size"] = batch_size
    params["seed"] = seed
    if init is not None:
        params["init"] = str(init)
        if _same_space(init, str(params["model"])):  # the whole model is trained already
            params["warmup"] = min(int(params.get("warmup", 150)), 30)
        # else a latent model from a pixel one: its fresh patch embedding and head need the preset's warm-up
    if lr is not None:
        params["lr"] = lr
    if train_only:
        params["train_only"] = tuple(train_only)
    if i2v_only:
        params["i2v_only"] = True
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

    # the log lines stay (they are the run's record, in a terminal and in a log file); a terminal also gets a bar
    with CountBar(err.is_terminal, "training", console=err) as bar:
        try:
            summary = run_train(cfg, out_dir, on_log=log, on_step=bar)
        except InvalidRequest as exc:  # a --train-only prefix that names no parameter: before any clip is rendered
            fail(exc)
    out.print(
        f"[green]trained[/] {summary['steps_run']} steps in {summary['train_seconds']:.0f}s "
        f"on {summary['hardware']}: {summary['path']}"
    )
    if latent and stage == "all":
        _decoder_stage(DECODER_STAGE[config], out_dir, None, None, threads)


def _same_space(init: Path, model: str) -> bool:
    """Whether the checkpoint ``init`` works in the space of the model configuration ``model``; refuses a file that
    is not a built-in model checkpoint, naming --init."""
    from ..builtin import checkpoint_config, is_checkpoint
    from ..builtin.model import CONFIGS, ModelConfig

    if not is_checkpoint(init):
        fail(
            InvalidRequest(
                "init",
                f"{init} is not a built-in model checkpoint",
                value=str(init),
                allowed="a builtin.safetensors written by kinema train builtin",
            )
        )
    have, want, default = checkpoint_config(init), CONFIGS[model], ModelConfig()  # older headers omit defaults
    return all(
        have.get(k, getattr(default, k)) == want.get(k, getattr(default, k)) for k in ("latent_factor", "channels")
    )


def _decoder_stage(preset: str, out_dir: Path, steps: int | None, minutes: float | None, threads: int | None) -> None:
    """Fine-tune the decoder inside OUT/builtin.safetensors (OUT/decoder resumes it) and write it back there."""
    from ..builtin.train import finetune_decoder

    checkpoint = out_dir / "builtin.safetensors"
    if not checkpoint.is_file():
        fail(
            InvalidRequest(
                "stage",
                f"{checkpoint} is not a file: the decoder stage follows the DiT's",
                allowed="--stage dit first (or --stage all)",
            )
        )
    overrides: dict[str, Any] = {"threads": threads}
    if steps is not None:
        overrides["steps"] = steps
    if minutes is not None:
        overrides["time_limit"] = minutes * 60

    def log(entry: dict[str, Any]) -> None:
        err.print(
            f"decoder step {entry['step']:>6}/{entry['total_steps']}  loss {entry['loss']:.4f}  "
            f"psnr {entry['psnr']:.1f} dB  {entry['elapsed']:.0f}s",
            highlight=False,
        )

    try:
        summary = finetune_decoder(checkpoint, preset, out_dir / "decoder", overrides=overrides, on_log=log)
    except InvalidRequest as exc:
        fail(exc)
    except ValueError as exc:  # not a v2 checkpoint, or an encoder that changed
        fail(InvalidRequest("stage", str(exc), allowed="a v2 checkpoint written by --stage dit"))
    out.print(f"[green]decoder[/] {summary['steps_run']} steps: {summary['path']}")


def _train_autoencoder_stage(preset: str, out_dir: Path, seed: int, threads: int | None) -> Path:
    """Train (or continue: the folder's ae_state.pt resumes it) the autoencoder of a latent configuration."""
    from ..builtin.train_autoencoder import AE_TRAIN_PRESETS, AETrainConfig, train_autoencoder

    cfg = AETrainConfig(**{**AE_TRAIN_PRESETS[preset], "seed": seed, "threads": threads})

    def log(entry: dict[str, Any]) -> None:
        err.print(
            f"autoencoder step {entry['step']:>6}/{entry['total_steps']}  loss {entry['loss']:.4f}  "
            f"psnr {entry['psnr']:.1f} dB  {entry['elapsed']:.0f}s",
            highlight=False,
        )

    summary = train_autoencoder(cfg, out_dir, on_log=log)
    out.print(f"[green]autoencoder[/] {summary['steps_run']} steps: {summary['path']}")
    return Path(summary["path"])


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
        str | None,
        typer.Option("--guidance-interval", help="LO,HI: the t in 0..1 guidance acts at (default: the model's)."),
    ] = None,
    motion_guidance: Annotated[
        float | None,
        typer.Option("--motion-guidance", help="Motion guidance scale (default: the model's; 0: none)."),
    ] = None,
    image_guidance: Annotated[
        float | None,
        typer.Option(
            "--image-guidance", help="Image guidance scale for image-to-video and extension (default: the model's)."
        ),
    ] = None,
    shift: Annotated[
        float | None,
        typer.Option(
            "--shift", help="The sampling schedule's shift towards noise (default: the model's, 5 for the shipped v2)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    sheet: Annotated[
        Path | None,
        typer.Option("--sheet", help="Also write a contact sheet (.png) of the seeds' example prompts."),
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="An earlier --json report on the same --n and --seed: compare clip by clip, with the paired error.",
        ),
    ] = None,
) -> None:
    """Measure the built-in model's prompt adherence on held-out captions, with frame-based detectors."""
    if target != "builtin":
        fail(InvalidRequest("target", f"unknown evaluation target {target!r}", value=target, allowed="builtin"))
    if sheet is not None and sheet.suffix.lower() != ".png":
        fail(InvalidRequest("sheet", f"{sheet.name} is not a .png file", value=str(sheet), allowed="FILE.png"))
    if weights is not None and not weights.is_file():
        fail(InvalidRequest("weights", f"no file {weights}", value=str(weights), allowed="a checkpoint file"))
    from ..builtin.evaluate import evaluate, format_paired, format_report, paired_difference

    base = _earlier_report(against, n, seed) if against is not None else None
    interval = None  # the checkpoint's own (builtin.sampling_defaults)
    if guidance_interval is not None:
        try:
            lo, hi = (float(v) for v in guidance_interval.split(","))
        except ValueError:
            allowed = "LO,HI with 0 <= LO <= HI <= 1, such as 0.8,1"
            message = f"must be two numbers LO,HI, got {guidance_interval!r}"
            fail(InvalidRequest("guidance_interval", message, value=guidance_interval, allowed=allowed))
        interval = (lo, hi)
    try:
        with CountBar(err.is_terminal and not as_json, "evaluating (clips)", console=err) as bar:
            report = evaluate(
                n=n,
                weights=weights,
                steps=steps,
                seed=seed,
                guidance_interval=interval,
                guidance=guidance,
                motion_guidance=motion_guidance,
                image_guidance=image_guidance,
                shift=shift,
                on_progress=bar,
            )
    except KinemaError as exc:
        fail(exc)
    if base is not None:
        try:
            report["against"] = {"path": str(against), **paired_difference(base, report)}
        except KinemaError as exc:  # the same n and seed from another version of the world
            fail(exc)
    if sheet is not None:
        from PIL import Image

        from ..builtin.sheet import contact_sheet

        drawn = contact_sheet(weights=str(weights) if weights else None, steps=steps)
        sheet.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn.image).save(sheet)
        report["sheet"] = {"path": str(sheet), "rows": drawn.rows}
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        out.print(format_report(report))
        if base is not None:
            out.print(format_paired(report["against"]), highlight=False)
        if sheet is not None:
            err.print(f"wrote the contact sheet {sheet}", highlight=False)


def _earlier_report(path: Path, n: int, seed: int) -> dict[str, Any]:
    """The report ``--against`` names, refused before an evaluation runs when it cannot be compared with this one."""
    allowed = "a report written by kinema eval builtin --json, with the same --n and --seed"
    try:
        report = json.loads(path.read_text())
    except OSError as exc:
        fail(InvalidRequest("against", f"cannot read {path}: {exc.strerror}", value=str(path), allowed=allowed))
    except (ValueError, UnicodeDecodeError):
        fail(InvalidRequest("against", f"{path} is not JSON", value=str(path), allowed=allowed))
    if not isinstance(report, dict) or "clip_checks" not in report:
        message = f"{path} has no per-clip checks (a report from before they existed, or not an evaluation's)"
        fail(InvalidRequest("against", message, value=str(path), allowed=allowed))
    if (report.get("n"), report.get("seed")) != (n, seed):
        message = f"{path} was drawn with n {report.get('n')} and seed {report.get('seed')}, not n {n} and seed {seed}"
        fail(InvalidRequest("against", message, value=str(path), allowed=allowed))
    return report


def explain_cmd(
    prompt: Annotated[str, typer.Argument(help="What the clip shows (as for 'kinema generate').")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The sheet to write (.png).")] = Path("explain.png"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps (2 to 200).")] = 20,
    columns: Annotated[int, typer.Option("--columns", help="How many denoising steps to show (2 to --steps).")] = 6,
    weights: Annotated[Path | None, typer.Option("--weights", help="Checkpoint (default: the one in use).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what the sheet shows as JSON.")] = False,
) -> None:
    """Draw how the built-in model makes a clip: denoising step by step, the clip, guidance, and its tokens."""
    from ..request import VideoRequest

    try:
        prompt = VideoRequest(prompt=prompt).prompt  # the same prompt rules as generate
        if output.suffix.lower() != ".png":
            raise InvalidRequest("output", f"{output.name} is not a .png file", value=str(output), allowed="FILE.png")
        if not 2 <= steps <= 200:
            raise InvalidRequest("steps", f"must be 2 to 200, got {steps}", value=steps, allowed="2 to 200")
        if not 2 <= columns <= steps:
            raise InvalidRequest(
                "columns", f"must be 2 to --steps ({steps}), got {columns}", value=columns, allowed=f"2 to {steps}"
            )
        if weights is not None and not weights.is_file():
            raise InvalidRequest("weights", f"no file {weights}", value=str(weights), allowed="a checkpoint file")
        from PIL import Image

        from ..builtin.explain import explain

        sheet = explain(prompt, seed=seed, steps=steps, columns=columns, weights=str(weights) if weights else None)
        output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sheet.image).save(output)
    except Exception as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps({"output": str(output), **sheet.info, "panels": sheet.panels}) + "\n")
    else:
        err.print(
            f"wrote {output} ({sheet.image.shape[1]}x{sheet.image.shape[0]}): "
            + "; ".join(p["title"] for p in sheet.panels),
            highlight=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command(name="eval")(eval_cmd)
    app.command(name="explain")(explain_cmd)
