"""Wan2.1-T2V-1.3B on one GPU: plain diffusers against Kinema's backend, every setup side by side in one run.

The full-size checkpoint (WanTransformer3DModel 1.3B, UMT5-XXL text encoder, Wan VAE, from the published configs of
Wan-AI/Wan2.1-T2V-1.3B-Diffusers) is built with random weights on the GPU and saved to a folder in the diffusers
layout, so nothing is downloaded; every setup then loads that folder the way its user would:

- **diffusers**: as diffusers' Wan docs recommend (``wan.md``): the VAE loaded in float32, the rest in bf16,
  ``pipe.to("cuda")``, PyTorch SDPA attention;
- **diffusers + compile**: the same, plus ``pipe.transformer.compile_repeated_blocks(fullgraph=True)`` (diffusers'
  regional compilation);
- **Kinema** rows: ``kinema.generate(..., backend="diffusers", model=FOLDER, options=...)``, so the backend's own
  loader, dtype choices and options run, not a hand-built pipeline: its defaults, its fastest lossless settings
  (``compile=true``), compile with FirstBlockCache (lossy), and each ``quantize`` mode with compile. A mode the card
  or the installed libraries cannot run is listed with the reason Kinema gives, not measured.

480x832, 81 frames, classifier-free guidance, the same prompt, negative prompt, seed and steps for every setup. Each
setup runs twice: the first clip includes loading and compilation; the second is the figure (end-to-end seconds per
clip: text encoding + denoising + VAE decode) with the peak GPU memory of that run. Speed and memory do not depend on
the weights' values, except FirstBlockCache's skips, which depend on how much the first block's output changes
between steps (random weights are not trained ones: that row is indicative only).

    python bench/gpu_wan.py                    # on a CUDA machine; writes its section of BENCHMARKS.md
    python bench/gpu_wan.py --steps 50         # the authors' step count (default 20)
    python bench/gpu_wan.py --setups diffusers,kinema-fast
    python bench/gpu_wan.py --tiny --json      # CPU smoke run of the same code on a tiny checkpoint (the test runs it)
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the loading bars of every setup would bury the table
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

FULL = {"height": 480, "width": 832, "num_frames": 81}
TINY = {"height": 32, "width": 32, "num_frames": 5}
PROMPT = "a cat and a dog dancing on the beach at sunset, cinematic"
NEGATIVE = "blurry, low quality"
GUIDANCE = 5.0
SEED = 0

#: Kinema rows: name -> (options on top of the device, what the row shows)
KINEMA_SETUPS: dict[str, tuple[dict[str, Any], str]] = {
    "kinema": ({}, "Kinema defaults (bf16, SDPA, VAE fp32)"),
    "kinema-fast": ({"compile": True}, "Kinema fastest lossless: compile=true"),
    "kinema-fbcache": (
        {"compile": True, "cache": "firstblock", "cache_threshold": 0.05},
        "Kinema compile=true, cache=firstblock (0.05; lossy)",
    ),
    **{
        f"kinema-{mode}": ({"compile": True, "quantize": mode}, f"Kinema compile=true, quantize={mode}")
        for mode in ("int8", "fp8", "fp8_layerwise", "bnb8", "bnb4")
    },
}
PLAIN_SETUPS = {
    "diffusers": "diffusers as documented (bf16, SDPA, VAE fp32)",
    "diffusers-compile": "diffusers + compile_repeated_blocks(fullgraph=True)",
}
SETUPS = (*PLAIN_SETUPS, *KINEMA_SETUPS)


@dataclass
class Row:
    setup: str
    label: str
    clip_s: float | None = None  # end-to-end seconds of the measured (second) clip
    first_clip_s: float | None = None  # the first clip: loading and compilation included
    peak_gib: float | None = None  # peak GPU memory during the measured clip (None on the CPU)
    frames: int | None = None
    skipped: str | None = None  # why the setup did not run here
    options: dict[str, Any] = field(default_factory=dict)


# -- the checkpoint -------------------------------------------------------------------------------------------------


#: the published transformer configs of Wan2.1-T2V (Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers transformer/config.json;
#: the same figures as the authors' wan/configs/wan_t2v_{1_3B,14B}.py: dim = heads x 128)
TRANSFORMERS: dict[str, dict[str, int]] = {
    "1.3b": dict(num_attention_heads=12, ffn_dim=8960, num_layers=30),
    "14b": dict(num_attention_heads=40, ffn_dim=13824, num_layers=40),
}


def build_checkpoint(folder: Path, tiny: bool, device: str, variant: str = "1.3b") -> Path:
    """Save a random-weight Wan2.1-T2V checkpoint (``variant`` 1.3b or 14b: published configs; ``tiny``: tiny ones)
    into ``folder``."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    dtype = torch.float32 if tiny else torch.bfloat16
    words = "a the cat dog dancing on beach at sunset cinematic blurry low quality and".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [("▁" + w, -1.0) for w in words]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz,."]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    if tiny:
        te_cfg = UMT5Config(
            vocab_size=256,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            dropout_rate=0.0,
        )
        tr_cfg = dict(
            num_attention_heads=2, attention_head_dim=12, text_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32
        )
        vae_cfg: dict[str, Any] = dict(base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    else:  # Wan-AI/Wan2.1-T2V-*-Diffusers: text_encoder/config.json, transformer/config.json, vae/config.json
        te_cfg = UMT5Config(
            vocab_size=256384,
            d_model=4096,
            d_kv=64,
            d_ff=10240,
            num_layers=24,
            num_heads=64,
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
        )
        tr_cfg = dict(attention_head_dim=128, text_dim=4096, rope_max_seq_len=1024, **TRANSFORMERS[variant])
        vae_cfg = {}
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: a random 5.7B text encoder in seconds, not minutes
        text_encoder = UMT5EncoderModel(te_cfg).to(dtype).eval()
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            in_channels=16,
            out_channels=16,
            freq_dim=256,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            **tr_cfg,
        ).to(dtype)
        vae = AutoencoderKLWan(z_dim=16, temperal_downsample=[False, True, True], **vae_cfg).to(torch.float32)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    pipe.save_pretrained(folder)
    del pipe, text_encoder, transformer, vae
    free_memory()
    return folder


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the setups ------------------------------------------------------------------------------------------------------


def plain_diffusers(folder: Path, device: str, compile_blocks: bool) -> Callable[[dict[str, Any]], int]:
    """diffusers' Wan docs: ``AutoencoderKLWan`` in float32, the pipeline in bf16, on the GPU."""
    from diffusers import AutoencoderKLWan, WanPipeline

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", dtype=torch.float32)
    pipe = WanPipeline.from_pretrained(folder, vae=vae, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    if compile_blocks:
        pipe.transformer.compile_repeated_blocks(fullgraph=True)

    def clip(call: dict[str, Any]) -> int:
        with torch.inference_mode():
            out = pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                guidance_scale=GUIDANCE,
                output_type="np",
                generator=torch.Generator("cpu").manual_seed(SEED),
                **call,
            ).frames
        return int(out.shape[1])

    return clip


def kinema_backend(folder: Path, device: str, options: dict[str, Any]) -> Callable[[dict[str, Any]], int]:
    """Kinema's diffusers backend end to end: ``kinema.generate`` on the folder (its loader, dtypes and options)."""
    import kinema

    def clip(call: dict[str, Any]) -> int:
        text_len = call.get("max_sequence_length")
        opts = {"device": device, **options, **({"max_sequence_length": text_len} if text_len else {})}
        result = kinema.generate(
            PROMPT,
            negative_prompt=NEGATIVE,
            guidance_scale=GUIDANCE,
            seed=SEED,
            backend="diffusers",
            model=str(folder),
            width=call["width"],
            height=call["height"],
            num_frames=call["num_frames"],
            num_inference_steps=call["num_inference_steps"],
            options=opts,
        )
        return int(result.video.frames.shape[0])

    return clip


def release_kinema() -> None:
    """Drop the pipeline the backend keeps loaded, so the next setup starts from an empty GPU."""
    from kinema.backends import get_backend

    get_backend("diffusers")._loaded = None  # type: ignore[attr-defined]
    free_memory()


def run_setup(name: str, folder: Path, device: str, call: dict[str, Any]) -> Row:
    from kinema.errors import KinemaError

    cuda = device.startswith("cuda")
    options, label = KINEMA_SETUPS.get(name, ({}, PLAIN_SETUPS.get(name, name)))
    row = Row(name, label, options=dict(options))
    try:
        start = time.perf_counter()
        if name in PLAIN_SETUPS:
            clip = plain_diffusers(folder, device, compile_blocks=name == "diffusers-compile")
        else:
            clip = kinema_backend(folder, device, options)
        clip(call)  # loading (Kinema loads on its first clip) and compilation
        if cuda:
            torch.cuda.synchronize()
        row.first_clip_s = time.perf_counter() - start
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        row.frames = clip(call)
        if cuda:
            torch.cuda.synchronize()
            row.peak_gib = torch.cuda.max_memory_allocated() / 1024**3
        row.clip_s = time.perf_counter() - start
    except KinemaError as exc:  # refused up front: this card or these libraries cannot run the mode
        row.skipped = str(exc).splitlines()[0]
    finally:
        clip = None  # type: ignore[assignment]
        release_kinema()
    return row


# -- the report ------------------------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    base = next((r.clip_s for r in rows if r.setup == "diffusers" and r.clip_s), None)
    lines = [
        "| setup | s / clip | vs diffusers | first clip s (load + compile) | peak GPU GiB |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.label} | not run: {r.skipped.replace('|', '/')} | | | |")
            continue
        speed = f"{base / r.clip_s:.2f}x" if base and r.clip_s else ""
        peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-"
        lines.append(f"| {r.label} | {r.clip_s:.2f} | {speed} | {r.first_clip_s:.1f} | {peak} |")
    return "\n".join(lines)


def report(gpu: str, steps: int, size: dict[str, int], rows: list[Row], tiny: bool = False) -> str:
    arch = "Tiny configs (a smoke run, not a measurement)" if tiny else "Full-size architecture"
    return "\n".join(
        [
            "## Wan2.1-T2V-1.3B on one GPU (`bench/gpu_wan.py`)",
            "",
            f"GPU: **{gpu}**. {arch} with random weights, {size['height']}x{size['width']}, "
            f"{size['num_frames']} frames, {steps} steps with classifier-free guidance (guidance {GUIDANCE}), torch "
            f"{torch.__version__}. s / clip: end to end (text encoding + denoising + VAE decode) of the second clip; "
            "the first includes loading and compilation. Peak GPU memory of the second clip.",
            "",
            table(rows),
            "",
            "FirstBlockCache skips depend on how much the first block's output changes between steps; random weights "
            "do not behave as trained ones, so that row is indicative only.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny checkpoint (no GPU needed)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 20; --tiny: 2)")
    ap.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, from: {', '.join(SETUPS)}")
    ap.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="where to save the random checkpoint (default: a "
        "temporary folder, removed after; the full one takes about 15 GB)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md (--tiny never writes)")
    args = ap.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown:
        print(f"error: unknown setup(s) {', '.join(unknown)}; choose from {', '.join(SETUPS)}", file=sys.stderr)
        return 2
    if not args.tiny and not torch.cuda.is_available():
        print(
            "error: bench/gpu_wan.py measures a GPU and needs CUDA, which is not available here "
            "(run it on a CUDA machine, or use --tiny for a CPU smoke run)",
            file=sys.stderr,
        )
        return 2
    device = "cpu" if args.tiny else "cuda"
    steps = args.steps or (2 if args.tiny else 20)
    size = TINY if args.tiny else FULL
    call: dict[str, Any] = {**size, "num_inference_steps": steps}
    if args.tiny:
        call["max_sequence_length"] = 32  # keeps the tiny UMT5 cheap; the full run uses Wan's trained 512
    gpu = torch.cuda.get_device_name(0) if not args.tiny else "CPU (tiny smoke run)"

    with tempfile.TemporaryDirectory(prefix="gpu-wan-") as tmp:
        folder = args.folder or Path(tmp) / "wan2.1-t2v-1.3b-random"
        if not (folder / "model_index.json").is_file():
            build_checkpoint(folder, args.tiny, device)
        rows = [run_setup(name, folder, device, call) for name in setups]
    text = report(gpu, steps, size, rows, args.tiny)
    from _report import emit

    figures = {"gpu": gpu, "steps": steps, "size": size, "rows": [asdict(r) for r in rows]}
    emit("gpu_wan", text, figures, as_json=args.json, write=not args.tiny and not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
