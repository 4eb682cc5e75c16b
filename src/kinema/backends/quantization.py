"""Quantization for the diffusers backend, the ways diffusers documents it.

``--option quantize=MODE`` stores the denoiser's weights (and, on request, the text encoder's) in fewer bits:

==================  =======================================  ==============  ==================================
mode                what it does                             bytes / param   where it runs
==================  =======================================  ==============  ==================================
``int8``            torchao int8 weight-only                 1               any device (torchao)
``fp8``             torchao float8 weight-only               1               CUDA, compute capability 8.9+
``fp8_layerwise``   weights stored in float8, each layer     1               any device (diffusers'
                    upcast to the compute dtype as it runs                   ``enable_layerwise_casting``)
``bnb8``            bitsandbytes LLM.int8                    1               CUDA (bitsandbytes)
``bnb4`` (``nf4``)  bitsandbytes 4-bit NormalFloat           0.5625          CUDA (bitsandbytes)
==================  =======================================  ==============  ==================================

``--option transformer_file=PATH`` loads the transformer from one file instead of the checkpoint's folder: a GGUF
file (already quantized, e.g. a Q4_K_M or Q8_0 file from the community) or a single ``.safetensors`` in the authors'
layout; ``--model`` names the base checkpoint that gives the configuration, text encoder and VAE.
``transformer_2_file`` does the same for Wan 2.2 A14B's low-noise expert.

Sources: diffusers' quantization guides (docs/source/en/quantization/{torchao,bitsandbytes,gguf}.md,
optimization/memory.md "Layerwise casting") and ``PipelineQuantizationConfig`` (diffusers/quantizers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest
from .base import require_module

__all__ = [
    "QuantMode",
    "QUANT_MODES",
    "parse_quantize",
    "quantization_config",
    "apply_layerwise_casting",
    "check_quant_device",
    "load_single_file",
    "quantized_bytes",
    "DENOISERS",
]

#: The components that hold the denoiser (Wan 2.2 A14B has two experts).
DENOISERS = ("transformer", "transformer_2", "unet")


@dataclass(frozen=True)
class QuantMode:
    name: str
    bytes_per_param: float  # weight storage, for the memory estimate (NF4: 4 bits + one fp32 absmax per 64)
    cuda_only: bool
    summary: str
    min_capability: tuple[int, int] | None = None  # CUDA compute capability the kernels need


QUANT_MODES: dict[str, QuantMode] = {
    m.name: m
    for m in (
        QuantMode("int8", 1.0, False, "torchao int8 weight-only"),
        QuantMode("fp8", 1.0, True, "torchao float8 weight-only", (8, 9)),
        QuantMode("fp8_layerwise", 1.0, False, "float8 storage, upcast layer by layer (enable_layerwise_casting)"),
        QuantMode("bnb8", 1.0, True, "bitsandbytes LLM.int8"),
        QuantMode("bnb4", 0.5625, True, "bitsandbytes 4-bit NF4"),
    )
}
_ALIASES = {"nf4": "bnb4", "int8wo": "int8", "fp8wo": "fp8", "none": "none", "false": "none", "off": "none"}
_SINGLE_FILE_SUFFIXES = (".gguf", ".safetensors")


def parse_quantize(opts: dict[str, Any]) -> None:
    """Normalise ``quantize``, ``quantize_components`` and the ``*_file`` options in place (InvalidRequest if bad)."""
    raw = str(opts.get("quantize") or "none").strip().lower()
    mode = _ALIASES.get(raw, raw)
    if mode != "none" and mode not in QUANT_MODES:
        raise InvalidRequest(
            "options.quantize",
            f"{opts['quantize']!r} is not a quantization mode",
            value=opts["quantize"],
            allowed=f"none, {', '.join(QUANT_MODES)} (nf4 = bnb4)",
        )
    opts["quantize"] = mode
    comps = opts.get("quantize_components")
    items = comps if isinstance(comps, list | tuple) else str(comps or "").split(",")
    names = [str(v).strip() for v in items if str(v).strip()]
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InvalidRequest(
                "options.quantize_components",
                f"{name!r} is not a component name",
                value=comps,
                allowed="component names such as transformer, text_encoder",
            )
    opts["quantize_components"] = names
    for key in ("transformer_file", "transformer_2_file"):
        value = opts.get(key)
        if value is None or value == "":
            opts[key] = None
            continue
        path = Path(str(value)).expanduser()
        if path.suffix.lower() not in _SINGLE_FILE_SUFFIXES:
            raise InvalidRequest(
                f"options.{key}",
                f"{path.name!r} is not a .gguf or .safetensors file",
                value=value,
                allowed="a .gguf file or a single-file .safetensors checkpoint",
            )
        if not path.is_file():
            raise InvalidRequest(
                f"options.{key}",
                "the file does not exist",
                value=value,
                allowed="the path of a .gguf or .safetensors file on this machine",
            )
        opts[key] = str(path)


def targets(pipe_components: list[str], opts: dict[str, Any]) -> list[str]:
    """The components ``quantize`` applies to: those asked for, else the denoiser(s) present."""
    if opts["quantize_components"]:
        missing = [n for n in opts["quantize_components"] if n not in pipe_components]
        if missing:
            raise InvalidRequest(
                "options.quantize_components",
                f"this pipeline has no component {missing[0]!r}",
                value=opts["quantize_components"],
                allowed=", ".join(n for n in pipe_components if "token" not in n),
            )
        return list(opts["quantize_components"])
    return [n for n in DENOISERS if n in pipe_components]


def check_quant_device(opts: dict[str, Any], device: str) -> None:
    """Refuse a mode this device cannot run, and one its library is missing for, before anything loads."""
    mode = QUANT_MODES.get(opts["quantize"])
    if mode is None:
        return
    if mode.cuda_only and not device.startswith("cuda"):
        runs_here = ", ".join(m.name for m in QUANT_MODES.values() if not m.cuda_only)
        raise InvalidRequest(
            "options.quantize",
            f"{mode.name} ({mode.summary}) runs on CUDA GPUs only; the device here is {device}",
            value=mode.name,
            allowed=f"none, {runs_here}",
        )
    if mode.min_capability is not None and device.startswith("cuda"):
        import torch

        cap = torch.cuda.get_device_capability(torch.device(device))
        if cap < mode.min_capability:
            need = ".".join(map(str, mode.min_capability))
            raise InvalidRequest(
                "options.quantize",
                f"{mode.name} needs a GPU of compute capability {need} or "
                f"newer (Ada, Hopper); this one is {cap[0]}.{cap[1]}",
                value=mode.name,
                allowed="none, int8, fp8_layerwise, bnb8, bnb4",
            )
    if mode.name in ("int8", "fp8"):
        require_module("torchao", "quant", feature=f"quantize={mode.name}")
    elif mode.name.startswith("bnb"):
        require_module("bitsandbytes", "quant-cuda", feature=f"quantize={mode.name}")


def quantization_config(opts: dict[str, Any], components: dict[str, str], compute_dtype: Any) -> Any:
    """A diffusers ``PipelineQuantizationConfig`` for ``from_pretrained``; None for none and fp8_layerwise.

    ``components`` maps each component to quantize to its library ("diffusers" or "transformers", from
    model_index.json): each library's own config class, since their signatures differ (torchao's in particular)."""
    mode = opts["quantize"]
    if mode in ("none", "fp8_layerwise") or not components:
        return None
    import diffusers
    import transformers

    mapping: dict[str, Any] = {}
    for name, library in components.items():
        lib: Any = transformers if library == "transformers" else diffusers
        if mode in ("int8", "fp8"):
            from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

            kind = Int8WeightOnlyConfig() if mode == "int8" else Float8WeightOnlyConfig()
            mapping[name] = lib.TorchAoConfig(quant_type=kind)
        elif mode == "bnb8":
            mapping[name] = lib.BitsAndBytesConfig(load_in_8bit=True)
        else:
            mapping[name] = lib.BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
            )
    return diffusers.PipelineQuantizationConfig(quant_mapping=mapping)


def apply_layerwise_casting(pipe: Any, components: list[str], compute_dtype: Any) -> None:
    """fp8_layerwise: float8 storage for each component; the model's own skip list keeps norms and embeddings."""
    import torch

    for name in components:
        module = getattr(pipe, name, None)
        if not hasattr(module, "enable_layerwise_casting"):
            raise InvalidRequest(
                "options.quantize_components",
                f"{name} ({type(module).__name__}) is not a diffusers model, so fp8_layerwise cannot cast it",
                value=name,
                allowed="transformer, transformer_2, vae",
            )
        assert module is not None
        module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


def load_single_file(folder: Path, component: str, path: str, compute_dtype: Any) -> Any:
    """Load ``component`` (a transformer) from one .gguf / .safetensors file, configured from the base ``folder``."""
    import json

    import diffusers

    index = json.loads((folder / "model_index.json").read_text())
    spec = index.get(component)
    if not isinstance(spec, list) or len(spec) != 2:
        raise InvalidRequest(
            f"options.{component}_file",
            f"the base checkpoint at --model has no {component}",
            value=path,
            allowed="a base model whose pipeline has this component",
        )
    cls = getattr(diffusers, spec[1], None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise InvalidRequest(
            f"options.{component}_file",
            f"diffusers cannot load a {spec[1]} from a single file",
            value=path,
            allowed="Wan, LTX-Video or HunyuanVideo",
        )
    kwargs: dict[str, Any] = {"config": str(folder), "subfolder": component, "torch_dtype": compute_dtype}
    if path.lower().endswith(".gguf"):
        require_module("gguf", "quant", feature="a .gguf transformer_file")
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=compute_dtype)
    try:
        return cls.from_single_file(path, **kwargs)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise InvalidRequest(
            f"options.{component}_file",
            f"could not be loaded as a {spec[1]}: {exc}",
            value=path,
            allowed="a checkpoint of the same model as --model, in the authors' or ComfyUI's layout",
        ) from exc


def quantized_bytes(opts: dict[str, Any], params_b: dict[str, float], components: list[str]) -> dict[str, float]:
    """Bytes per parameter of the components that ``quantize`` or a ``*_file`` changes (for the memory estimate)."""
    out: dict[str, float] = {}
    mode = QUANT_MODES.get(opts.get("quantize", "none"))
    if mode is not None:
        out.update({name: mode.bytes_per_param for name in components if name in params_b})
    for name in ("transformer", "transformer_2"):
        path = opts.get(f"{name}_file")
        if path and params_b.get(name):
            out[name] = Path(path).stat().st_size / (params_b[name] * 1e9)  # the file is the weights as stored
    return out
