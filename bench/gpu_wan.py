"""Wan2.1-T2V-1.3B on one GPU: stock diffusers against Kinema's fastest settings, in the same run.

The full-size architecture (WanTransformer3DModel 1.3B, UMT5-XXL text encoder, Wan VAE) is built with random weights
directly on the GPU, so nothing is downloaded; speed and memory do not depend on the weights' values (except for the
step cache, whose skips depend on how much the first block's output changes: see the note it prints).
480x832, 81 frames, bf16, classifier-free guidance: seconds per denoising step (median over steps after the first),
end-to-end seconds (text encoding + denoising + VAE decode) and peak GPU memory, written to BENCHMARKS.md with the
GPU's name.

    python bench/gpu_wan.py                 # on a CUDA machine (about 5 minutes on an H100)
    python bench/gpu_wan.py --steps 50      # the official step count
    python bench/gpu_wan.py --tiny --json   # a CPU smoke run of the same code with tiny configs (what the test runs)

Kinema's fastest settings go through the backend's own option code (``DiffusersBackend._configure``): regional
``torch.compile`` of the transformer blocks plus diffusers' FirstBlockCache, SDPA attention, VAE in float32 as the
Wan authors recommend.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

FULL = {"height": 480, "width": 832, "num_frames": 81}
TINY = {"height": 32, "width": 32, "num_frames": 5}
PROMPT = "a cat and a dog dancing on the beach at sunset, cinematic"
NEGATIVE = "blurry, low quality"


def build_pipeline(tiny: bool, device: str) -> Any:
    """WanPipeline with random weights: the published 1.3B configs, or tiny ones for the CPU smoke run."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    dtype = torch.float32 if tiny else torch.bfloat16
    words = "a the cat dog dancing on beach at sunset cinematic blurry low quality and".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [("▁" + w, -1.0) for w in words]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz,."]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    if tiny:
        te_cfg = UMT5Config(vocab_size=256, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                            relative_attention_num_buckets=8, dropout_rate=0.0)  # fmt: skip
        tr_cfg = dict(num_attention_heads=2, attention_head_dim=12, text_dim=32, ffn_dim=32, num_layers=2,
                      rope_max_seq_len=32)  # fmt: skip
        vae_cfg: dict[str, Any] = dict(base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    else:  # Wan-AI/Wan2.1-T2V-1.3B-Diffusers: text_encoder/config.json, transformer/config.json, vae/config.json
        te_cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                            relative_attention_num_buckets=32, relative_attention_max_distance=128,
                            feed_forward_proj="gated-gelu", dropout_rate=0.0)  # fmt: skip
        tr_cfg = dict(num_attention_heads=12, attention_head_dim=128, text_dim=4096, ffn_dim=8960, num_layers=30,
                      rope_max_seq_len=1024)  # fmt: skip
        vae_cfg = {}
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: a random 5.7B text encoder in seconds, not minutes
        text_encoder = UMT5EncoderModel(te_cfg).to(dtype).eval()
        transformer = WanTransformer3DModel(patch_size=(1, 2, 2), in_channels=16, out_channels=16, freq_dim=256,
                                            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
                                            **tr_cfg).to(dtype)  # fmt: skip
        vae = AutoencoderKLWan(z_dim=16, temperal_downsample=[False, True, True], **vae_cfg).to(torch.float32)
    # as from_pretrained(torch_dtype=bf16) does: the modules the model marks as precision-sensitive stay float32
    keep = getattr(transformer, "_keep_in_fp32_modules", None) or []
    for name, param in transformer.named_parameters():
        if any(k in name.split(".") for k in keep):
            param.data = param.data.float()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=scheduler)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def kinema_fastest(pipe: Any, device: str, tiny: bool) -> dict[str, Any]:
    """Apply Kinema's fastest options through the backend's own configuration code."""
    from kinema.backends.catalog import CATALOG, FAMILIES
    from kinema.backends.diffusers import DiffusersBackend, Located, validate_options

    entry = CATALOG["wan2.1-t2v-1.3b"]
    located = Located("wan2.1-t2v-1.3b", "catalog", entry.repo, None, entry.pipeline, FAMILIES["wan"],
                      entry.capabilities(), entry)  # fmt: skip
    # compile on the CPU smoke run would need a C++ toolchain and minutes; the GPU run compiles
    opts = validate_options({"cache": "firstblock", "cache_threshold": 0.05, "compile": not tiny, "device": device})
    DiffusersBackend()._configure(pipe, located, device, opts)
    return {k: opts[k] for k in ("cache", "cache_threshold", "compile", "attention")}


def measure(
    pipe: Any, size: dict[str, int], steps: int, device: str, runs: int, text_len: int = 512
) -> dict[str, float]:
    """Median seconds per step (after the first), end-to-end seconds and peak memory of the last of ``runs``."""
    cuda = device.startswith("cuda")
    result: dict[str, float] = {}
    for _ in range(runs):
        stamps: list[float] = []

        def on_step(_p: Any, _i: int, _t: Any, kw: dict[str, Any], stamps: list[float] = stamps) -> dict[str, Any]:
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            return kw

        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with torch.inference_mode():
            out = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=5.0,
                       generator=torch.Generator("cpu").manual_seed(0), output_type="np",
                       callback_on_step_end=on_step, max_sequence_length=text_len, **size).frames  # fmt: skip
        if cuda:
            torch.cuda.synchronize()
        end = time.perf_counter()
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        result = {
            "step_s": statistics.median(gaps) if gaps else end - start,
            "first_step_s": stamps[0] - start if stamps else 0.0,
            "end_to_end_s": end - start,
            "peak_gib": torch.cuda.max_memory_allocated() / 1024**3 if cuda else 0.0,
            "frames": float(out.shape[1]),
        }
    return result


def report(gpu: str, steps: int, stock: dict[str, float], fast: dict[str, float], settings: dict[str, Any]) -> str:
    speedup = stock["step_s"] / fast["step_s"] if fast["step_s"] else float("nan")
    rows = [
        "| setup | s / step (CFG) | end-to-end s | peak GPU GiB |",
        "|---|---|---|---|",
        f"| stock diffusers (SDPA, bf16, VAE fp32) | {stock['step_s']:.3f} | {stock['end_to_end_s']:.1f} | "
        f"{stock['peak_gib']:.1f} |",
        f"| Kinema fastest ({', '.join(f'{k}={v}' for k, v in settings.items())}) | {fast['step_s']:.3f} | "
        f"{fast['end_to_end_s']:.1f} | {fast['peak_gib']:.1f} |",
    ]
    return "\n".join([
        "## Wan2.1-T2V-1.3B on one GPU (`bench/gpu_wan.py`)",
        "",
        f"GPU: **{gpu}**. Full-size architecture with random weights, 480x832, 81 frames, bf16, {steps} steps with "
        f"classifier-free guidance, torch {torch.__version__}. Per-step time is the median after the first step "
        f"(the first includes compilation); end-to-end is the second run (text encoding + denoising + VAE decode).",
        "",
        *rows,
        "",
        f"Per-step speed-up: **{speedup:.2f}x**. Planning bound from docs (landscape.md): 566 TFLOP per step with "
        "CFG, 0.72 s per step at 790 TFLOP/s on an H100. FirstBlockCache skips depend on how much the first block's "
        "output changes between steps; with random weights that is not what trained weights do, so the cache's "
        "share of the speed-up is indicative only.",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny configs (no GPU needed)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 20; --tiny: 2)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md (--tiny never writes)")
    args = ap.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print("error: bench/gpu_wan.py measures a GPU and needs CUDA, which is not available here "
              "(run it on a CUDA machine, or use --tiny for a CPU smoke run)", file=sys.stderr)  # fmt: skip
        return 2
    device = "cpu" if args.tiny else "cuda"
    steps = args.steps or (2 if args.tiny else 20)
    size = TINY if args.tiny else FULL
    runs = 1 if args.tiny else 2  # the second run is the measured one (warm caches, compiled graphs)
    gpu = torch.cuda.get_device_name(0) if not args.tiny else "CPU (tiny smoke run)"

    pipe = build_pipeline(args.tiny, device)
    text_len = 32 if args.tiny else 512  # Wan's trained text length; the tiny run keeps its tiny encoder cheap
    stock = measure(pipe, size, steps, device, runs, text_len)
    settings = kinema_fastest(pipe, device, args.tiny)
    fast = measure(pipe, size, steps, device, runs, text_len)
    figures = {"gpu": gpu, "steps": steps, "size": size, "stock": stock, "kinema": fast, "settings": settings}
    if args.json:
        print(json.dumps(figures))
    else:
        print(report(gpu, steps, stock, fast, settings))
    if not args.tiny and not args.no_write:
        from _report import write_section

        write_section("gpu_wan", report(gpu, steps, stock, fast, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
