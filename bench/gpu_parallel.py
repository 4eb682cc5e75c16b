"""One Wan2.1-T2V-14B clip split over 1, 2, 4 and 8 GPUs (Ulysses), against plain diffusers on one GPU, in one run.

The full-size checkpoint (WanTransformer3DModel 14B from the published config, UMT5-XXL, Wan VAE) is built with
random weights and saved in the diffusers layout (``gpu_wan.build_checkpoint``), so nothing is downloaded. Then:

- **diffusers, 1 GPU**: ``WanPipeline`` as diffusers' Wan docs load it (VAE float32, the rest bf16), one process;
- **Kinema, 1 GPU**: ``kinema.engine.run`` with the diffusers backend, one process;
- **Kinema, ulysses=N**: ``kinema.launch.launch(..., gpus=N)``, which is what ``kinema generate --gpus N`` runs: N
  processes (NCCL), one sequence split N ways, rank 0 writing the video.

720x1280, 81 frames, classifier-free guidance, the same prompt, seed and steps everywhere. The figure is seconds per
denoising step (the median gap between consecutive step events, after the first step, which includes warm-up), read
the same way for every row: a launched group starts its processes and loads the model for each clip, so its end to
end time (also shown) mixes loading with the work being split. Parallel efficiency at N GPUs = t(1 GPU, Kinema) /
(N x t(N GPUs)); the issue's target is >= 0.8 at 4 GPUs.

    python bench/gpu_parallel.py                    # on a machine with CUDA GPUs; rows for as many as it has
    python bench/gpu_parallel.py --gpus 1,2,4 --steps 10
    python bench/gpu_parallel.py --tiny --json      # CPU smoke run: 1 and 2 gloo processes on a tiny checkpoint
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

from gpu_wan import GUIDANCE, NEGATIVE, PROMPT, SEED, build_checkpoint, free_memory  # noqa: E402

FULL = {"height": 720, "width": 1280, "num_frames": 81}
TINY = {"height": 32, "width": 32, "num_frames": 5}


@dataclass
class Row:
    setup: str
    gpus: int
    step_s: float | None = None  # median seconds per denoising step, after the first
    clip_s: float | None = None  # end to end: a launched group includes starting the processes and loading
    frames: int | None = None
    skipped: str | None = None


class StepClock:
    """Times between consecutive denoising step events."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, event: Any) -> None:
        if getattr(event, "stage", None) == "denoising" and getattr(event, "step", 0) > 0:
            self.times.append(time.perf_counter())

    def median_step(self) -> float | None:
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return statistics.median(gaps) if gaps else None


def _request(folder: Path, size: dict[str, int], steps: int, device: str, options: dict[str, Any]) -> Any:
    from kinema.request import VideoRequest

    opts: dict[str, Any] = {"device": device, **options}
    if size is TINY:
        opts["max_sequence_length"] = 32  # keeps the tiny UMT5 cheap
    return VideoRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        guidance_scale=GUIDANCE,
        seed=SEED,
        backend="diffusers",
        model=str(folder),
        width=size["width"],
        height=size["height"],
        num_frames=size["num_frames"],
        num_inference_steps=steps,
        options=opts,
    )


def plain_diffusers(folder: Path, size: dict[str, int], steps: int, device: str) -> Row:
    from diffusers import AutoencoderKLWan, WanPipeline

    row = Row("diffusers", 1)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", dtype=torch.float32)
    pipe = WanPipeline.from_pretrained(folder, vae=vae, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    clock = StepClock()

    def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()  # a step event means the step's work is done, as in Kinema's rows
        clock.times.append(time.perf_counter())
        return kwargs

    extra = {"max_sequence_length": 32} if size is TINY else {}
    start = time.perf_counter()
    with torch.inference_mode():
        frames = pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            guidance_scale=GUIDANCE,
            output_type="np",
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(SEED),
            callback_on_step_end=on_step,
            **size,
            **extra,
        ).frames
    row.clip_s, row.frames, row.step_s = time.perf_counter() - start, int(frames.shape[1]), clock.median_step()
    del pipe, vae
    free_memory()
    return row


def kinema_one(folder: Path, size: dict[str, int], steps: int, device: str) -> Row:
    from kinema import engine
    from kinema.backends import get_backend

    row = Row("kinema", 1)
    request = _request(folder, size, steps, device, {})
    engine.run(request)  # the first clip loads the pipeline
    clock = StepClock()
    start = time.perf_counter()
    result = engine.run(request, on_progress=clock)
    row.clip_s, row.frames, row.step_s = time.perf_counter() - start, result.video.num_frames, clock.median_step()
    get_backend("diffusers")._loaded = None  # type: ignore[attr-defined]
    free_memory()
    return row


def kinema_split(folder: Path, size: dict[str, int], steps: int, device: str, gpus: int, out: Path) -> Row:
    from kinema.errors import KinemaError
    from kinema.launch import launch

    row = Row(f"kinema-ulysses{gpus}", gpus)
    request = _request(folder, size, steps, device, {"ulysses": gpus})
    clock = StepClock()
    start = time.perf_counter()
    try:
        run = launch(request, gpus=gpus, output=out / f"split{gpus}.mp4", on_progress=clock)
    except KinemaError as exc:  # refused: say why instead of a figure
        row.skipped = str(exc).splitlines()[0]
        return row
    row.clip_s, row.step_s = time.perf_counter() - start, clock.median_step()
    from kinema.video import probe

    row.frames = int(probe(run.path)["num_frames"]) if run.path else None
    return row


def table(rows: list[Row]) -> str:
    base = next((r.step_s for r in rows if r.setup == "kinema" and r.step_s), None)
    plain = next((r.step_s for r in rows if r.setup == "diffusers" and r.step_s), None)
    lines = [
        "| setup | GPUs | s / step | vs diffusers 1 GPU | parallel efficiency | s / clip, end to end |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.skipped or r.step_s is None:
            lines.append(
                f"| {r.setup} | {r.gpus} | not run: {(r.skipped or 'no step events').replace('|', '/')} | | | |"
            )
            continue
        vs = f"{plain / r.step_s:.2f}x" if plain else ""
        eff = f"{base / (r.gpus * r.step_s):.2f}" if base and r.setup.startswith("kinema") else ""
        lines.append(f"| {r.setup} | {r.gpus} | {r.step_s:.3f} | {vs} | {eff} | {r.clip_s:.1f} |")
    return "\n".join(lines)


def report(gpu: str, steps: int, size: dict[str, int], rows: list[Row], tiny: bool) -> str:
    arch = (
        "Tiny configs (a smoke run on CPU processes with gloo, not a measurement)"
        if tiny
        else ("Wan2.1-T2V-14B, full-size architecture")
    )
    return "\n".join(
        [
            "## One clip on several GPUs: Wan2.1-T2V-14B with Ulysses (`bench/gpu_parallel.py`)",
            "",
            f"GPUs: **{gpu}**. {arch} with random weights, {size['height']}x{size['width']}, {size['num_frames']} "
            f"frames, {steps} steps with classifier-free guidance (guidance {GUIDANCE}), torch {torch.__version__}. "
            "s / step: the median time between denoising steps after the first. Parallel efficiency: Kinema on 1 GPU "
            "/ (GPUs x s / step). End to end includes starting the processes and loading the model for a split run.",
            "",
            table(rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny checkpoint (no GPU needed)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 20; --tiny: 3)")
    ap.add_argument(
        "--gpus", default=None, help="comma-separated group sizes (default: 2, 4, 8 up to the GPUs present; --tiny: 2)"
    )
    ap.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="where to save the random checkpoint (default: a "
        "temporary folder, removed after; the full one takes about 40 GB)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md (--tiny never writes)")
    args = ap.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print(
            "error: bench/gpu_parallel.py measures GPUs and needs CUDA, which is not available here "
            "(run it on a CUDA machine, or use --tiny for a CPU smoke run)",
            file=sys.stderr,
        )
        return 2
    present = torch.cuda.device_count() if not args.tiny else 2
    try:
        groups = [int(g) for g in args.gpus.split(",")] if args.gpus else [g for g in (2, 4, 8) if g <= present]
    except ValueError:
        print(f"error: --gpus: expected comma-separated whole numbers, got {args.gpus!r}", file=sys.stderr)
        return 2
    if any(g < 2 or g > present for g in groups):
        print(f"error: --gpus: each group size must be 2 to {present} (the GPUs present)", file=sys.stderr)
        return 2
    device = "cpu" if args.tiny else "cuda"
    steps = args.steps or (3 if args.tiny else 20)
    size = TINY if args.tiny else FULL
    gpu = f"{present} x {torch.cuda.get_device_name(0)}" if not args.tiny else "CPU (tiny smoke run)"

    with tempfile.TemporaryDirectory(prefix="gpu-parallel-") as tmp:
        folder = args.folder or Path(tmp) / "wan2.1-t2v-14b-random"
        if not (folder / "model_index.json").is_file():
            build_checkpoint(folder, args.tiny, device, variant="14b")
        gc.collect()
        rows = [plain_diffusers(folder, size, steps, device), kinema_one(folder, size, steps, device)]
        rows += [kinema_split(folder, size, steps, device, g, Path(tmp)) for g in groups]
    text = report(gpu, steps, size, rows, args.tiny)
    from _report import emit

    figures = {"gpu": gpu, "steps": steps, "size": size, "rows": [asdict(r) for r in rows]}
    emit("gpu_parallel", text, figures, as_json=args.json, write=not args.tiny and not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
