"""Local open-weight video models through Hugging Face diffusers.

``--model`` takes a catalog id (``kinema models``), any Hub repo id in the diffusers layout, or a local folder in that
layout. Weights come from the huggingface_hub cache (``HF_HOME`` / ``HF_HUB_CACHE``) or the folder; generating never
downloads (``kinema pull MODEL`` does), so an offline machine fails at once with a message saying what to do.

Backend options (``--option KEY=VALUE`` on the command line, ``options={...}`` in Python), all validated up front:

=================  ==========================================================================================
``device``         auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
``dtype``          auto (bfloat16 on GPUs that have it, float16 on older GPUs and mps, float32 on cpu) |
                   bfloat16 | float16 | float32
``offload``        none | model (one component on the GPU at a time) | sequential (layer by layer, slowest,
                   least memory) | group (transformer blocks streamed with CUDA streams: low memory, fast)
``offload_exclude`` offload=group: components kept whole on the GPU (default: vae) - a list or "a,b"; "" for none
``low_cpu_mem_usage`` offload=group: pin tensors on the fly instead of holding pinned copies (less CPU memory)
``text_encoder_device`` auto (with the rest) | cpu: encode the prompt on the CPU, keeping the text encoders off
                   the GPU (Wan, LTX, CogVideoX; the Wan authors' ``--t5_cpu``)
``vae_tiling``     true | false: decode in spatial tiles (lower peak memory at large sizes)
``vae_slicing``    true | false: decode frame batches one at a time (SVD: a smaller decode chunk)
``attention``      sdpa (PyTorch scaled-dot-product attention, the default) | flash | flash3 | sage | flex
``compile``        true | false: ``torch.compile`` the transformer's repeated blocks (regional compilation)
``cache``          none | firstblock | taylorseer | magcache: diffusers' step-caching hooks on the transformer
``cache_threshold`` FirstBlockCache / MagCache threshold (default 0.05 / 0.06; higher is faster and lossier)
``cache_ratios``   cache=magcache: the model's magnitude ratios, a JSON file (as calibration writes it) or a list
``cache_calibrate`` cache=magcache: run without skipping and write the ratios to ``cache_ratios`` (a file path)
``lora``           "PATH[:SCALE]", "PATH::FILE[:SCALE]" (one file of a folder or Hub repo holding several) or a
                   list of them (a .safetensors file, a folder or a cached Hub repo)
``scheduler``      a diffusers scheduler class the model's own scheduler lists as compatible (Wan: the flow-matching
                   ones), built from the checkpoint's scheduler config (keeping its shift)
``last_image``     Wan image-to-video: a local image file the clip ends on (first-last-frame-to-video); kept for
                   older scripts: the request's ``last_image`` (keyframes) does the same
``shift``          the flow-matching scheduler's shift (catalog default per model; flow-matching models only)
``guidance_2``     Wan2.2 A14B: guidance of the low-noise expert
``true_cfg_scale`` HunyuanVideo: true classifier-free guidance with the negative prompt (default 1.0, the
                   authors' ``--cfg-scale``: off; above 1 with a negative prompt turns it on)
``motion_bucket_id``, ``noise_aug_strength``, ``decode_chunk_size``  Stable Video Diffusion's micro-conditioning
                   (pipeline defaults 127 and 0.02) and VAE decode chunk (default 8, as in diffusers' SVD docs)
``max_sequence_length``  text tokens given to the text encoder
``revision``       which cached snapshot (commit id or branch) of a Hub repo to load
``quantize``       none | int8 | fp8 | fp8_layerwise | bnb8 | bnb4 (nf4): the denoiser's weights in fewer bits
                   (see :mod:`kinema.backends.quantization` for what each runs on)
``quantize_components`` which components ``quantize`` applies to (default: the transformer(s)), e.g.
                   "transformer,text_encoder"
``ulysses``, ``ring`` split one video's sequence over N processes (``kinema generate --gpus N``; Wan, LTX);
                   ``ulysses_anything``: any head count (see :mod:`kinema.backends.parallel`)
``transformer_file``, ``transformer_2_file``  the transformer from one .gguf or .safetensors file; ``--model``
                   names the base checkpoint
``multiscale``     true | false: LTX-Video 0.9.7 / 0.9.8's multi-scale flow (a first pass at 2/3 of the size, the
                   latent upsampler, a short refine pass at twice the first pass's size; see docs/models.md)
``upsampler``      multiscale=true: the latent upsampler, a Hub repo id or a local folder (default: the catalog's,
                   Lightricks/ltxv-spatial-upscaler-0.9.7 for ltx-video)
=================  ==========================================================================================

Editing a clip (``source_video`` + ``strength``), keyframes (``last_image``) and reference images run through each
family's own diffusers pipeline on the components already loaded (docs/models.md, "Editing, keyframes and
references").

>>> import kinema
>>> r = kinema.generate("a cat dancing", backend="diffusers", model="wan2.1-t2v-1.3b")  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import inspect
import logging
import math
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled, GenerationFailed, InvalidRequest, KinemaError, MissingExtra, ModelNotFound
from ..request import VideoRequest
from .base import (
    BackendOutput,
    BaseBackend,
    Capabilities,
    GenerationContext,
    GenerationParams,
    check_option_names,
    require_module,
)
from .catalog import (
    CATALOG,
    DEFAULT_MODEL,
    LTX_DEV_MULTISCALE,
    CatalogEntry,
    Family,
    MemoryEstimate,
    MultiScale,
    derive_capabilities,
    estimate_memory,
    family_for_pipeline,
    get_entry,
    read_json,
    read_model_index,
    scaled_work,
    supported_pipelines,
)
from .parallel import agreed_cancel, check_parallel, parse_parallel
from .parallel import degree as split_degree
from .parallel import enable as enable_split
from .parallel import world as split_world
from .quantization import (
    apply_layerwise_casting,
    check_quant_device,
    load_single_file,
    parse_quantize,
    quantization_config,
    quantized_bytes,
)
from .quantization import targets as quantize_targets

__all__ = [
    "DiffusersBackend",
    "Located",
    "locate",
    "hub_cache_dir",
    "validate_options",
    "check_fits",
    "parse_lora",
    "OPTION_DEFAULTS",
    "memory_estimate",
    "component_dtypes",
    "diffusers_name",
    "multiscale_recipe",
    "multiscale_sizes",
    "locate_upsampler",
    "HUNYUAN_TRUE_CFG",
]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_SUFFIXES = (".safetensors",)

# -- where the weights are ------------------------------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """The huggingface_hub cache, read from the environment now (HF_HUB_CACHE, then HF_HOME/hub, then the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def cached_snapshot(repo: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of ``repo`` at ``revision`` (default "main"), or None. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "model_index.json", cache_dir=hub_cache_dir(), revision=revision or "main")
    if isinstance(found, str):
        return Path(found).parent
    return None


def missing_components(folder: Path) -> list[str]:
    """Components named in model_index.json whose subfolder is absent (an interrupted download)."""
    index = read_model_index(folder)
    return [
        name
        for name, spec in index.items()
        if not name.startswith("_")
        and isinstance(spec, list)
        and spec
        and spec[0] is not None
        and not (folder / name).is_dir()
    ]


def missing_weights_message(model: str, repo: str) -> str:
    cache = hub_cache_dir()
    pull = f"kinema pull {model}"
    return (
        f"the weights of {model!r} (Hugging Face repo {repo}) are not in the Hugging Face cache at {cache} "
        f"(set HF_HOME or HF_HUB_CACHE if they are elsewhere). Two ways forward: run '{pull}' on a machine with "
        f"internet (then copy {cache} here if this machine is offline), or pass a local folder in the diffusers "
        f"layout with --model /path/to/folder"
    )


@dataclass(frozen=True)
class Located:
    """Where a model's weights are and what it accepts."""

    model: str  # as the user gave it
    kind: str  # "catalog", "hub" or "local"
    repo: str | None
    folder: Path | None  # None: a catalog model whose weights are not here (yet)
    class_name: str  # diffusers pipeline class of the checkpoint
    family: Family
    capabilities: Capabilities
    entry: CatalogEntry | None = None

    @property
    def revision(self) -> str | None:
        """The snapshot's commit id when the weights come from the hub cache."""
        if self.folder is not None and self.folder.parent.name == "snapshots":
            return self.folder.name
        return None


def locate(model: str, revision: str | None = None) -> Located:
    """Resolve a catalog id, a Hub repo id or a local folder. Raises ModelNotFound / InvalidRequest with the fix."""
    path = Path(model).expanduser()
    if path.is_dir():
        index = read_model_index(path)
        if not index:
            raise ModelNotFound(
                f"model: the folder {path} has no model_index.json, so it is not a checkpoint in the diffusers layout "
                f"(save one with pipeline.save_pretrained(folder), or pass a catalog id: {', '.join(CATALOG)})"
            )
        return _from_folder(model, "local", None, path, index)
    entry = get_entry(model)
    if entry is not None:
        folder = cached_snapshot(entry.repo, revision or entry.revision)
        if folder is None:
            for alias in entry.aliases:  # the cache is keyed by the repo id the weights were pulled under
                folder = cached_snapshot(alias, revision or entry.revision)
                if folder is not None:
                    break
        found = family_for_pipeline(entry.pipeline)
        assert found is not None, entry.pipeline
        return Located(model, "catalog", entry.repo, folder, entry.pipeline, found[0], entry.capabilities(), entry)
    if _REPO_ID.match(model):
        folder = cached_snapshot(model, revision)
        if folder is None:
            raise ModelNotFound(f"model: {missing_weights_message(model, model)}")
        return _from_folder(model, "hub", model, folder, read_model_index(folder))
    raise InvalidRequest(
        "model",
        f"{model!r} is neither a catalog id, a Hub repo id (org/name) nor an existing folder",
        value=model,
        allowed=", ".join(CATALOG) + ", a Hub repo id, or a folder in the diffusers layout",
    )


def _from_folder(model: str, kind: str, repo: str | None, folder: Path, index: dict[str, Any]) -> Located:
    class_name = str(index.get("_class_name", ""))
    try:
        caps, family = derive_capabilities(folder, class_name)
    except KeyError:
        raise InvalidRequest(
            "model",
            f"{model!r} is a {class_name or 'unknown'} checkpoint, which the diffusers backend does not run",
            value=model,
            allowed=", ".join(supported_pipelines()),
        ) from None
    return Located(model, kind, repo, folder, class_name, family, caps)


# -- options -------------------------------------------------------------------------------------------------------

OPTION_DEFAULTS: dict[str, Any] = {
    "device": "auto",
    "dtype": "auto",
    "offload": "none",
    "offload_exclude": ["vae"],
    "low_cpu_mem_usage": False,
    "text_encoder_device": "auto",
    "vae_tiling": False,
    "vae_slicing": False,
    "attention": "sdpa",
    "compile": False,
    "cache": "none",
    "cache_threshold": None,
    "lora": [],
    "shift": None,
    "guidance_2": None,
    "true_cfg_scale": None,
    "motion_bucket_id": None,
    "noise_aug_strength": None,
    "decode_chunk_size": None,
    "max_sequence_length": None,
    "revision": None,
    "quantize": "none",
    "quantize_components": [],
    "transformer_file": None,
    "transformer_2_file": None,
    "scheduler": None,
    "last_image": None,
    "cache_ratios": None,
    "cache_calibrate": False,
    "ulysses": 1,
    "ring": 1,
    "ulysses_anything": False,
    "multiscale": False,
    "upsampler": None,
}
_CHOICES = {
    "offload": ("none", "model", "sequential", "group"),
    "cache": ("none", "firstblock", "taylorseer", "magcache"),
    "attention": ("sdpa", "flash", "flash3", "sage", "flex"),
    "dtype": ("auto", "bfloat16", "float16", "float32"),
    "text_encoder_device": ("auto", "cpu"),
}
_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
_ATTENTION_BACKENDS = {"sdpa": "native", "flash": "flash", "flash3": "_flash_3", "sage": "sage", "flex": "flex"}


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise InvalidRequest(f"options.{key}", f"{value!r} is not true or false", value=value, allowed="true, false")


def _number(key: str, value: Any, low: float, high: float, integer: bool = False) -> float:
    try:
        num = float(value)
    except (TypeError, ValueError):
        num = float("nan")
    if not low <= num <= high or (integer and num != int(num)):
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(
            f"options.{key}",
            f"{value!r} is not {kind} from {low:g} to {high:g}",
            value=value,
            allowed=f"{low:g} to {high:g}",
        )
    return int(num) if integer else num


def _names(key: str, value: Any) -> list[str]:
    """A list of component names from a list or a comma-separated string ("" or "none": no names)."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    names = [str(v).strip() for v in items if str(v).strip() and str(v).strip().lower() != "none"]
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InvalidRequest(
                f"options.{key}",
                f"{name!r} is not a component name",
                value=value,
                allowed="component names such as vae, text_encoder, image_encoder",
            )
    return names


_LORA_SYNTAX = "PATH, PATH:SCALE or PATH::FILE:SCALE, e.g. style.safetensors:0.8 or org/repo::lora.safetensors:0.8"


def parse_lora(value: Any) -> list[tuple[str, float, str | None]]:
    """``"path:0.8"``, ``"org/repo::file.safetensors:0.8"`` or a list of them -> [(path, scale, weight_name)].

    A missing scale is 1.0; Windows drive letters survive. ``::`` names one weight file of a folder or Hub repo that
    holds several (diffusers' ``load_lora_weights(weight_name=...)``): a single colon cannot, since it already
    separates the scale and a drive letter."""
    items = value if isinstance(value, list | tuple) else [value]
    out: list[tuple[str, float, str | None]] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InvalidRequest("options.lora", f"{item!r} is not a LoRA path", value=item, allowed=_LORA_SYNTAX)
        path, scale, weight_name = item.strip(), 1.0, None
        head, sep, tail = path.rpartition(":")
        if sep and head and not head.endswith(":") and re.fullmatch(r"-?\d+(\.\d*)?|-?\.\d+", tail):
            path, scale = head, float(tail)
        if "::" in path:
            path, _, weight_name = path.partition("::")
            parts = weight_name.replace("\\", "/").split("/")
            # a file inside the folder or repo (repos keep LoRAs in subfolders too); never outside it
            if (
                not path
                or not weight_name.endswith(_WEIGHT_SUFFIXES)
                or weight_name.startswith(("/", "\\"))
                or any(p in ("", ".", "..") for p in parts)
                or re.match(r"^[A-Za-z]:", weight_name)
            ):
                why = f"{item!r}: after '::' comes one .safetensors file inside the folder or repo before it"
                raise InvalidRequest("options.lora", why, value=item, allowed=_LORA_SYNTAX)
            if Path(path).expanduser().is_dir() and not (Path(path).expanduser() / weight_name).is_file():
                files = sorted(p.name for p in Path(path).expanduser().glob("*.safetensors"))
                raise InvalidRequest(
                    "options.lora",
                    f"{path!r} has no {weight_name!r}",
                    value=item,
                    allowed=", ".join(f"{path}::{f}" for f in files) or _LORA_SYNTAX,
                )
        if not -10.0 <= scale <= 10.0:
            raise InvalidRequest(
                "options.lora", f"scale {scale:g} of {path!r} is out of range", value=item, allowed="-10 to 10"
            )
        if not Path(path).expanduser().exists() and not _REPO_ID.match(path):
            raise InvalidRequest(
                "options.lora",
                f"{path!r} is neither an existing file or folder nor a Hub repo id",
                value=item,
                allowed="a .safetensors file, a folder or org/name",
            )
        out.append((path, scale, weight_name))
    return out


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check every option and fill the defaults; bad ones raise InvalidRequest naming ``options.<key>``."""
    check_option_names("diffusers", options, tuple(OPTION_DEFAULTS))
    opts = {**OPTION_DEFAULTS, **options}
    device = str(opts["device"]).strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise InvalidRequest(
            "options.device",
            f"{opts['device']!r} is not a device",
            value=opts["device"],
            allowed="auto, cpu, cuda, cuda:N, mps",
        )
    opts["device"] = device
    opts["dtype"] = _DTYPE_ALIASES.get(str(opts["dtype"]).lower(), str(opts["dtype"]).lower())
    for key, choices in _CHOICES.items():
        value = str(opts[key]).strip().lower()
        if key == "cache" and value in ("false", "off", "0"):
            value = "none"
        if value not in choices:
            raise InvalidRequest(
                f"options.{key}",
                f"{opts[key]!r} is not one of its values",
                value=opts[key],
                allowed=", ".join(choices),
            )
        opts[key] = value
    for key in ("vae_tiling", "vae_slicing", "compile", "low_cpu_mem_usage", "cache_calibrate", "multiscale"):
        opts[key] = _bool(key, opts[key])
    if opts["upsampler"] is not None:
        opts["upsampler"] = _upsampler_ref(opts["upsampler"])
    opts["offload_exclude"] = _names("offload_exclude", opts["offload_exclude"])
    if opts["cache_threshold"] is None:  # each cache's own default: FirstBlockCache 0.05, MagCacheConfig 0.06
        opts["cache_threshold"] = 0.06 if opts["cache"] == "magcache" else 0.05
    opts["cache_threshold"] = _number("cache_threshold", opts["cache_threshold"], 0.0, 1.0)
    _check_magcache(opts)
    opts["lora"] = parse_lora(opts["lora"]) if opts["lora"] else []
    if opts["shift"] is not None:
        opts["shift"] = _number("shift", opts["shift"], 0.01, 100.0)
    for key, low, high, integer in (
        ("guidance_2", 0.0, 100.0, False),
        ("true_cfg_scale", 1.0, 30.0, False),
        ("motion_bucket_id", 0, 1023, True),
        ("noise_aug_strength", 0.0, 1.0, False),
        ("decode_chunk_size", 1, 1024, True),
    ):
        if opts[key] is not None:
            opts[key] = _number(key, opts[key], low, high, integer)
    if opts["max_sequence_length"] is not None:
        opts["max_sequence_length"] = _number("max_sequence_length", opts["max_sequence_length"], 1, 4096, True)
    if opts["revision"] is not None and not re.fullmatch(r"[\w./-]{1,128}", str(opts["revision"])):
        raise InvalidRequest(
            "options.revision",
            f"{opts['revision']!r} is not a branch, tag or commit id",
            value=opts["revision"],
            allowed="e.g. main or a 40-character commit id",
        )
    if opts["scheduler"] is not None:
        name = str(opts["scheduler"]).strip()
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name):
            raise _refuse(
                "scheduler",
                f"{opts['scheduler']!r} is not a scheduler class name",
                opts["scheduler"],
                "a diffusers scheduler class name, e.g. UniPCMultistepScheduler",
            )
        opts["scheduler"] = name
    if opts["last_image"] is not None:
        opts["last_image"] = _last_image_path(opts["last_image"])
    parse_quantize(opts)
    parse_parallel(opts)
    return opts


MAGCACHE_DOC = "docs/models.md, 'MagCache'"


def _check_magcache(opts: dict[str, Any]) -> None:
    """cache_ratios / cache_calibrate belong to cache=magcache, which needs the model's magnitude ratios (diffusers'
    MagCacheConfig refuses to run without them: they depend on the checkpoint) or a calibration run writing them."""
    for key in ("cache_ratios", "cache_calibrate"):
        if opts[key] not in (None, False) and opts["cache"] != "magcache":
            raise _refuse(
                key, f"applies to cache=magcache, not cache={opts['cache']}", opts[key], "with cache=magcache only"
            )
    if opts["cache"] != "magcache":
        return
    value = opts["cache_ratios"]
    if value is None:
        raise _refuse(
            "cache_ratios",
            "cache=magcache needs the model's magnitude ratios, which depend on the "
            f"checkpoint: calibrate once with cache_calibrate=true cache_ratios=FILE (see {MAGCACHE_DOC})",
            None,
            "a JSON file written by cache_calibrate=true, or a list of numbers",
        )
    if opts["cache_calibrate"]:
        allowed = "a new .json file in an existing folder, or one an earlier calibration wrote"
        target = Path(value).expanduser() if isinstance(value, str | os.PathLike) else None
        if target is None or target.suffix != ".json" or not target.parent.is_dir():
            raise _refuse(
                "cache_ratios",
                "with cache_calibrate=true it is the .json file the ratios are written to, in an existing folder",
                value,
                allowed,
            )
        if target.exists() and not _is_ratios_file(target):  # never overwrite a file Kinema did not write
            raise _refuse(
                "cache_ratios", f"{os.fspath(value)!r} exists and is not a MagCache ratios file", value, allowed
            )
        opts["cache_ratios"] = str(target)
        return
    ratios: Any = value
    if isinstance(value, str | os.PathLike):
        import json

        try:
            ratios = json.loads(Path(value).expanduser().read_text()).get("mag_ratios")
        except (OSError, ValueError, AttributeError) as exc:
            raise _refuse(
                "cache_ratios",
                f"could not read ratios from {os.fspath(value)!r} ({exc})",
                value,
                f"a JSON file written by cache_calibrate=true (see {MAGCACHE_DOC})",
            ) from None
    ok = (
        isinstance(ratios, list)
        and len(ratios) >= 2
        and all(isinstance(r, int | float) and not isinstance(r, bool) and 0 < r < 100 for r in ratios)
    )
    if not ok:
        allowed = f"a JSON file written by cache_calibrate=true, or a list of numbers (see {MAGCACHE_DOC})"
        raise _refuse("cache_ratios", "is not a list of at least 2 positive magnitude ratios", value, allowed)
    opts["cache_ratios"] = [float(r) for r in ratios]


def _is_ratios_file(path: Path) -> bool:
    import json

    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(found, dict) and isinstance(found.get("mag_ratios"), list)


def _last_image_path(value: Any) -> str:
    """The last_image option: a readable local image file (a URL is not fetched: the backend never downloads)."""
    allowed = "a local image file (PNG, JPEG, WebP), with --image for the first frame"
    if not isinstance(value, str | os.PathLike) or not os.fspath(value).strip():
        raise _refuse("last_image", f"{value!r} is not an image path", value, allowed)
    text = os.fspath(value).strip()
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I):
        raise _refuse(
            "last_image",
            "is a URL; the diffusers backend does not fetch files: download it and pass the local file",
            text,
            allowed,
        )
    path = Path(text).expanduser()
    if not path.is_file():
        raise _refuse("last_image", f"{text!r} is not an existing file", text, allowed)
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, ValueError, SyntaxError) as exc:
        raise _refuse("last_image", f"{text!r} is not a readable image ({exc})", text, allowed) from None
    return str(path)


# -- devices and memory --------------------------------------------------------------------------------------------


def pick_device(choice: str) -> str:
    import torch

    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequest(
            "options.device",
            f"{choice} was asked for but no CUDA GPU is visible here",
            value=choice,
            allowed="auto, cpu" + (", mps" if pick_device("auto") == "mps" else ""),
        )
    if choice == "mps" and pick_device("auto") != "mps":
        raise InvalidRequest(
            "options.device",
            "mps was asked for but Apple's Metal backend is not available",
            value=choice,
            allowed="auto, cpu",
        )
    return choice


def pick_dtype(choice: str, device: str) -> Any:
    import torch

    if choice != "auto":
        return getattr(torch, choice)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


_GIB = 1024**3


def memory_advice(opts: dict[str, Any]) -> str:
    """The options that would lower GPU memory, strongest last, leaving out those already on."""
    tips = []
    if opts["offload"] == "none":
        tips.append("--option offload=model (one component on the GPU at a time)")
    if opts["offload"] in ("none", "model"):
        tips.append("--option offload=group (streams transformer blocks; the least memory at good speed)")
    if not opts["vae_tiling"]:
        tips.append("--option vae_tiling=true (lower decode peak)")
    tips.append("a smaller size or fewer frames")
    return "; ".join(tips)


def check_fits(
    model: str, estimate: MemoryEstimate, free_bytes: float, total_bytes: float, opts: dict[str, Any]
) -> None:
    """Refuse before loading when the estimate for this offload mode exceeds the GPU's free memory (every mode)."""
    need = estimate.gpu_gb * 1e9
    if need <= free_bytes:
        return
    raise GenerationFailed(
        f"{model} needs about {need / _GIB:.1f} GiB of GPU memory with offload={opts['offload']} "
        f"({estimate.assumes}), but the GPU has {free_bytes / _GIB:.1f} GiB free of {total_bytes / _GIB:.1f} GiB. "
        f"Try: {memory_advice(opts)}"
    )


def _folder_params(folder: Path) -> dict[str, float]:
    """Parameters per component (billions), read from the safetensors headers: no weights are loaded."""
    import json
    import struct

    counts: dict[str, float] = {}
    for path in folder.rglob("*.safetensors"):
        try:
            with path.open("rb") as fh:
                size = struct.unpack("<Q", fh.read(8))[0]
                header = json.loads(fh.read(size)) if size < 100_000_000 else {}
        except (OSError, ValueError, struct.error):
            continue
        n = sum(math.prod(v.get("shape", [])) for k, v in header.items() if isinstance(v, dict) and "shape" in v)
        parts = path.relative_to(folder).parts
        name = parts[0] if len(parts) > 1 else "model"
        counts[name] = counts.get(name, 0.0) + n / 1e9
    return counts


def memory_estimate(
    located: Located,
    opts: dict[str, Any],
    dtypes: dict[str, Any],
    size: tuple[int, int, int],
    mode_class: str | None = None,
) -> MemoryEstimate:
    """GPU/CPU memory for this model, offload mode, component dtypes and width x height x frames."""
    entry, family = located.entry, located.family
    params = dict(entry.params_b) if entry is not None else {}
    if located.folder is not None and (entry is None or not params):
        params = _folder_params(located.folder) or params
    if entry is not None and located.class_name == "WanPipeline" and mode_class == "WanImageToVideoPipeline":
        params.pop("image_encoder", None)  # TI2V-5B: the same components in the i2v pipeline
    sizes = {name: _dtype_bytes(dtypes.get(name, dtypes["default"])) for name in params}
    sizes.update(quantized_bytes(opts, params, quantize_targets(list(params), opts)))
    work = entry.work_gb if entry is not None else family.work_gb
    caps = located.capabilities
    default = (caps.default_size[0], caps.default_size[1], caps.default_frames)
    kept = tuple(opts["offload_exclude"])
    resident = 0.0
    if opts.get("multiscale"):
        # the upsampler sits whole on the GPU in every offload mode (DiffusersBackend._upsampler), and the refine
        # pass (at twice the first pass's size, about 4/3 of the requested side) sets the activations and decode
        recipe = multiscale_recipe(located, opts)
        params["latent_upsampler"] = recipe.upsampler_params_b
        sizes["latent_upsampler"] = _dtype_bytes(dtypes.get("latent_upsampler", dtypes["default"]))
        refine = multiscale_sizes(size[0], size[1], recipe.downscale)[1]
        size, kept = (refine[0], refine[1], size[2]), (*kept, "latent_upsampler")
        if opts["offload"] in ("model", "sequential"):  # none and group count it as a component on the GPU
            resident = params["latent_upsampler"] * sizes["latent_upsampler"]
    estimate = estimate_memory(
        params,
        sizes,
        scaled_work(work, default, size),
        opts["offload"],
        text_encoder_device=opts["text_encoder_device"],
        group_exclude=kept,
        low_cpu_mem_usage=opts["low_cpu_mem_usage"],
    )
    if not opts.get("multiscale"):
        return estimate
    assumes = f"{estimate.assumes}; multiscale: the refine pass's size and the latent upsampler"
    return replace(estimate, gpu_gb=round(estimate.gpu_gb + resident, 2), assumes=assumes)


def _dtype_bytes(dtype: Any) -> float:
    return {"float32": 4.0, "float64": 8.0}.get(str(dtype).split(".")[-1], 2.0)


# -- the backend ---------------------------------------------------------------------------------------------------


def component_dtypes(located: Located, choice: str, device: str) -> dict[str, Any]:
    """torch dtype per component ("default" for the rest): the dtype option, the authors' per-component dtypes
    with dtype=auto on a GPU (SVD, CogVideoX-2b, HunyuanVideo: float16), and the Wan VAE / image encoder in float32
    (the authors and diffusers' Wan docs), for catalog entries and Wan checkpoints given by repo id or folder alike."""
    import torch

    base = pick_dtype(choice, device)
    out: dict[str, Any] = {"default": base}
    entry, family = located.entry, located.family
    if choice == "auto" and device.startswith("cuda") and entry is not None and entry.dtypes:
        for name, value in entry.dtypes.items():
            wanted = getattr(torch, value)
            if wanted == torch.bfloat16 and not torch.cuda.is_bf16_supported():
                wanted = torch.float16
            out[name] = wanted
    if base != torch.float32 and (entry.vae_float32 if entry is not None else family.vae_float32):
        out["vae"] = torch.float32
        out["image_encoder"] = torch.float32  # diffusers' wan.md i2v example: CLIPVisionModel in float32
    return out


class DiffusersTooOld(MissingExtra):
    """The installed diffusers lacks a name Kinema uses: says which version has it."""

    def __init__(self, feature: str, since: str) -> None:
        super().__init__("local", "diffusers", feature=feature)
        try:
            from importlib.metadata import version

            have = version("diffusers")
        except Exception:  # pragma: no cover - diffusers without metadata
            have = "unknown"
        KinemaError.__init__(
            self,
            f"{feature} needs diffusers>={since}, but diffusers {have} is installed; upgrade with: "
            f"pip install -U 'diffusers>={since}' (or pip install -U 'kinema[local]')",
        )
        self.reason = f"diffusers>={since} needed for {feature} (installed: {have})"


def diffusers_name(module: str, name: str, since: str, feature: str) -> Any:
    """``from module import name`` for a name that only newer diffusers releases have; DiffusersTooOld if absent."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise DiffusersTooOld(feature, since) from None


#: families whose attention goes through diffusers' attention dispatcher (set_attention_backend reaches it);
#: CogVideoX's processor calls F.scaled_dot_product_attention itself (diffusers models/attention_processor.py)
_ATTENTION_FAMILIES = ("wan", "ltx", "hunyuan")
#: families that encode the prompt on the CPU with text_encoder_device=cpu (their encode_prompt takes a device)
_TEXT_CPU_FAMILIES = ("wan", "ltx", "cogvideox", "hunyuan")
_SVD_OPTIONS = ("motion_bucket_id", "noise_aug_strength", "decode_chunk_size")
#: options that act per call, not on the loaded pipeline: changing them does not reload it (MagCache's ratios are
#: applied per call by apply_magcache)
_CALL_OPTIONS = (
    "guidance_2",
    "max_sequence_length",
    "true_cfg_scale",
    "_size_from_input",
    "last_image",
    "cache_ratios",
    "cache_calibrate",
)
#: the multi-scale flow adds the latent upsampler beside the loaded pipeline (its own key): turning it on or off
#: reloads nothing else
_MULTISCALE_OPTIONS = ("multiscale", "upsampler")
_KEYLESS_OPTIONS = frozenset((*_CALL_OPTIONS, *_SVD_OPTIONS, *_MULTISCALE_OPTIONS))
#: HunyuanVideo's true CFG scale when none is given: the authors' ``--cfg-scale`` default (hyvideo/config.py), 1.0,
#: which leaves true CFG off (diffusers' HunyuanVideoPipeline runs it only above 1); no source recommends another
HUNYUAN_TRUE_CFG = 1.0


def _refuse(key: str, why: str, value: Any, allowed: str) -> InvalidRequest:
    return InvalidRequest(f"options.{key}", why, value=value, allowed=allowed)


def check_model_options(located: Located, opts: dict[str, Any], given: set[str], mode: str | None = None) -> None:
    """Refuse, before anything loads, options that would do nothing on this model (naming what is allowed)."""
    family = located.family.name
    if opts["last_image"] is not None:
        _check_last_image(located, mode)
    elif mode in ("i2v", "extend") and _needs_last_frame(located):
        raise _refuse(
            "last_image",
            f"{located.model} is a first-last-frame model: it conditions on two images and diffusers fails on one",
            None,
            "--last-image PATH with --image",
        )
    if opts["scheduler"] is not None:
        current = _scheduler_at_load(located)
        if current is not None:
            scheduler_class(opts["scheduler"], *current)
    if opts["attention"] != "sdpa" and family not in _ATTENTION_FAMILIES:
        why = (
            (
                "CogVideoX's attention processor calls PyTorch's scaled_dot_product_attention directly, so an "
                "attention backend does not reach it"
            )
            if family == "cogvideox"
            else (f"{located.class_name} uses a UNet, whose attention backend Kinema does not switch")
        )
        raise _refuse("attention", why, opts["attention"], "sdpa")
    if "shift" in given and opts["shift"] is not None:
        reason = _shift_unsupported(located)
        if reason:
            raise _refuse("shift", reason, opts["shift"], "no shift option for this model")
    for key in _SVD_OPTIONS:
        if key in given and opts[key] is not None and family != "svd":
            raise _refuse(key, "is a Stable Video Diffusion option", opts[key], "only with SVD models")
    if "true_cfg_scale" in given and opts["true_cfg_scale"] is not None and family != "hunyuan":
        raise _refuse(
            "true_cfg_scale",
            "is a HunyuanVideo option (other models take guidance_scale)",
            opts["true_cfg_scale"],
            "only with HunyuanVideo",
        )
    if opts["text_encoder_device"] == "cpu" and family not in _TEXT_CPU_FAMILIES:
        raise _refuse(
            "text_encoder_device",
            f"keeping the text encoder on the CPU is not supported for {located.class_name}",
            "cpu",
            "auto",
        )
    for key in ("offload_exclude", "low_cpu_mem_usage"):
        if key in given and opts["offload"] != "group":
            raise _refuse(
                key, f"applies to offload=group, not offload={opts['offload']}", opts[key], "with offload=group only"
            )
    _check_quantize(located, opts, given)
    _check_split(located, opts)
    _check_multiscale(located, opts, given, mode)
    if (
        "guidance_2" in given
        and opts["guidance_2"] is not None
        and family == "wan"
        and located.entry is not None
        and located.entry.guidance_2 is None
    ):
        raise _refuse(
            "guidance_2",
            f"{located.model} has one transformer, so there is no low-noise expert",
            opts["guidance_2"],
            "only with Wan2.2 A14B models",
        )


def _check_last_image(located: Located, mode: str | None) -> None:
    """last_image reaches WanImageToVideoPipeline only, and not with expand_timesteps (Wan2.2 TI2V-5B), where
    diffusers' prepare_latents conditions on the first frame alone and would drop it without a word."""
    allowed = "only with --image (or --video) on Wan image-to-video models, e.g. wan2.1-flf2v-14b-720p"
    if mode == "keyframes":
        raise _refuse(
            "last_image",
            "gives the last frame a second time: the request's last_image (--last-image) is it; drop the option",
            located.model,
            "the request's last_image alone",
        )
    if mode is not None and mode not in ("i2v", "extend"):
        raise _refuse(
            "last_image",
            "is the last frame of an image-to-video clip; give the first with --image",
            located.model,
            allowed,
        )
    cls = DiffusersBackend._pipeline_class(located, "i2v") if "i2v" in located.capabilities.modes else None
    index = read_model_index(located.folder) if located.folder is not None else {}
    if cls != "WanImageToVideoPipeline" or located.class_name == "WanPipeline" or index.get("expand_timesteps"):
        what = (
            "Wan2.2 TI2V conditions on the first frame only (expand_timesteps)"
            if cls == "WanImageToVideoPipeline"
            else f"{located.class_name} takes no last frame"
        )
        raise _refuse("last_image", what, located.model, allowed)
    if located.folder is not None:
        config = read_json(located.folder / "transformer" / "config.json")
        # a Wan2.1 I2V transformer reads the CLIP tokens of one image: given two (first and last), diffusers'
        # transformer fails on the batch mismatch mid-call; FLF2V's image embedder has a positional embedding
        # over both (pos_embed_seq_len), and Wan2.2 I2V takes no CLIP tokens at all (image_dim null)
        takes = config.get("image_dim") is None or config.get("pos_embed_seq_len") is not None
    else:
        takes = located.entry is not None and located.entry.last_frame
    if not takes:
        raise _refuse(
            "last_image",
            f"{located.model} was trained on a first frame only (its transformer has no "
            "positional embedding for two images' CLIP tokens)",
            located.model,
            allowed,
        )


def _needs_last_frame(located: Located) -> bool:
    """FLF2V: WanImageEmbedding views the CLIP tokens as (-1, 2 x tokens) for its positional embedding, which one
    image's tokens cannot fill (diffusers models/transformers/transformer_wan.py)."""
    if located.folder is not None:
        return read_json(located.folder / "transformer" / "config.json").get("pos_embed_seq_len") is not None
    return located.entry is not None and located.entry.needs_last_frame


def _scheduler_at_load(located: Located) -> tuple[Any, dict[str, Any]] | None:
    """The scheduler class and config the pipeline will load with (the catalog's choice first), or None when the
    weights are not here or diffusers is not installed (then the check happens at load time)."""
    if located.folder is None:
        return None
    try:
        import diffusers
    except ImportError:
        return None
    config = read_json(located.folder / "scheduler" / "scheduler_config.json")
    name = located.entry.scheduler[0] if located.entry and located.entry.scheduler else config.get("_class_name")
    cls = getattr(diffusers, str(name), None)
    return (cls, config) if cls is not None else None


def scheduler_choices(current: Any, config: dict[str, Any]) -> list[str]:
    """Scheduler class names that can replace ``current`` (a class) configured by ``config``: diffusers' own
    ``compatibles`` list; for a flow-matching config (Wan's UniPC with ``use_flow_sigmas``), only the classes that
    take ``use_flow_sigmas``, plus FlowMatchEulerDiscreteScheduler (``flow_shift`` becomes its ``shift``)."""
    names = {c.__name__ for c in current._get_compatibles()}
    if config.get("use_flow_sigmas") or config.get("prediction_type") == "flow_prediction":
        import diffusers

        names = {n for n in names if "use_flow_sigmas" in inspect.signature(getattr(diffusers, n).__init__).parameters}
        names.add("FlowMatchEulerDiscreteScheduler")
    return sorted(names)


def scheduler_class(name: str, current: Any, config: dict[str, Any]) -> str:
    """The class name ``name`` stands for (case and the "Scheduler" suffix optional), refused unless compatible."""
    choices = scheduler_choices(current, config)
    wanted = name.lower().removesuffix("scheduler")
    for choice in choices:
        if choice.lower().removesuffix("scheduler") == wanted:
            return choice
    raise _refuse(
        "scheduler",
        f"{name!r} is not a scheduler {current.__name__} can be replaced with in diffusers",
        name,
        ", ".join(choices),
    )


def _set_scheduler(pipe: Any, name: str) -> None:
    """Replace the pipeline's scheduler with ``name``, built from its own config (shift and all)."""
    import diffusers

    chosen = scheduler_class(name, type(pipe.scheduler), dict(pipe.scheduler.config))
    if chosen == type(pipe.scheduler).__name__:
        return
    cls = getattr(diffusers, chosen)
    config = dict(pipe.scheduler.config)
    accepted = set(inspect.signature(cls.__init__).parameters)
    extra: dict[str, Any] = {}
    if chosen == "FlowMatchEulerDiscreteScheduler" and "flow_shift" in config:
        extra["shift"] = config["flow_shift"]  # the same sigma shift under FlowMatchEuler's name
    # only the keys the new class takes: from_config warns about every other one
    pipe.scheduler = cls.from_config({k: v for k, v in config.items() if k in accepted or k.startswith("_")}, **extra)


def pipeline_components(folder: Path) -> dict[str, str]:
    """The checkpoint's components and their libraries, from model_index.json (an unused slot such as Wan 2.1's
    ``transformer_2: [null, null]`` is left out)."""
    index = read_model_index(folder)
    return {k: str(v[0]) for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[0] and v[1]}


def _check_split(located: Located, opts: dict[str, Any]) -> None:
    """ulysses / ring against the model and the other options (the group's size is checked where the ranks run)."""
    cls: Any = None
    config: dict[str, Any] = {}
    if split_degree(opts) > 1 and located.folder is not None:
        import diffusers

        spec = read_model_index(located.folder).get("transformer")
        name = spec[1] if isinstance(spec, list) and len(spec) == 2 and spec[1] else located.class_name
        cls = getattr(diffusers, name, located.class_name)
        config = read_json(located.folder / "transformer" / "config.json")
    check_parallel(cls, config, opts, None)
    if split_degree(opts) == 1:
        return
    for key, off in (("cache", "none"), ("quantize", "none"), ("compile", False)):
        if opts[key] != off:
            raise _refuse(
                key,
                "is not tested together with a split sequence (ulysses or ring above 1)",
                opts[key],
                f"{off} when the sequence is split",
            )


# -- LTX-Video's multi-scale flow -----------------------------------------------------------------------------------

#: LTXConditionPipeline.check_inputs takes sizes in multiples of 32 at each pass (the authors' vae_scale_factor)
_LTX_MULTIPLE = 32
MULTISCALE_DOC = "docs/models.md, 'LTX-Video multi-scale'"
_MULTISCALE_MODELS = "LTX-Video 0.9.7 / 0.9.8 checkpoints (LTXConditionPipeline), e.g. ltx-video"
_UPSAMPLER_CLASS = "LTXLatentUpsamplerModel"


def _upsampler_ref(value: Any) -> str:
    """The upsampler option: an existing local folder or a Hub repo id (checked for form only: weights at load)."""
    allowed = "a Hub repo id (org/name, e.g. Lightricks/ltxv-spatial-upscaler-0.9.7) or a local folder"
    text = os.fspath(value).strip() if isinstance(value, str | os.PathLike) else ""
    if not text or not (Path(text).expanduser().is_dir() or _REPO_ID.match(text)):
        raise _refuse("upsampler", f"{value!r} is neither an existing folder nor a Hub repo id", value, allowed)
    return text


def _check_multiscale(located: Located, opts: dict[str, Any], given: set[str], mode: str | None) -> None:
    """multiscale / upsampler against the model, the mode and the other options (before anything loads)."""
    if not opts["multiscale"]:
        if "upsampler" in given and opts["upsampler"] is not None:
            raise _refuse(
                "upsampler",
                "names the latent upsampler of multiscale=true, which is off",
                opts["upsampler"],
                "with multiscale=true only",
            )
        return
    if located.family.name != "ltx":
        raise _refuse(
            "multiscale",
            f"is LTX-Video's multi-scale flow (its latent upsampler); {located.model} is a {located.class_name} model",
            True,
            f"only with {_MULTISCALE_MODELS}",
        )
    if located.class_name != "LTXConditionPipeline":
        raise _refuse(
            "multiscale",
            f"{located.model} is an {located.class_name} checkpoint (LTX-Video 0.9.0 / "
            "0.9.1): the authors' latent upsampler came with 0.9.7, and the refine pass needs "
            "LTXConditionPipeline's denoise_strength",
            True,
            f"only with {_MULTISCALE_MODELS}",
        )
    if mode == "edit":
        raise _refuse(
            "multiscale",
            "an edit hands the source clip to the pipeline as its latents, where the "
            "refine pass puts the upsampled ones",
            True,
            "false for edits (t2v, i2v, extend, keyframes)",
        )
    if opts["cache"] == "magcache":
        raise _refuse(
            "cache",
            "MagCache's hooks are set for one step count; the multi-scale flow runs two passes of different lengths",
            "magcache",
            "none, firstblock or taylorseer with it",
        )
    if split_degree(opts) > 1:
        key = "ulysses" if opts["ulysses"] > 1 else "ring"
        raise _refuse(
            key,
            "splitting the sequence is not tested with multiscale=true yet",
            opts[key],
            "1 (one process) with multiscale=true",
        )
    multiscale_recipe(located, opts)  # refuses a checkpoint with no upsampler named


def multiscale_recipe(located: Located, opts: dict[str, Any]) -> MultiScale:
    """The multi-scale recipe for this checkpoint: the catalog's (the authors'), else diffusers' 0.9.7-dev example
    (:data:`LTX_DEV_MULTISCALE`); ``--option upsampler`` replaces its upsampler. A checkpoint with none is refused."""
    entry = located.entry
    recipe = entry.multiscale if entry is not None and entry.multiscale is not None else LTX_DEV_MULTISCALE
    if opts["upsampler"] is not None:
        recipe = replace(recipe, upsampler=opts["upsampler"])
    if recipe.upsampler is None:
        raise _refuse(
            "upsampler",
            f"{located.model} comes with no latent upsampler Kinema knows: the LTX authors "
            "release one for 0.9.7 and 0.9.8, Lightricks/ltxv-spatial-upscaler-0.9.7 (the 0.9.8 file is "
            f"a copy of it); name it for this checkpoint (see {MULTISCALE_DOC})",
            None,
            "upsampler=Lightricks/ltxv-spatial-upscaler-0.9.7, or a local folder",
        )
    return recipe


def multiscale_sizes(width: int, height: int, downscale: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """((width, height) of the first pass, of the refine pass): the authors' rounding (LTXMultiScalePipeline in
    Lightricks/LTX-Video ltx_video/pipelines/pipeline_ltx_video.py): ``int(size x downscale)`` rounded down to a
    multiple of 32, then twice that; the clip is resized to ``width x height`` at the end. A size whose first pass
    would be under 32 is refused, naming the side."""
    first = (
        int(width * downscale) // _LTX_MULTIPLE * _LTX_MULTIPLE,
        int(height * downscale) // _LTX_MULTIPLE * _LTX_MULTIPLE,
    )
    for field, size, got in (("width", width, first[0]), ("height", height, first[1])):
        if got < _LTX_MULTIPLE:
            least = math.ceil(_LTX_MULTIPLE / downscale / _LTX_MULTIPLE) * _LTX_MULTIPLE
            raise InvalidRequest(
                field,
                f"{size} is too small to split for the multi-scale flow: its first pass runs "
                f"at int({size} x {downscale:g}) rounded down to a multiple of {_LTX_MULTIPLE}, "
                "which is 0",
                value=size,
                allowed=f"{least} or more with options.multiscale=true",
            )
    return first, (2 * first[0], 2 * first[1])


def locate_upsampler(ref: str, revision: str | None = None) -> Path:
    """The upsampler's folder: a local folder, or the cached snapshot of a Hub repo (never downloaded here)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache

    # an LTXLatentUpsamplePipeline repo (model_index.json) or a bare LTXLatentUpsamplerModel (config.json)
    for name in ("model_index.json", "config.json"):
        found = try_to_load_from_cache(ref, name, cache_dir=hub_cache_dir(), revision=revision or "main")
        if isinstance(found, str):
            return Path(found).parent
    raise ModelNotFound(
        f"options.upsampler: the latent upsampler {ref!r} is not in the Hugging Face cache at "
        f"{hub_cache_dir()}: run 'kinema pull {ref}' (on a machine with internet, then copy the "
        "cache here), or pass a local folder with --option upsampler=PATH"
    )


def _upsampler_subfolder(folder: Path) -> str | None:
    """Where the LTXLatentUpsamplerModel is in ``folder``: ``latent_upsampler`` of an LTXLatentUpsamplePipeline
    layout (Lightricks/ltxv-spatial-upscaler-0.9.7), or the folder itself (a saved LTXLatentUpsamplerModel)."""
    index = read_model_index(folder)
    if index:
        spec = index.get("latent_upsampler")
        if isinstance(spec, list) and spec[-1:] == [_UPSAMPLER_CLASS] and (folder / "latent_upsampler").is_dir():
            return "latent_upsampler"
    elif read_json(folder / "config.json").get("_class_name") == _UPSAMPLER_CLASS:
        return None
    raise _refuse(
        "upsampler",
        f"{folder.name!r} holds no {_UPSAMPLER_CLASS} (neither an LTXLatentUpsamplePipeline "
        f"folder with latent_upsampler/ nor a saved {_UPSAMPLER_CLASS})",
        str(folder),
        "Lightricks/ltxv-spatial-upscaler-0.9.7, or a folder in either layout",
    )


def multiscale_record(
    recipe: MultiScale, first: tuple[int, int], refine: tuple[int, int], revision: str | None = None
) -> dict[str, Any]:
    """What the recipe records of a multi-scale run (no local path: a folder is named as such)."""
    ref = recipe.upsampler or ""
    record: dict[str, Any] = {
        "upsampler": ref if _REPO_ID.match(ref) and not Path(ref).expanduser().is_dir() else "a local folder",
        "first_pass": f"{first[0]}x{first[1]}",
        "refine_pass": f"{refine[0]}x{refine[1]}",
        "downscale": recipe.downscale,
        "adain_factor": recipe.adain_factor,
        "tone_map_compression_ratio": recipe.tone_map_compression_ratio,
        "refine_strength": recipe.refine_strength,
    }
    if recipe.refine_timesteps is not None:
        record["refine_timesteps"] = list(recipe.refine_timesteps)
    else:
        record["refine_steps"] = recipe.refine_steps
    if revision is not None:
        record["upsampler_revision"] = revision
    return record


def _check_quantize(located: Located, opts: dict[str, Any], given: set[str]) -> None:
    """The quantization options against the offload mode and the pipeline's components (see docs/models.md)."""
    mode = opts["quantize"]
    if "quantize_components" in given and opts["quantize_components"] and mode == "none":
        raise _refuse(
            "quantize_components",
            "names what quantize applies to, but quantize is none",
            opts["quantize_components"],
            "with quantize=int8, fp8, fp8_layerwise, bnb8 or bnb4",
        )
    quantized = mode != "none" or opts["transformer_file"] or opts["transformer_2_file"]
    if quantized and opts["offload"] == "sequential":
        raise _refuse(
            "offload",
            "sequential offload moves weights parameter by parameter with accelerate hooks, "
            "which quantized weights do not support",
            "sequential",
            "none, model, group",
        )
    if opts["offload"] == "group" and mode not in ("none", "fp8_layerwise"):
        raise _refuse(
            "offload",
            f"group offload streams weights with CUDA streams; diffusers documents it with "
            f"layerwise casting, not with quantize={mode}",
            "group",
            "none or model (or quantize=fp8_layerwise with group)",
        )
    if located.folder is None:
        return
    components = list(pipeline_components(located.folder))
    if mode != "none":
        quantize_targets(components, opts)  # names a missing component: refused here
    for key, component in (("transformer_file", "transformer"), ("transformer_2_file", "transformer_2")):
        if opts[key] and component not in components:
            raise _refuse(
                key,
                f"{located.model} has no {component}",
                opts[key],
                "transformer_file; transformer_2_file only for Wan 2.2 A14B",
            )


def _shift_unsupported(located: Located) -> str | None:
    """Why the shift option would do nothing on this model's scheduler; None when it applies."""
    if located.family.name in ("cogvideox", "svd", "modelscope"):
        return f"{located.class_name} does not use a flow-matching scheduler, so it has no shift"
    if located.folder is None:
        return None
    config = read_json(located.folder / "scheduler" / "scheduler_config.json")
    if not config:
        return None
    if "flow_shift" in config:
        return None
    if "shift" in config:
        if config.get("use_dynamic_shifting"):
            return (
                f"{config.get('_class_name', 'the scheduler')} computes its shift from the size "
                "(use_dynamic_shifting), so a fixed shift is not used"
            )
        return None
    return f"{config.get('_class_name', 'its scheduler')} has no shift"


def image_size(source: Any) -> tuple[int, int] | None:
    """(width, height) of an image given as a path, bytes, PIL image or array, without fetching URLs; else None."""
    import io

    from PIL import Image

    try:
        if isinstance(source, np.ndarray):
            return int(source.shape[1]), int(source.shape[0])
        if type(source).__module__.startswith("PIL."):
            return int(source.size[0]), int(source.size[1])
        if isinstance(source, bytes | bytearray):
            with Image.open(io.BytesIO(bytes(source))) as img:
                return img.size
        if isinstance(source, str | os.PathLike) and not os.fspath(source).startswith(("http://", "https://")):
            with Image.open(os.fspath(source)) as img:
                return img.size
    except (OSError, ValueError, IndexError):
        return None
    return None


def size_from_aspect(width: int, height: int, caps: Capabilities) -> tuple[int, int]:
    """The output size for an input of ``width`` x ``height``: the default size's area at the input's aspect,
    rounded down to the size multiple (diffusers' Wan i2v example, ``aspect_ratio_resize``)."""
    area = caps.default_size[0] * caps.default_size[1]
    m = max(1, caps.size_multiple)
    aspect = height / width
    h = int(round(math.sqrt(area * aspect))) // m * m
    w = int(round(math.sqrt(area / aspect))) // m * m
    low, high = max(m, caps.min_size), caps.max_size
    return min(max(w, low), high) // m * m, min(max(h, low), high) // m * m


def _cuda_index(device: str) -> int | None:
    """The CUDA index of a torch device string ("cuda" -> 0, "cuda:3" -> 3, "cpu" -> None)."""
    if device == "cuda":
        return 0
    head, _, index = device.partition(":")
    return int(index) if head == "cuda" and index.isdigit() else None


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    pipe: Any
    cpu_text: dict[str, Any]  # text encoders kept on the CPU (text_encoder_device=cpu)
    magcache: tuple[Any, ...] | None = None  # the settings (steps first) MagCache's hooks are applied with
    base: Any = None  # the checkpoint's own pipeline class, built on the same components (other modes switch from it)
    upsampler: tuple[tuple[Any, ...], Any] | None = None  # (key, LTXLatentUpsamplerModel): multiscale=true


class DiffusersBackend(BaseBackend):
    name = "diffusers"
    description = (
        "Local open-weight models through diffusers: Wan, LTX-Video, CogVideoX, HunyuanVideo, SVD, ModelScope"
    )
    requires = (("diffusers", "local"), ("transformers", "local"), ("huggingface_hub", "local"))

    def __init__(self) -> None:
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def release(self, gpus: Iterable[int] | None = None) -> bool:
        """Free the loaded pipeline before other processes take its GPUs: a split run's ranks load their own copy,
        and one kept here on the same GPU leaves rank 0 that much less memory. ``gpus``: only if it sits on one of
        these CUDA indices (bare "cuda" is index 0); None: wherever it is. Returns whether one was freed. A job
        still running with it keeps its reference; the next job here loads again."""
        with self._lock:
            if self._loaded is None:
                return False
            if gpus is not None and _cuda_index(str(self._loaded.key[2])) not in set(gpus):
                return False
            self._loaded = None
        _free_memory()
        return True

    def models(self) -> list[str]:
        return list(CATALOG)

    def default_model(self) -> str | None:
        return DEFAULT_MODEL

    def capabilities(self, model: str | None = None) -> Capabilities:
        return locate(model or DEFAULT_MODEL).capabilities

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        # "_" keys are this backend's own records (below), which a recipe carries back (kinema generate --from):
        # never a user's option, so they are set aside rather than refused
        given = {k: v for k, v in request.options.items() if not str(k).startswith("_")}
        opts = validate_options(dict(given))  # bad options fail before anything else
        params = super().resolve(request, seed)
        located = locate(params.model or DEFAULT_MODEL, opts["revision"])
        check_model_options(located, opts, set(given), params.mode)
        caps = located.capabilities
        used: dict[str, Any] = {"class": self._pipeline_class(located, params.mode)}
        steps = _check_edit_modes(located, request, params, opts)
        if params.mode in ("edit", "keyframes", "references"):
            _check_cache_context(used["class"], opts)
        if steps is not None:  # the recipe says how the strength reached the pipeline
            used.update(
                strength_argument=EDIT_STRENGTH_ARG.get(used["class"]),
                strength=params.strength,
                steps_run=steps[0],
                steps=steps[1],
            )
        if opts["last_image"] is not None:
            params.warnings.append(
                "options.last_image is kept for older scripts: the request's last_image "
                "(--last-image) does the same, works with LTX-Video too, and the recipe records "
                "it by digest rather than by path"
            )
        sized_by_user = request.width is not None or request.aspect_ratio or request.resolution
        if params.mode != "t2v" and not sized_by_user and not caps.sizes:
            # the output follows the input's aspect at the default size's area (diffusers' Wan i2v example);
            # an image behind a URL, or a clip, is measured when it is loaded (generate)
            shown = request.image if params.mode in ("i2v", "keyframes") else None
            if params.mode == "keyframes" and shown is None:
                shown = request.last_image
            found = image_size(shown) if shown is not None else None
            if found is not None:
                params.width, params.height = size_from_aspect(found[0], found[1], caps)
            else:
                opts["_size_from_input"] = True
        if opts["multiscale"] and not opts.get("_size_from_input"):
            recipe = multiscale_recipe(located, opts)  # a size it cannot split is refused at planning
            used["multiscale"] = multiscale_record(
                recipe, *multiscale_sizes(params.width, params.height, recipe.downscale)
            )
        params.options = {**given, "_resolved": opts, "_pipeline": used}
        return params

    # -- generate -------------------------------------------------------------------------------------------------
    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        require_module("diffusers", "local", feature="the diffusers backend")
        import torch

        opts = params.options.get("_resolved") or validate_options(
            {k: v for k, v in params.options.items() if not k.startswith("_")}
        )
        model = params.model or DEFAULT_MODEL
        located = locate(model, opts["revision"])
        if located.folder is None:
            raise ModelNotFound(f"model: {missing_weights_message(model, located.repo or model)}")
        missing = missing_components(located.folder)
        if missing:
            raise ModelNotFound(
                f"model: the checkpoint at {located.folder} lacks {', '.join(missing)} (an interrupted download?); "
                f"run 'kinema pull {model}' again or pass a complete folder with --model"
            )
        device = pick_device(opts["device"])
        check_quant_device(opts, device)
        if split_degree(opts) != split_world()[1]:
            raise InvalidRequest(
                "options.ulysses",
                f"ulysses x ring = {split_degree(opts)} needs as many processes; this one runs alone",
                value=split_degree(opts),
                allowed="kinema generate --gpus N, or kinema.launch.launch()",
            )
        if opts["offload"] != "none" and not device.startswith("cuda"):
            raise InvalidRequest(
                "options.offload",
                f"{opts['offload']!r} moves weights between CPU memory and a GPU; the device here is {device}",
                value=opts["offload"],
                allowed="none",
            )
        warnings: list[str] = []
        if opts.get("_size_from_input"):
            first = _first_input_frame(params)
            if first is not None:
                params.width, params.height = size_from_aspect(first.shape[1], first.shape[0], located.capabilities)
        dtypes = component_dtypes(located, opts["dtype"], device)
        dtype = dtypes["default"]
        family = located.family
        mode_class = self._pipeline_class(located, params.mode)
        if device.startswith("cuda"):
            free, total = torch.cuda.mem_get_info(torch.device(device))
            estimate = memory_estimate(
                located, opts, dtypes, (params.width, params.height, params.num_frames), mode_class
            )
            check_fits(model, estimate, free, total, opts)
        warnings.extend(_frame_warnings(located, params))
        if params.mode == "edit":  # a clip too short is refused before any weight is read
            source_frames(params, located.capabilities)
        recipe: MultiScale | None = None
        if opts["multiscale"]:  # refused before any weight is read: a size it cannot split, no upsampler here
            _check_multiscale(located, opts, set(), params.mode)  # for callers that skip resolve
            recipe = multiscale_recipe(located, opts)
            sizes = multiscale_sizes(params.width, params.height, recipe.downscale)
            assert recipe.upsampler is not None
            locate_upsampler(recipe.upsampler)

        ctx.progress("loading", 0, 1)
        ctx.cancel.raise_if_cancelled()
        pipe = self._pipeline(located, mode_class, device, dtypes, opts)
        upsampler: Any = None
        if recipe is not None:
            upsampler, up_folder = self._upsampler(located, recipe, device, dtypes)
        ctx.progress("loading", 1, 1)
        ctx.cancel.raise_if_cancelled()

        kwargs, total_steps = call_kwargs(located, pipe, params, opts, warnings)
        assert self._loaded is not None
        if self._loaded.cpu_text:
            _encode_on_cpu(pipe, self._loaded.cpu_text, located, kwargs, device)
        kwargs.update(step_callbacks(pipe, ctx, total_steps))
        if opts["cache"] == "magcache":
            self._loaded.magcache = apply_magcache(pipe, opts, total_steps, self._loaded.magcache)

        def run() -> Any:
            with torch.inference_mode():
                if recipe is not None:
                    return run_multiscale(pipe, upsampler, kwargs, recipe, params, ctx, total_steps)[0]
                return pipe(**kwargs).frames

        try:
            if opts["cache"] == "magcache" and opts["cache_calibrate"]:
                out, note = calibrate_magcache(run, opts["cache_ratios"], model, total_steps)
                warnings.append(note)
            else:
                out = run()
        except Cancelled:
            raise
        except torch.OutOfMemoryError as exc:
            raise GenerationFailed(
                f"{model} ran out of GPU memory at {params.width}x{params.height}, "
                f"{params.num_frames} frames. Try: {memory_advice(opts)}"
            ) from exc
        ctx.cancel.raise_if_cancelled()
        ctx.progress("decoding", 1, 1)
        frames = _to_uint8(out)
        if frames.shape[0] != params.num_frames:
            warnings.append(f"{mode_class} returned {frames.shape[0]} frames for {params.num_frames} asked")
            frames = frames[: params.num_frames]
        from ..video import Video

        # into the recipe as "engine": no local path (the recipe names the model, and travels with the file)
        extra: dict[str, Any] = {
            "pipeline": mode_class,
            "family": family.name,
            "device": device,
            "dtype": str(dtype).split(".")[-1],
            "scheduler": type(pipe.scheduler).__name__,
        }
        if kwargs.get("negative_prompt") and not params.negative_prompt:
            extra["negative_prompt"] = "the model authors' default"
        if recipe is not None:
            snapshot = up_folder.name if up_folder.parent.name == "snapshots" else None
            extra["multiscale"] = multiscale_record(recipe, *sizes, revision=snapshot)
        return BackendOutput(
            video=Video(frames, fps=params.fps),
            model_revision=located.revision or "local",
            warnings=warnings,
            extra=extra,
        )

    # -- loading --------------------------------------------------------------------------------------------------
    @staticmethod
    def _pipeline_class(located: Located, mode: str) -> str:
        family = located.family
        if mode == "t2v":
            return located.class_name
        if mode == "edit":  # the same weights in each family's video-to-video pipeline
            return {
                "wan": "WanVideoToVideoPipeline",
                "cogvideox": "CogVideoXVideoToVideoPipeline",
                "ltx": "LTXConditionPipeline",
            }.get(family.name, located.class_name)
        if family.name == "ltx" and mode == "keyframes":
            return "LTXConditionPipeline"
        if family.name == "ltx":
            # LTXConditionPipeline (0.9.5 and later) conditions on images and clips itself
            if located.class_name == "LTXConditionPipeline" or mode == "extend":
                return "LTXConditionPipeline"
            return "LTXImageToVideoPipeline"
        if located.class_name == "WanPipeline":  # Wan2.2 TI2V: the same weights in the i2v pipeline
            return "WanImageToVideoPipeline"
        return located.class_name

    def _pipeline(
        self, located: Located, class_name: str, device: str, dtypes: dict[str, Any], opts: dict[str, Any]
    ) -> Any:
        """Load (or reuse) the pipeline for this checkpoint, mode and options. One pipeline is kept in memory."""
        import diffusers

        key = (
            str(located.folder),
            class_name,
            device,
            tuple(sorted((k, str(v)) for k, v in dtypes.items())),
            tuple((k, str(v)) for k, v in sorted(opts.items()) if k not in _KEYLESS_OPTIONS),
        )
        with self._lock:
            if self._loaded is not None and self._loaded.key == key:
                return self._loaded.pipe
            if self._loaded is not None and self._loaded.key[:1] + self._loaded.key[2:] == key[:1] + key[2:]:
                # another mode of the same weights and options: the same components in another pipeline class
                # (text-to-video -> edit...), so nothing is loaded twice and every option applied stays applied
                pipe = self._reuse(self._loaded, class_name, device, opts)
                self._loaded = _Loaded(
                    key, pipe, self._loaded.cpu_text, self._loaded.magcache, self._loaded.base, self._loaded.upsampler
                )
                return pipe
            if self._loaded is not None:  # free the previous model before loading the next
                self._loaded = None
                _free_memory()
            assert located.folder is not None
            entry = located.entry
            torch_dtype: Any = dtypes["default"] if len(dtypes) == 1 else dict(dtypes)
            kwargs: dict[str, Any] = {_dtype_key(): torch_dtype, "local_files_only": True}
            if entry is not None and entry.variant and any(located.folder.rglob(f"*.{entry.variant}.safetensors")):
                kwargs["variant"] = entry.variant
            index = pipeline_components(located.folder)
            quantized = quantize_targets(list(index), opts) if opts["quantize"] != "none" else []
            compute = dtypes.get("transformer", dtypes["default"])
            for name in ("transformer", "transformer_2"):
                if opts[f"{name}_file"]:  # a GGUF / single file replaces this component; it is not quantized again
                    kwargs[name] = load_single_file(located.folder, name, opts[f"{name}_file"], compute)
                    quantized = [n for n in quantized if n != name]
            config = quantization_config(opts, {n: index[n] for n in quantized}, compute)
            if config is not None:
                kwargs["quantization_config"] = config
            base_cls = getattr(diffusers, located.class_name)
            pipe = base_cls.from_pretrained(located.folder, **kwargs)
            if opts["quantize"] == "fp8_layerwise":
                apply_layerwise_casting(pipe, quantized, compute)
            base = pipe
            if class_name != located.class_name:
                pipe = switch_pipeline(pipe, getattr(diffusers, class_name))
            if entry is not None and entry.scheduler is not None:
                name, overrides = entry.scheduler
                pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config, **overrides)
            pipe.set_progress_bar_config(disable=True)
            cpu_text = self._configure(pipe, located, device, opts)
            self._loaded = _Loaded(key, pipe, cpu_text, base=base)
            return pipe

    def _upsampler(
        self, located: Located, recipe: MultiScale, device: str, dtypes: dict[str, Any]
    ) -> tuple[Any, Path]:
        """Load (or reuse) the latent upsampler of the multi-scale flow beside the loaded pipeline, the way the rest
        loads: from the cache or a folder only, in the pipeline's dtype (``dtypes``: the dtype option, bfloat16 on
        a GPU by default, as the authors' ``precision``), kept while the pipeline stays loaded. Its latent
        channels must be the VAE's."""
        assert recipe.upsampler is not None and self._loaded is not None
        folder = locate_upsampler(recipe.upsampler)
        dtype = dtypes.get("latent_upsampler", dtypes["default"])
        key = (str(folder), device, str(dtype))
        with self._lock:
            loaded = self._loaded
            if loaded.upsampler is not None and loaded.upsampler[0] == key:
                return loaded.upsampler[1], folder
            loaded.upsampler = None  # another upsampler, device or dtype: free the old one first
            cls = diffusers_name(
                "diffusers.pipelines.ltx.modeling_latent_upsampler", _UPSAMPLER_CLASS, "0.34", "options.multiscale"
            )
            sub = _upsampler_subfolder(folder)
            kwargs: dict[str, Any] = {_dtype_key(): dtype, "local_files_only": True}
            if sub is not None:
                kwargs["subfolder"] = sub
            model = cls.from_pretrained(folder, **kwargs)
            vae = getattr(loaded.pipe, "vae", None)
            channels = getattr(getattr(vae, "config", None), "latent_channels", None)
            if channels is not None and int(model.config.in_channels) != int(channels):
                raise _refuse(
                    "upsampler",
                    f"upsamples {model.config.in_channels}-channel latents, but the VAE of "
                    f"{located.model} makes {channels}-channel ones",
                    recipe.upsampler,
                    "the upsampler released with the checkpoint's LTX-Video version",
                )
            model.to(device)  # whole on the device in every offload mode: 0.13B parameters, run once per clip
            loaded.upsampler = (key, model)
            return model, folder

    @staticmethod
    def _reuse(loaded: _Loaded, class_name: str, device: str, opts: dict[str, Any]) -> Any:
        """The loaded components in ``class_name`` (what diffusers' ``from_pipe`` does, without its dtype cast: see
        :func:`switch_pipeline`). Everything :meth:`_configure` did lives on the shared modules (LoRA adapters, cache
        hooks, compiled blocks, attention backend, the scheduler, placement) except two per-pipeline things, redone
        here: the progress bar, and accelerate's offload hooks (model / sequential), which chain one pipeline's
        components."""
        import diffusers

        base = loaded.base if loaded.base is not None else loaded.pipe
        # the current pipeline's components win (its scheduler is the one _configure set, its text encoders are
        # None when kept on the CPU); the checkpoint's own class and config fill what it lacks
        pipe = switch_pipeline(loaded.pipe, getattr(diffusers, class_name), base=base)
        pipe.set_progress_bar_config(disable=True)
        if opts["offload"] in ("model", "sequential"):
            _place(pipe, device, opts)
        return pipe

    def _configure(self, pipe: Any, located: Located, device: str, opts: dict[str, Any]) -> dict[str, Any]:
        """Scheduler shift, LoRA, attention, caches, compile, VAE tiling/slicing, then device placement/offload.

        Returns the text encoders kept on the CPU (text_encoder_device=cpu), taken out of the pipeline so that no
        placement or offload hook moves them; :func:`_encode_on_cpu` uses them."""
        if opts["scheduler"] is not None:
            _set_scheduler(pipe, opts["scheduler"])
        shift = opts["shift"] if opts["shift"] is not None else (located.entry.flow_shift if located.entry else None)
        if shift is not None:
            _set_shift(pipe, shift, explicit=opts["shift"] is not None)
        if opts["lora"]:
            _load_loras(pipe, opts["lora"])
        denoisers = [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m]
        if opts["attention"] != "sdpa":
            if not denoisers or located.family.name not in _ATTENTION_FAMILIES:
                raise _refuse(
                    "attention",
                    f"{type(pipe).__name__}'s attention does not go through diffusers' attention dispatcher",
                    opts["attention"],
                    "sdpa",
                )
            for net in denoisers:
                net.set_attention_backend(_ATTENTION_BACKENDS[opts["attention"]])
        for net in denoisers:  # before caches and compile: the split wraps the attention and the blocks' inputs
            enable_split(net, opts)
        if opts["cache"] != "none":
            _enable_cache(pipe, denoisers, opts)
        vae = getattr(pipe, "vae", None)
        for flag, method in (("vae_tiling", "enable_tiling"), ("vae_slicing", "enable_slicing")):
            if not opts[flag] or (flag == "vae_slicing" and located.family.name == "svd"):
                continue  # SVD decodes in chunks instead (decode_chunk_size)
            try:
                getattr(vae, method)()
            except (NotImplementedError, AttributeError):
                raise InvalidRequest(
                    f"options.{flag}",
                    f"the VAE of this model ({type(vae).__name__}) does not support it",
                    value=True,
                    allowed="false",
                ) from None
        if opts["compile"]:
            for net in denoisers or [getattr(pipe, "unet", None)]:
                if hasattr(net, "compile_repeated_blocks") and getattr(net, "_repeated_blocks", None):
                    # regional: compiles one block, reused by all. A cache hook (FirstBlockCache, TaylorSeer) is
                    # wrapped in torch.compiler.disable, which a fullgraph trace cannot cross: graph breaks allowed
                    net.compile_repeated_blocks(fullgraph=compile_fullgraph(opts))
                elif net is not None:
                    net.compile()
        cpu_text: dict[str, Any] = {}
        if opts["text_encoder_device"] == "cpu":
            for name in ("text_encoder", "text_encoder_2"):
                module = getattr(pipe, name, None)
                if module is not None:
                    cpu_text[name] = module.to("cpu")
                    setattr(pipe, name, None)  # out of pipe.components: no placement or offload hook touches it
        _place(pipe, device, opts)
        return cpu_text


def _dtype_key() -> str:
    """diffusers 0.36+ names the load dtype ``dtype`` (``torch_dtype`` still works there, with a deprecation
    warning)."""
    from diffusers.pipelines import pipeline_utils

    return "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"


def compile_fullgraph(opts: dict[str, Any]) -> bool:
    """fullgraph=True only without a hook in the forward: the cache hooks' torch.compiler.disable would fail a
    fullgraph trace (diffusers hooks/first_block_cache.py, hooks/taylorseer_cache.py; Dynamo raises Unsupported), and
    layerwise casting, bitsandbytes and GGUF dequantize in Python hooks / custom ops: graph breaks allowed there."""
    return (
        opts["cache"] == "none"
        and opts["quantize"] in ("none", "int8", "fp8")
        and not (opts["transformer_file"] or opts["transformer_2_file"])
    )


def switch_pipeline(pipe: Any, cls: Any, base: Any = None) -> Any:
    """``cls`` built from ``pipe``'s components, each keeping its dtype; ``base`` (the checkpoint's own pipeline)
    gives the components ``pipe`` lacks and the config values (``boundary_ratio``, ``expand_timesteps``...).

    diffusers' ``from_pipe`` ends with ``new_pipeline.to(dtype=dtype)`` where dtype defaults to float32 (and a given
    dtype would cast the float32 VAE as well), so it is not used: the same components and config values go to the
    new class's constructor, as ``from_pipe`` does before that cast (diffusers pipelines/pipeline_utils.py)."""
    base = pipe if base is None else base
    expected, optional = cls._get_signature_keys(cls)
    components = {**base.components, **pipe.components}
    kwargs = {name: comp for name, comp in components.items() if name in expected}
    kwargs.update({k: base.config[k] for k in optional if k in base.config and k not in kwargs})
    return cls(**kwargs)


def _check_cache_context(class_name: str, opts: dict[str, Any]) -> None:
    """diffusers' cache hooks keep one state per ``transformer.cache_context(...)`` block, which a pipeline opens
    around its conditional and unconditional passes; a pipeline without them fails at the first step ("No cache
    context is set": WanVideoToVideoPipeline in diffusers 0.42). Refused up front, read from the pipeline's own
    code, so a diffusers release that adds the contexts lifts it."""
    if opts["cache"] == "none":
        return
    try:
        import diffusers

        source = inspect.getsource(getattr(diffusers, class_name).__call__)
    except (ImportError, AttributeError, OSError, TypeError):
        return  # no diffusers (or no source) here: nothing to read; the load fails with its own message
    if "cache_context" not in source:
        raise _refuse(
            "cache",
            f"{class_name} does not mark its denoiser passes with cache_context, which "
            f"diffusers' cache hooks need (they fail at the first step)",
            opts["cache"],
            "none with this pipeline",
        )


def _first_input_frame(params: GenerationParams) -> np.ndarray | None:
    """The input frame whose aspect sets the output size when the request gives none."""
    if params.mode == "i2v":
        return params.image
    if params.mode == "extend":
        return params.video[-1] if params.video is not None else None
    if params.mode == "edit":
        return params.source_video[0] if params.source_video is not None else None
    if params.mode == "keyframes":
        return params.image if params.image is not None else params.last_image
    return None


def _check_edit_modes(
    located: Located, request: VideoRequest, params: GenerationParams, opts: dict[str, Any]
) -> tuple[int, int] | None:
    """What resolve() refuses about edit and keyframes beyond the Capabilities: a Wan keyframe clip without its
    first frame, an edit so weak that the pipeline would run no step, and the options not tested on these paths.
    Returns an edit's (steps it runs, steps of the schedule)."""
    if params.mode == "keyframes" and located.family.name == "wan" and request.image is None:
        raise _refuse_first_frame(located)
    if params.mode in ("edit", "keyframes", "references") and split_degree(opts) > 1:
        key = "ulysses" if opts["ulysses"] > 1 else "ring"
        raise _refuse(
            key,
            f"splitting the sequence is not tested with {params.mode} yet",
            opts[key],
            "1 (one process) for edit, keyframes and references",
        )
    if params.mode != "edit" or params.strength is None:
        return None
    entry = located.entry
    timesteps = entry.call_defaults.get("timesteps") if entry is not None else None
    steps = int(params.num_inference_steps or located.capabilities.default_steps or 30)
    total = len(timesteps) if timesteps is not None and len(timesteps) == steps else steps
    if edit_steps(total, params.strength) == 0:
        least = math.ceil(1e6 / total) / 1e6
        raise InvalidRequest(
            "strength",
            f"{params.strength:g} runs none of the {total} denoising steps (the "
            f"pipeline runs int({total} x strength) of them), so the clip would come back as it "
            "was encoded",
            value=params.strength,
            allowed=f"{least:g} to 1 with {total} steps (more steps: a weaker edit)",
        )
    return edit_steps(total, params.strength), total


def _frame_warnings(located: Located, params: GenerationParams) -> list[str]:
    """CogVideoX I2V's learned positional embedding holds for its trained frame count only."""
    if located.family.name != "cogvideox" or located.folder is None or params.mode == "t2v":
        return []
    config = read_json(located.folder / "transformer" / "config.json")
    trained = int(config.get("sample_frames", 49))
    if config.get("use_learned_positional_embeddings") and params.num_frames != trained:
        return [
            f"{located.class_name} learned its positional embedding for {trained} frames; at "
            f"{params.num_frames} frames diffusers replaces it with a sin-cos one, which lowers quality "
            "(diffusers models/embeddings.py CogVideoXPatchEmbed)"
        ]
    return []


def _set_shift(pipe: Any, shift: float, explicit: bool = False) -> None:
    config = pipe.scheduler.config
    if "flow_shift" in config:
        pipe.scheduler = type(pipe.scheduler).from_config(config, flow_shift=shift)
    elif "shift" in config and not config.get("use_dynamic_shifting", False):
        pipe.scheduler = type(pipe.scheduler).from_config(config, shift=shift)
    elif explicit:
        raise _refuse(
            "shift", f"{type(pipe.scheduler).__name__} has no fixed shift", shift, "no shift option for this model"
        )


def _load_loras(pipe: Any, loras: list[tuple[str, float, str | None]]) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise InvalidRequest("options.lora", f"{type(pipe).__name__} does not take LoRA weights", allowed="none")
    require_module("peft", "local", feature="LoRA loading")
    two_experts = getattr(pipe, "transformer_2", None) is not None
    names = []
    for i, (path, _scale, weight_name) in enumerate(loras):
        name = f"kinema_lora_{i}"
        kw: dict[str, Any] = {"adapter_name": name, "local_files_only": True}
        if weight_name:
            kw["weight_name"] = weight_name
        try:
            pipe.load_lora_weights(path, **kw)
            if two_experts:  # Wan2.2 A14B: by default a LoRA reaches only the high-noise expert (diffusers wan.md)
                pipe.load_lora_weights(path, load_into_transformer_2=True, **kw)
        except (OSError, ValueError, KeyError) as exc:
            where = f"{path}::{weight_name}" if weight_name else path
            raise InvalidRequest(
                "options.lora", f"could not load {where!r}: {exc}", value=where, allowed=_LORA_SYNTAX
            ) from None
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[scale for _path, scale, _weight in loras])


def _enable_cache(pipe: Any, denoisers: list[Any], opts: dict[str, Any]) -> None:
    if not denoisers or not all(hasattr(net, "enable_cache") for net in denoisers):
        raise InvalidRequest(
            "options.cache",
            f"{type(pipe).__name__} has no transformer that diffusers' cache hooks support",
            value=opts["cache"],
            allowed="none",
        )
    if opts["cache"] == "magcache":
        diffusers_name("diffusers.hooks", "MagCacheConfig", "0.37", "options.cache=magcache")
        if len(denoisers) > 1:  # each expert runs part of the steps: one ratio list cannot describe both
            raise InvalidRequest(
                "options.cache",
                "magcache with two experts (Wan2.2 A14B) is not supported",
                value="magcache",
                allowed="none, firstblock, taylorseer",
            )
        return  # its hooks need the step count: applied per call (apply_magcache)
    for net in denoisers:
        if opts["cache"] == "firstblock":
            fbc = diffusers_name("diffusers.hooks", "FirstBlockCacheConfig", "0.35", "options.cache=firstblock")
            config: Any = fbc(threshold=opts["cache_threshold"])
        else:
            taylor = diffusers_name("diffusers.hooks", "TaylorSeerCacheConfig", "0.36", "options.cache=taylorseer")
            config = taylor(cache_interval=2, disable_cache_before_step=1, max_order=1, taylor_factors_dtype=None)
        try:
            net.enable_cache(config)
        except (ValueError, IndexError, TypeError) as exc:
            raise InvalidRequest(
                "options.cache",
                f"{opts['cache']} does not apply to {type(net).__name__}: {exc}",
                value=opts["cache"],
                allowed="none",
            ) from None


def apply_magcache(pipe: Any, opts: dict[str, Any], steps: int, applied: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """(Re)apply MagCache for ``steps`` denoising steps (diffusers interpolates the ratios to that count) unless it is
    already applied with the same settings; returns those settings. Calibration re-applies every call."""
    config_cls = diffusers_name("diffusers.hooks", "MagCacheConfig", "0.37", "options.cache=magcache")
    wanted = (steps, opts["cache_threshold"], str(opts["cache_ratios"]), opts["cache_calibrate"])
    if applied == wanted and not opts["cache_calibrate"]:
        return wanted
    net = pipe.transformer
    if net.is_cache_enabled:
        net.disable_cache()
    if opts["cache_calibrate"]:
        config = config_cls(calibrate=True, num_inference_steps=steps)
    else:
        config = config_cls(
            threshold=opts["cache_threshold"], num_inference_steps=steps, mag_ratios=list(opts["cache_ratios"])
        )
    net.enable_cache(config)
    return wanted


class _Ratios(logging.Handler):
    """Collects the ratio lists MagCache's calibration logs at the end of a run (one per cache context: cond,
    uncond); diffusers also print()s them, which calibrate() keeps off stdout."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.found: list[list[float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        import ast

        text = record.getMessage()
        if "Calibration Results:" in text:
            try:
                self.found.append([float(x) for x in ast.literal_eval(text.split("Results:", 1)[1].strip())])
            except (ValueError, SyntaxError, TypeError):
                pass


def calibrate_magcache(run: Any, path: str, model: str, steps: int) -> tuple[Any, str]:
    """Run ``run()`` with MagCache calibrating, write the ratios to ``path``; returns run's result and a note."""
    import contextlib
    import io
    import json

    log = logging.getLogger("diffusers.hooks.mag_cache")
    handler, level, propagate = _Ratios(), log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            out = run()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
    if not handler.found:
        raise GenerationFailed("MagCache calibration recorded no ratios (did the run finish every step?)")
    ratios = handler.found[0]  # the conditional pass's, first each step; the unconditional one behaves alike
    from importlib.metadata import version

    Path(path).write_text(
        json.dumps(
            {"model": model, "num_inference_steps": steps, "mag_ratios": ratios, "diffusers": version("diffusers")},
            indent=1,
        )
        + "\n"
    )
    note = (
        f"MagCache calibration: {len(ratios)} magnitude ratios written to {path} (use them with "
        f"--option cache=magcache --option cache_ratios={path})"
    )
    return out, note


def _place(pipe: Any, device: str, opts: dict[str, Any]) -> None:
    offload = opts["offload"]
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        apply_group_offload(pipe, device, exclude=opts["offload_exclude"], low_cpu_mem_usage=opts["low_cpu_mem_usage"])
    else:
        pipe.to(device)


def apply_group_offload(
    pipe: Any, device: str, exclude: list[str] | tuple[str, ...] = ("vae",), low_cpu_mem_usage: bool = False
) -> None:
    """diffusers' group offloading: weights live in CPU memory and stream to ``device``, except the ``exclude``d
    components (the VAE by default), which go to ``device`` whole. diffusers' memory docs: a streamed VAE with
    tiling needs a warm-up pass, and streams need about 2x the model size in CPU memory (``low_cpu_mem_usage``
    pins on the fly instead)."""
    import torch
    from diffusers.hooks import apply_group_offloading
    from diffusers.models.modeling_utils import ModelMixin

    unknown = sorted(set(exclude) - set(pipe.components))  # a component set aside (None) is not unknown
    if unknown:
        modules = sorted(n for n, c in pipe.components.items() if isinstance(c, torch.nn.Module))
        raise _refuse(
            "offload_exclude",
            f"{', '.join(unknown)} is not a component of {type(pipe).__name__}",
            list(exclude),
            ", ".join(modules),
        )
    stream = device.startswith("cuda")
    for name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        if name in exclude:
            component.to(device)
            continue
        kw: dict[str, Any] = dict(
            onload_device=torch.device(device),
            offload_type="leaf_level",
            use_stream=stream,
            record_stream=stream,
            low_cpu_mem_usage=low_cpu_mem_usage,
        )
        if isinstance(component, ModelMixin):
            component.enable_group_offload(**kw)
        else:
            apply_group_offloading(component, **kw)


def _encode_on_cpu(pipe: Any, encoders: dict[str, Any], located: Located, kwargs: dict[str, Any], device: str) -> None:
    """text_encoder_device=cpu: encode the prompts on the CPU with the kept-aside encoders, then hand the pipeline
    embeddings on ``device`` instead of text (the Wan authors' ``--t5_cpu``)."""
    import torch

    prompt, negative = kwargs.pop("prompt"), kwargs.pop("negative_prompt", None)
    common: dict[str, Any] = {"device": torch.device("cpu"), "num_videos_per_prompt": 1}
    if "max_sequence_length" in kwargs:
        common["max_sequence_length"] = kwargs["max_sequence_length"]
    out: dict[str, Any] = {}
    keys: tuple[str, ...]
    for name, module in encoders.items():
        setattr(pipe, name, module)
    try:
        with torch.inference_mode():
            if located.family.name == "hunyuan":  # (embeddings, pooled CLIP embeddings, mask), one call per prompt
                keys = ("prompt_embeds", "pooled_prompt_embeds", "prompt_attention_mask")
                out.update(zip(keys, pipe.encode_prompt(prompt=prompt, **common), strict=True))
                if negative is not None:
                    found = pipe.encode_prompt(prompt=negative, **common)
                    out.update(zip((f"negative_{k}" for k in keys), found, strict=True))
            else:
                accepted = set(inspect.signature(pipe.encode_prompt).parameters)
                call = {
                    "prompt": prompt,
                    "negative_prompt": negative,
                    **common,
                    "do_classifier_free_guidance": (kwargs.get("guidance_scale") or 0) > 1,
                }
                found = pipe.encode_prompt(**{k: v for k, v in call.items() if k in accepted})
                if len(found) == 4:  # LTX: embeddings and attention masks
                    keys = (
                        "prompt_embeds",
                        "prompt_attention_mask",
                        "negative_prompt_embeds",
                        "negative_prompt_attention_mask",
                    )
                else:  # Wan, CogVideoX
                    keys = ("prompt_embeds", "negative_prompt_embeds")
                out.update(zip(keys, found, strict=True))
    finally:
        for name in encoders:
            setattr(pipe, name, None)
    dtype = (getattr(pipe, "transformer", None) or encoders["text_encoder"]).dtype
    for key, tensor in out.items():
        if tensor is not None:
            kwargs[key] = tensor.to(device=device, dtype=dtype) if tensor.is_floating_point() else tensor.to(device)


# -- calling the pipeline ------------------------------------------------------------------------------------------


def _image(frame: np.ndarray, width: int, height: int) -> Any:
    """Centre-crop an (H, W, 3) uint8 frame to the target aspect and resize it to width x height (PIL)."""
    from PIL import Image

    h, w = frame.shape[:2]
    want = width / height
    if w / h > want:
        cw = max(1, round(h * want))
        frame = frame[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = max(1, round(w / want))
        frame = frame[(h - ch) // 2 : (h - ch) // 2 + ch]
    return Image.fromarray(np.ascontiguousarray(frame)).resize((width, height), Image.Resampling.LANCZOS)


def _accepted(pipe: Any) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def call_kwargs(
    located: Located, pipe: Any, params: GenerationParams, opts: dict[str, Any], warnings: list[str]
) -> tuple[dict[str, Any], int]:
    """The pipeline-call arguments for this family and mode, and the number of denoising steps it will run."""
    import torch

    family = located.family.name
    entry = located.entry
    steps = int(params.num_inference_steps or located.capabilities.default_steps or 30)
    guidance = params.guidance_scale if params.guidance_scale is not None else located.capabilities.default_guidance
    kw: dict[str, Any] = {
        "height": params.height,
        "width": params.width,
        "num_frames": params.num_frames,
        "num_inference_steps": steps,
        "output_type": "np",
        "generator": torch.Generator(device="cpu").manual_seed(params.seed),
    }
    if entry is not None:
        kw.update(entry.call_defaults)
    timesteps = kw.get("timesteps")
    if timesteps is not None and len(timesteps) != steps:
        kw.pop("timesteps")  # a distilled schedule only fits its own step count
    default_negative = entry.default_negative_prompt if entry is not None else located.family.default_negative_prompt
    if family != "svd":
        kw["prompt"] = params.prompt
        kw["guidance_scale"] = guidance
        negative = params.negative_prompt or default_negative  # Wan: the authors' negative prompt when none given
        if family == "hunyuan":
            scale = opts["true_cfg_scale"] if opts["true_cfg_scale"] is not None else HUNYUAN_TRUE_CFG
            if params.negative_prompt and scale > 1:
                # the embedded guidance stays; true CFG runs a second, negative pass per step (twice the compute)
                kw["true_cfg_scale"] = scale
                kw["negative_prompt"] = params.negative_prompt
            elif params.negative_prompt:
                warnings.append(
                    f"HunyuanVideo is guidance-distilled: the negative prompt acts only through true CFG, "
                    f"which is off at true_cfg_scale {scale:g} (the authors' default); --option "
                    "true_cfg_scale=N above 1 turns it on, at twice the transformer passes"
                )
            elif opts["true_cfg_scale"] is not None:
                warnings.append("true_cfg_scale without a negative prompt does nothing in HunyuanVideoPipeline")
        elif negative:
            kw["negative_prompt"] = negative
    else:
        warnings.append("Stable Video Diffusion is conditioned on the image only: the prompt is not used")
        kw["max_guidance_scale"] = guidance
        kw["min_guidance_scale"] = min(1.0, guidance or 1.0)
        kw["fps"] = int(round(params.fps))
        # diffusers' SVD docs decode 8 frames at a time (the pipeline's own default decodes all at once)
        chunk = opts["decode_chunk_size"] or (2 if opts["vae_slicing"] else 8)
        kw["decode_chunk_size"] = chunk
        for key in ("motion_bucket_id", "noise_aug_strength"):
            if opts[key] is not None:
                kw[key] = opts[key]
    if kw.get("use_dynamic_cfg") and type(pipe.scheduler).__name__ != "CogVideoXDPMScheduler":
        kw.pop("use_dynamic_cfg")  # "for DDIM scheduler, it should be False" (THUDM/CogVideo inference/cli_demo.py)
        warnings.append(f"dynamic CFG is meant for CogVideoXDPMScheduler, not {type(pipe.scheduler).__name__}: off")
    if family == "ltx":
        kw["frame_rate"] = int(round(params.fps))
    if family == "wan" and getattr(pipe, "transformer_2", None) is not None:
        kw["guidance_scale_2"] = (
            opts["guidance_2"]
            if opts["guidance_2"] is not None
            else (entry.guidance_2 if entry and entry.guidance_2 is not None else guidance)
        )
    if family == "cogvideox":  # CogVideoX's text length is fixed by its transformer
        kw["max_sequence_length"] = int(pipe.transformer.config.max_text_seq_length)
    elif opts["max_sequence_length"] is not None:
        kw["max_sequence_length"] = opts["max_sequence_length"]

    first = params.image if params.mode == "i2v" else (params.video[-1] if params.video is not None else None)
    if params.mode == "edit":
        return kw, _edit_kwargs(located, pipe, params, kw, warnings)
    if params.mode == "keyframes":
        _keyframe_kwargs(located, pipe, params, kw)
    elif params.mode == "references":
        from PIL import Image

        # WanVACEPipeline letterboxes each image onto the clip's size itself (white bars, aspect kept)
        kw["reference_images"] = [Image.fromarray(np.ascontiguousarray(r)) for r in params.references]
    elif params.mode != "t2v":
        assert first is not None
        if type(pipe).__name__ == "LTXConditionPipeline" and params.mode == "extend" and params.video is not None:
            # condition on the clip's last frames (a count the VAE takes: 8k+1), placed at the start of the new clip
            ratio = int(getattr(pipe, "vae_temporal_compression_ratio", 8))
            n = ratio + 1 if len(params.video) >= ratio + 1 else 1
            kw["video"] = [_image(f, params.width, params.height) for f in params.video[-n:]]
            kw["frame_index"] = 0
        else:
            kw["image"] = _image(first, params.width, params.height)
    if params.mode in ("i2v", "extend") and "last_image" in _accepted(pipe):  # the same rules as
        config = getattr(getattr(pipe, "transformer", None), "config", None) or {}  # check_model_options, for
        two = config.get("pos_embed_seq_len") is not None  # callers that skip resolve
        if two and opts["last_image"] is None:
            raise _refuse(
                "last_image",
                f"{located.model} is a first-last-frame model: it conditions on two images and diffusers fails on one",
                None,
                "--last-image PATH with --image",
            )
        if opts["last_image"] is not None and config.get("image_dim") is not None and not two:
            raise _refuse(
                "last_image",
                f"{located.model} was trained on a first frame only",
                opts["last_image"],
                "only with Wan first-last-frame models, e.g. wan2.1-flf2v-14b-720p",
            )
    if opts["last_image"] is not None:
        if "last_image" not in _accepted(pipe) or getattr(pipe.config, "expand_timesteps", False):
            raise _refuse(
                "last_image",
                f"{type(pipe).__name__} takes no last frame",
                opts["last_image"],
                "only with --image on Wan image-to-video models",
            )
        from PIL import Image

        with Image.open(opts["last_image"]) as img:
            last = np.asarray(img.convert("RGB"))
        kw["last_image"] = _image(last, params.width, params.height)  # cropped and sized as the first frame is
    _drop_unaccepted(pipe, kw)
    return kw, len(kw["timesteps"]) if "timesteps" in kw else steps


def _drop_unaccepted(pipe: Any, kw: dict[str, Any]) -> None:
    accepted = _accepted(pipe)
    for k in sorted(k for k in kw if k not in accepted):
        kw.pop(k)


#: the pipeline argument that carries Kinema's edit strength, per edit pipeline (the fraction of the schedule's
#: steps that run, from the noise level of the first of them: each pipeline's get_timesteps)
EDIT_STRENGTH_ARG = {
    "WanVideoToVideoPipeline": "strength",
    "CogVideoXVideoToVideoPipeline": "strength",
    "LTXConditionPipeline": "denoise_strength",
}


def edit_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` denoising steps an edit at ``strength`` runs: ``min(int(steps * strength), steps)``, as
    the get_timesteps of WanVideoToVideoPipeline, CogVideoXVideoToVideoPipeline and LTXConditionPipeline count them
    (the last ones of the schedule; the source is noised to the level of the first of those)."""
    return min(int(steps * strength), steps)


def source_frames(params: GenerationParams, caps: Capabilities) -> np.ndarray:
    """The source clip at the output's frame rate, its first ``params.num_frames`` frames: output frame i shows the
    source frame on screen at time i / fps. A clip too short for the edit is refused, naming the longest edit the
    frame rule allows from it."""
    src = params.source_video
    assert src is not None
    fps_in = float(params.source_fps or params.fps)
    n = params.num_frames
    index = np.floor(np.arange(n) * fps_in / params.fps + 1e-6).astype(int)
    if index[-1] < len(src):
        return src[index]
    fits = int(math.floor((len(src) - 1) * params.fps / fps_in + 1e-6)) + 1  # output frames the clip covers
    step, offset = max(1, caps.frame_step), caps.frame_offset
    longest = (fits - offset) // step * step + offset if fits >= offset else 0
    allowed = "a longer clip"
    if longest >= max(1, caps.min_frames):
        allowed = f"num_frames at most {longest} at {params.fps:g} fps (the most the clip covers), or a longer clip"
    raise InvalidRequest(
        "source_video",
        f"has {len(src)} frames at {fps_in:g} fps ({len(src) / fps_in:.3g}s), "
        f"shorter than the {n} frames at {params.fps:g} fps ({n / params.fps:.3g}s) asked for",
        value=len(src),
        allowed=allowed,
    )


def _edit_kwargs(
    located: Located, pipe: Any, params: GenerationParams, kw: dict[str, Any], warnings: list[str]
) -> int:
    """The edit's pipeline arguments (the source clip and the strength); returns the denoising steps it runs."""
    name = type(pipe).__name__
    if name not in EDIT_STRENGTH_ARG:  # resolve() refuses this first; a caller that skips it gets the same answer
        raise InvalidRequest(
            "source_video",
            f"{located.model} ({name}) does not edit clips",
            allowed="Wan2.1 text-to-video, CogVideoX text-to-video and LTX-Video models",
        )
    given = params.strength if params.strength is not None else located.capabilities.default_strength
    assert given is not None, "every diffusers model that edits has a default strength (catalog)"
    strength = float(given)
    frames = [_image(f, params.width, params.height) for f in source_frames(params, located.capabilities)]
    total = len(kw["timesteps"]) if "timesteps" in kw else int(kw["num_inference_steps"])
    run = edit_steps(total, strength)
    if name == "LTXConditionPipeline":
        kw["latents"] = _ltx_source_latents(pipe, frames, params)
    else:
        kw["video"] = frames  # Wan and CogVideoX encode it themselves, in the VAE's dtype
    kw[EDIT_STRENGTH_ARG[name]] = strength
    if run != round(total * strength, 6):
        warnings.append(
            f"strength {strength:g} runs {run} of {total} denoising steps ({name} rounds down): an "
            f"edit of {run / total:g}"
        )
    _drop_unaccepted(pipe, kw)
    return run


def _ltx_source_latents(pipe: Any, frames: list[Any], params: GenerationParams) -> Any:
    """The source clip as LTXConditionPipeline's ``latents`` for an edit: encoded by its VAE in the VAE's dtype
    (the distribution's mode: no random draw) and normalized as the pipeline normalizes its conditions; the
    pipeline then noises them to the first kept sigma (``denoise_strength``) in its float32 working dtype."""
    import torch

    video = pipe.video_processor.preprocess_video(frames, params.height, params.width)
    vae = pipe.vae
    with torch.inference_mode():
        latents = vae.encode(video.to(device=pipe._execution_device, dtype=vae.dtype)).latent_dist.mode()
        return pipe._normalize_latents(latents, vae.latents_mean, vae.latents_std)


def _keyframe_kwargs(located: Located, pipe: Any, params: GenerationParams, kw: dict[str, Any]) -> None:
    """The first (if given) and last frames: WanImageToVideoPipeline's image and last_image; or, for
    LTXConditionPipeline, one condition per known frame: the first at 0, the timed keyframes at their frames (which
    resolve() placed, increasing and never on the first's or the last's), the last at the clip's end."""
    if type(pipe).__name__ == "LTXConditionPipeline":
        condition = diffusers_name(
            "diffusers.pipelines.ltx.pipeline_ltx_condition", "LTXVideoCondition", "0.33", "keyframes with LTX-Video"
        )
        # one condition list: passing image=[...] with no video makes the pipeline zip the images with [None]
        kw["conditions"] = [
            condition(image=_image(image, params.width, params.height), frame_index=index)
            for index, image in params.known_frames()
        ]
        return
    if params.image is None or params.last_image is None:  # Wan's first-last-frame pipelines take these two only
        raise _refuse_first_frame(located)
    kw["image"] = _image(params.image, params.width, params.height)
    kw["last_image"] = _image(params.last_image, params.width, params.height)


def _refuse_first_frame(located: Located) -> InvalidRequest:
    return InvalidRequest(
        "image",
        f"{located.model} ({located.class_name}) makes keyframe clips from a first and a "
        "last frame: give the first too",
        allowed="image (--image) with last_image; LTX-Video models take a last frame alone",
    )


def _to_uint8(frames: Any) -> np.ndarray:
    if isinstance(frames, list | tuple):
        frames = frames[0]
        frames = np.stack([np.asarray(f) for f in frames]) if isinstance(frames, list | tuple) else frames
    arr = np.asarray(frames.float().cpu() if hasattr(frames, "cpu") else frames)
    if arr.ndim == 5:
        arr = arr[0]
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def step_callbacks(pipe: Any, ctx: GenerationContext, total: int, offset: int = 0) -> dict[str, Any]:
    """Step progress into Kinema's events (``offset`` steps already run by an earlier pass), and cancellation
    through the pipeline's interrupt."""

    def stop() -> None:
        # _interrupt makes the pipeline's own loop stop stepping; raising as well skips the VAE decode of a
        # half-denoised clip (seconds on a GPU), so a cancel takes effect within the current step.
        pipe._interrupt = True
        raise Cancelled("the generation was cancelled")

    def on_step_end(_pipe: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        ctx.progress("denoising", offset + step + 1, total)
        if agreed_cancel(ctx.cancel.cancelled):  # all ranks of a split run stop at the same step
            stop()
        return callback_kwargs

    def legacy(step: int, _timestep: Any, _latents: Any) -> None:
        on_step_end(pipe, step, None, {})

    accepted = _accepted(pipe)
    if "callback_on_step_end" in accepted:
        return {"callback_on_step_end": on_step_end}
    if "callback" in accepted:  # TextToVideoSDPipeline predates callback_on_step_end
        return {"callback": legacy, "callback_steps": 1}
    return {}


def run_multiscale(
    pipe: Any,
    upsampler: Any,
    kwargs: dict[str, Any],
    recipe: MultiScale,
    params: GenerationParams,
    ctx: GenerationContext,
    first_steps: int,
) -> tuple[Any, int]:
    """LTX-Video's multi-scale flow with the loaded LTXConditionPipeline and ``upsampler`` (diffusers' ltx_video.md
    0.9.7 / 0.9.8 examples): the first pass at the reduced size to latents, the latent upsampler (2x, AdaIN and tone
    mapping as the recipe says) to latents, the refine pass at twice the first pass's size from those latents
    (``denoise_strength``), decoded; then the frames resized to the request's size (bilinear, as the authors'
    LTXMultiScalePipeline). ``kwargs`` are the single-pass call's. Returns the frames, (1, F, H, W, 3) floats in
    [0, 1], and the steps run in all."""
    import torch

    upsample_cls = diffusers_name("diffusers", "LTXLatentUpsamplePipeline", "0.34", "options.multiscale")
    first, refine = multiscale_sizes(params.width, params.height, recipe.downscale)
    schedule = list(recipe.refine_timesteps) if recipe.refine_timesteps is not None else None
    refine_steps = edit_steps(len(schedule) if schedule is not None else recipe.refine_steps, recipe.refine_strength)
    total = first_steps + refine_steps

    one = {
        **kwargs,
        "width": first[0],
        "height": first[1],
        "output_type": "latent",
        **step_callbacks(pipe, ctx, total),
    }
    latents = pipe(**one).frames
    ctx.cancel.raise_if_cancelled()

    lift = upsample_cls(vae=pipe.vae, latent_upsampler=upsampler)  # the loaded VAE: its latents' mean and std
    lift.set_progress_bar_config(disable=True)
    up: dict[str, Any] = {
        "latents": latents,
        "width": refine[0],
        "height": refine[1],
        "output_type": "latent",
        "adain_factor": recipe.adain_factor,
    }
    if recipe.tone_map_compression_ratio:
        if "tone_map_compression_ratio" not in _accepted(lift):
            raise DiffusersTooOld("tone mapping in LTX-Video 0.9.8's multi-scale flow", "0.36")
        up["tone_map_compression_ratio"] = recipe.tone_map_compression_ratio
    with torch.inference_mode():  # one forward pass: no progress stage of its own (it would split "denoising")
        upsampled = lift(**up).frames
    ctx.cancel.raise_if_cancelled()

    two = {
        **kwargs,
        "width": refine[0],
        "height": refine[1],
        "latents": upsampled,
        "denoise_strength": recipe.refine_strength,
        "generator": torch.Generator(device="cpu").manual_seed(params.seed),  # as each call of the example
        **step_callbacks(pipe, ctx, total, offset=first_steps),
    }
    two.pop("timesteps", None)
    if schedule is not None:
        two["timesteps"], two["num_inference_steps"] = schedule, len(schedule)
    else:
        two["num_inference_steps"] = recipe.refine_steps
    frames = pipe(**two).frames
    arr = np.asarray(frames.float().cpu() if hasattr(frames, "cpu") else frames, dtype=np.float32)
    if arr.shape[2:4] != (params.height, params.width):
        arr = _resize_frames(arr, params.width, params.height)
    return arr, total


def _resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(1, F, H, W, 3) float frames resized to ``width x height``: bilinear, ``align_corners=False``, as the authors'
    LTXMultiScalePipeline resizes its refine pass's output to the size asked for."""
    import torch
    import torch.nn.functional as F

    video = torch.from_numpy(np.ascontiguousarray(frames[0])).permute(0, 3, 1, 2)
    video = F.interpolate(video, size=(height, width), mode="bilinear", align_corners=False)
    return video.permute(0, 2, 3, 1).numpy()[None]
