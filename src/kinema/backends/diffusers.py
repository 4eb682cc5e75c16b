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
``vae_tiling``     true | false: decode in spatial tiles (lower peak memory at large sizes)
``vae_slicing``    true | false: decode frame batches one at a time (SVD: a smaller decode chunk)
``attention``      sdpa (PyTorch scaled-dot-product attention, the default) | flash | flash3 | sage | flex
``compile``        true | false: ``torch.compile`` the transformer's repeated blocks (regional compilation)
``cache``          none | firstblock | taylorseer: diffusers' step-caching hooks on the transformer
``cache_threshold`` FirstBlockCache threshold (default 0.05; higher is faster and lossier)
``lora``           "PATH[:SCALE]" or a list of them (a .safetensors file, a folder or a cached Hub repo)
``shift``          the flow-matching scheduler's shift (catalog default per model)
``guidance_2``     Wan2.2 A14B: guidance of the low-noise expert
``max_sequence_length``  text tokens given to the text encoder
``revision``       which cached snapshot (commit id or branch) of a Hub repo to load
=================  ==========================================================================================

>>> import kinema
>>> r = kinema.generate("a cat dancing", backend="diffusers", model="wan2.1-t2v-1.3b")  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import inspect
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled, GenerationFailed, InvalidRequest, ModelNotFound
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
    CatalogEntry,
    Family,
    derive_capabilities,
    family_for_pipeline,
    get_entry,
    read_model_index,
    supported_pipelines,
)

__all__ = ["DiffusersBackend", "Located", "locate", "hub_cache_dir", "validate_options", "check_fits",
           "parse_lora", "OPTION_DEFAULTS"]  # fmt: skip

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
    return [name for name, spec in index.items()
            if not name.startswith("_") and isinstance(spec, list) and spec and spec[0] is not None
            and not (folder / name).is_dir()]  # fmt: skip


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
        "model", f"{model!r} is neither a catalog id, a Hub repo id (org/name) nor an existing folder", value=model,
        allowed=", ".join(CATALOG) + ", a Hub repo id, or a folder in the diffusers layout",
    )  # fmt: skip


def _from_folder(model: str, kind: str, repo: str | None, folder: Path, index: dict[str, Any]) -> Located:
    class_name = str(index.get("_class_name", ""))
    try:
        caps, family = derive_capabilities(folder, class_name)
    except KeyError:
        raise InvalidRequest(
            "model", f"{model!r} is a {class_name or 'unknown'} checkpoint, which the diffusers backend does not run",
            value=model, allowed=", ".join(supported_pipelines()),
        ) from None  # fmt: skip
    return Located(model, kind, repo, folder, class_name, family, caps)


# -- options -------------------------------------------------------------------------------------------------------

OPTION_DEFAULTS: dict[str, Any] = {
    "device": "auto", "dtype": "auto", "offload": "none", "vae_tiling": False, "vae_slicing": False,
    "attention": "sdpa", "compile": False, "cache": "none", "cache_threshold": 0.05, "lora": [], "shift": None,
    "guidance_2": None, "max_sequence_length": None, "revision": None,
}  # fmt: skip
_CHOICES = {
    "offload": ("none", "model", "sequential", "group"),
    "cache": ("none", "firstblock", "taylorseer"),
    "attention": ("sdpa", "flash", "flash3", "sage", "flex"),
    "dtype": ("auto", "bfloat16", "float16", "float32"),
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
        raise InvalidRequest(f"options.{key}", f"{value!r} is not {kind} from {low:g} to {high:g}", value=value,
                             allowed=f"{low:g} to {high:g}")  # fmt: skip
    return int(num) if integer else num


def parse_lora(value: Any) -> list[tuple[str, float]]:
    """``"path:0.8"`` or a list of them -> [(path, scale)]. A missing scale is 1.0; Windows drive letters survive."""
    items = value if isinstance(value, list | tuple) else [value]
    out: list[tuple[str, float]] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InvalidRequest("options.lora", f"{item!r} is not a LoRA path", value=item,
                                 allowed="PATH or PATH:SCALE, e.g. style.safetensors:0.8")  # fmt: skip
        path, scale = item.strip(), 1.0
        head, sep, tail = path.rpartition(":")
        if sep and head and re.fullmatch(r"-?\d+(\.\d*)?|-?\.\d+", tail):
            path, scale = head, float(tail)
        if not -10.0 <= scale <= 10.0:
            raise InvalidRequest("options.lora", f"scale {scale:g} of {path!r} is out of range", value=item,
                                 allowed="-10 to 10")  # fmt: skip
        if not Path(path).expanduser().exists() and not _REPO_ID.match(path):
            raise InvalidRequest("options.lora", f"{path!r} is neither an existing file or folder nor a Hub repo id",
                                 value=item, allowed="a .safetensors file, a folder or org/name")  # fmt: skip
        out.append((path, scale))
    return out


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check every option and fill the defaults; bad ones raise InvalidRequest naming ``options.<key>``."""
    check_option_names("diffusers", options, tuple(OPTION_DEFAULTS))
    opts = {**OPTION_DEFAULTS, **options}
    device = str(opts["device"]).strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise InvalidRequest("options.device", f"{opts['device']!r} is not a device", value=opts["device"],
                             allowed="auto, cpu, cuda, cuda:N, mps")  # fmt: skip
    opts["device"] = device
    opts["dtype"] = _DTYPE_ALIASES.get(str(opts["dtype"]).lower(), str(opts["dtype"]).lower())
    for key, choices in _CHOICES.items():
        value = str(opts[key]).strip().lower()
        if key == "cache" and value in ("false", "off", "0"):
            value = "none"
        if value not in choices:
            raise InvalidRequest(f"options.{key}", f"{opts[key]!r} is not one of its values", value=opts[key],
                                 allowed=", ".join(choices))  # fmt: skip
        opts[key] = value
    for key in ("vae_tiling", "vae_slicing", "compile"):
        opts[key] = _bool(key, opts[key])
    opts["cache_threshold"] = _number("cache_threshold", opts["cache_threshold"], 0.0, 1.0)
    opts["lora"] = parse_lora(opts["lora"]) if opts["lora"] else []
    if opts["shift"] is not None:
        opts["shift"] = _number("shift", opts["shift"], 0.01, 100.0)
    if opts["guidance_2"] is not None:
        opts["guidance_2"] = _number("guidance_2", opts["guidance_2"], 0.0, 100.0)
    if opts["max_sequence_length"] is not None:
        opts["max_sequence_length"] = _number("max_sequence_length", opts["max_sequence_length"], 1, 4096, True)
    if opts["revision"] is not None and not re.fullmatch(r"[\w./-]{1,128}", str(opts["revision"])):
        raise InvalidRequest("options.revision", f"{opts['revision']!r} is not a branch, tag or commit id",
                             value=opts["revision"], allowed="e.g. main or a 40-character commit id")  # fmt: skip
    return opts


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
        raise InvalidRequest("options.device", "mps was asked for but Apple's Metal backend is not available",
                             value=choice, allowed="auto, cpu")  # fmt: skip
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


def check_fits(model: str, need_bytes: float, free_bytes: float, total_bytes: float, opts: dict[str, Any]) -> None:
    """Refuse before loading when the weights alone cannot fit in GPU memory without offloading."""
    if opts["offload"] != "none" or need_bytes <= 0.9 * free_bytes:
        return
    raise GenerationFailed(
        f"{model} needs about {need_bytes / _GIB:.1f} GiB of GPU memory for its weights alone, but the GPU has "
        f"{free_bytes / _GIB:.1f} GiB free of {total_bytes / _GIB:.1f} GiB. Try: {memory_advice(opts)}"
    )


def _weights_bytes(located: Located, dtype: Any) -> float:
    import torch

    if located.entry is not None:
        return located.entry.weights_gb * 1e9 * (2 if dtype == torch.float32 else 1)
    assert located.folder is not None
    total = sum(p.stat().st_size for p in located.folder.rglob("*") if p.name.endswith(_WEIGHT_SUFFIXES))
    return float(total)


# -- the backend ---------------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    pipe: Any


class DiffusersBackend(BaseBackend):
    name = "diffusers"
    description = (
        "Local open-weight models through diffusers: Wan, LTX-Video, CogVideoX, HunyuanVideo, SVD, ModelScope"
    )
    requires = (("diffusers", "local"), ("transformers", "local"), ("huggingface_hub", "local"))

    def __init__(self) -> None:
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def models(self) -> list[str]:
        return list(CATALOG)

    def default_model(self) -> str | None:
        return DEFAULT_MODEL

    def capabilities(self, model: str | None = None) -> Capabilities:
        return locate(model or DEFAULT_MODEL).capabilities

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        opts = validate_options(dict(request.options))  # bad options fail before anything else
        params = super().resolve(request, seed)
        params.options = {**dict(request.options), "_resolved": opts}
        return params

    # -- generate -------------------------------------------------------------------------------------------------
    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        require_module("diffusers", "local", feature="the diffusers backend")
        import torch

        opts = params.options.get("_resolved") or validate_options(
            {k: v for k, v in params.options.items() if not k.startswith("_")}
        )  # fmt: skip
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
        if opts["offload"] != "none" and not device.startswith("cuda"):
            raise InvalidRequest("options.offload", f"{opts['offload']!r} moves weights between CPU memory and a GPU; "
                                 f"the device here is {device}", value=opts["offload"], allowed="none")  # fmt: skip
        dtype = pick_dtype(opts["dtype"], device)
        if device.startswith("cuda"):
            free, total = torch.cuda.mem_get_info(torch.device(device))
            check_fits(model, _weights_bytes(located, dtype), free, total, opts)

        warnings: list[str] = []
        family = located.family
        mode_class = self._pipeline_class(located, params.mode)
        ctx.progress("loading", 0, 1)
        ctx.cancel.raise_if_cancelled()
        pipe = self._pipeline(located, mode_class, device, dtype, opts)
        ctx.progress("loading", 1, 1)
        ctx.cancel.raise_if_cancelled()

        kwargs, total_steps = call_kwargs(located, pipe, params, opts, warnings)
        kwargs.update(step_callbacks(pipe, ctx, total_steps))
        try:
            with torch.inference_mode():
                out = pipe(**kwargs)
        except Cancelled:
            raise
        except torch.OutOfMemoryError as exc:
            raise GenerationFailed(f"{model} ran out of GPU memory at {params.width}x{params.height}, "
                                   f"{params.num_frames} frames. Try: {memory_advice(opts)}") from exc  # fmt: skip
        ctx.cancel.raise_if_cancelled()
        ctx.progress("decoding", 1, 1)
        frames = _to_uint8(out.frames)
        if frames.shape[0] != params.num_frames:
            warnings.append(f"{mode_class} returned {frames.shape[0]} frames for {params.num_frames} asked")
            frames = frames[: params.num_frames]
        from ..video import Video

        extra = {"pipeline": mode_class, "family": family.name, "device": device, "dtype": str(dtype).split(".")[-1],
                 "folder": str(located.folder)}  # fmt: skip
        return BackendOutput(video=Video(frames, fps=params.fps), model_revision=located.revision or "local",
                             warnings=warnings, extra=extra)  # fmt: skip

    # -- loading --------------------------------------------------------------------------------------------------
    @staticmethod
    def _pipeline_class(located: Located, mode: str) -> str:
        family = located.family
        if mode == "t2v":
            return located.class_name
        if family.name == "ltx":
            # LTXConditionPipeline (0.9.5 and later) conditions on images and clips itself
            if located.class_name == "LTXConditionPipeline" or mode == "extend":
                return "LTXConditionPipeline"
            return "LTXImageToVideoPipeline"
        if located.class_name == "WanPipeline":  # Wan2.2 TI2V: the same weights in the i2v pipeline
            return "WanImageToVideoPipeline"
        return located.class_name

    def _pipeline(self, located: Located, class_name: str, device: str, dtype: Any, opts: dict[str, Any]) -> Any:
        """Load (or reuse) the pipeline for this checkpoint, mode and options. One pipeline is kept in memory."""
        import diffusers
        import torch

        key = (
            str(located.folder),
            class_name,
            device,
            str(dtype),
            tuple((k, str(v)) for k, v in sorted(opts.items()) if k not in ("guidance_2", "max_sequence_length")),
        )
        with self._lock:
            if self._loaded is not None and self._loaded.key == key:
                return self._loaded.pipe
            if self._loaded is not None:  # free the previous model before loading the next
                self._loaded = None
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            assert located.folder is not None
            entry = located.entry
            torch_dtype: Any = dtype
            if entry is not None and entry.vae_float32 and dtype != torch.float32:
                torch_dtype = {"default": dtype, "vae": torch.float32}
            from diffusers.pipelines import pipeline_utils

            # diffusers 0.36+ names it dtype (torch_dtype still works there, with a deprecation warning)
            dtype_key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"
            kwargs: dict[str, Any] = {dtype_key: torch_dtype, "local_files_only": True}
            if entry is not None and entry.variant and any(located.folder.rglob(f"*.{entry.variant}.safetensors")):
                kwargs["variant"] = entry.variant
            base_cls = getattr(diffusers, located.class_name)
            pipe = base_cls.from_pretrained(located.folder, **kwargs)
            if class_name != located.class_name:
                pipe = getattr(diffusers, class_name).from_pipe(pipe)
            pipe.set_progress_bar_config(disable=True)
            self._configure(pipe, located, device, opts)
            self._loaded = _Loaded(key, pipe)
            return pipe

    def _configure(self, pipe: Any, located: Located, device: str, opts: dict[str, Any]) -> None:
        """Scheduler shift, LoRA, attention, caches, compile, VAE tiling/slicing, then device placement/offload."""
        shift = opts["shift"] if opts["shift"] is not None else (located.entry.flow_shift if located.entry else None)
        if shift is not None:
            _set_shift(pipe, shift)
        if opts["lora"]:
            _load_loras(pipe, opts["lora"])
        denoisers = [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m]
        if opts["attention"] != "sdpa":
            if not denoisers:
                raise InvalidRequest(
                    "options.attention",
                    f"{type(pipe).__name__} uses a UNet, whose attention backend Kinema does not switch",
                    value=opts["attention"],
                    allowed="sdpa",
                )
            for net in denoisers:
                net.set_attention_backend(_ATTENTION_BACKENDS[opts["attention"]])
        if opts["cache"] != "none":
            _enable_cache(pipe, denoisers, opts)
        vae = getattr(pipe, "vae", None)
        for flag, method in (("vae_tiling", "enable_tiling"), ("vae_slicing", "enable_slicing")):
            if not opts[flag] or (flag == "vae_slicing" and located.family.name == "svd"):
                continue  # SVD decodes in chunks instead (decode_chunk_size)
            try:
                getattr(vae, method)()
            except (NotImplementedError, AttributeError):
                raise InvalidRequest(f"options.{flag}", f"the VAE of this model ({type(vae).__name__}) does not "
                                     "support it", value=True, allowed="false") from None  # fmt: skip
        if opts["compile"]:
            for net in denoisers or [getattr(pipe, "unet", None)]:
                if hasattr(net, "compile_repeated_blocks") and getattr(net, "_repeated_blocks", None):
                    net.compile_repeated_blocks(fullgraph=True)  # regional: compiles one block, reused by all
                elif net is not None:
                    net.compile()
        _place(pipe, device, opts["offload"])


def _set_shift(pipe: Any, shift: float) -> None:
    config = pipe.scheduler.config
    if "flow_shift" in config:
        pipe.scheduler = type(pipe.scheduler).from_config(config, flow_shift=shift)
    elif "shift" in config and not config.get("use_dynamic_shifting", False):
        pipe.scheduler = type(pipe.scheduler).from_config(config, shift=shift)


def _load_loras(pipe: Any, loras: list[tuple[str, float]]) -> None:
    if not hasattr(pipe, "load_lora_weights"):
        raise InvalidRequest("options.lora", f"{type(pipe).__name__} does not take LoRA weights", allowed="none")
    require_module("peft", "local", feature="LoRA loading")
    names = []
    for i, (path, _scale) in enumerate(loras):
        name = f"kinema_lora_{i}"
        try:
            pipe.load_lora_weights(path, adapter_name=name, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidRequest("options.lora", f"could not load {path!r}: {exc}", value=path) from None
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[scale for _path, scale in loras])


def _enable_cache(pipe: Any, denoisers: list[Any], opts: dict[str, Any]) -> None:
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if not denoisers or not all(hasattr(net, "enable_cache") for net in denoisers):
        raise InvalidRequest("options.cache", f"{type(pipe).__name__} has no transformer that diffusers' cache hooks "
                             "support", value=opts["cache"], allowed="none")  # fmt: skip
    for net in denoisers:
        if opts["cache"] == "firstblock":
            config: Any = FirstBlockCacheConfig(threshold=opts["cache_threshold"])
        else:
            config = TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=1, max_order=1,
                                           taylor_factors_dtype=None)  # fmt: skip
        try:
            net.enable_cache(config)
        except (ValueError, IndexError, TypeError) as exc:
            raise InvalidRequest("options.cache", f"{opts['cache']} does not apply to {type(net).__name__}: {exc}",
                                 value=opts["cache"], allowed="none") from None  # fmt: skip


def _place(pipe: Any, device: str, offload: str) -> None:
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        apply_group_offload(pipe, device)
    else:
        pipe.to(device)


def apply_group_offload(pipe: Any, device: str) -> None:
    """diffusers' group offloading on every component: weights live in CPU memory and stream to ``device``."""
    import torch
    from diffusers.hooks import apply_group_offloading
    from diffusers.models.modeling_utils import ModelMixin

    stream = device.startswith("cuda")
    for _name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        if isinstance(component, ModelMixin):
            component.enable_group_offload(onload_device=torch.device(device), offload_type="leaf_level",
                                           use_stream=stream, record_stream=stream)  # fmt: skip
        else:
            apply_group_offloading(component, onload_device=torch.device(device), offload_type="leaf_level",
                                   use_stream=stream, record_stream=stream)  # fmt: skip


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


def call_kwargs(located: Located, pipe: Any, params: GenerationParams, opts: dict[str, Any],
                      warnings: list[str]) -> tuple[dict[str, Any], int]:  # fmt: skip
    """The pipeline-call arguments for this family and mode, and the number of denoising steps it will run."""
    import torch

    family = located.family.name
    entry = located.entry
    steps = int(params.num_inference_steps or located.capabilities.default_steps or 30)
    guidance = params.guidance_scale if params.guidance_scale is not None else located.capabilities.default_guidance
    kw: dict[str, Any] = {
        "height": params.height, "width": params.width, "num_frames": params.num_frames,
        "num_inference_steps": steps, "output_type": "np",
        "generator": torch.Generator(device="cpu").manual_seed(params.seed),
    }  # fmt: skip
    if entry is not None:
        kw.update(entry.call_defaults)
    timesteps = kw.get("timesteps")
    if timesteps is not None and len(timesteps) != steps:
        kw.pop("timesteps")  # a distilled schedule only fits its own step count
    if family != "svd":
        kw["prompt"] = params.prompt
        kw["guidance_scale"] = guidance
        if params.negative_prompt:
            if family == "hunyuan":
                warnings.append("HunyuanVideo uses embedded guidance: the negative prompt is not used")
            else:
                kw["negative_prompt"] = params.negative_prompt
    else:
        warnings.append("Stable Video Diffusion is conditioned on the image only: the prompt is not used")
        kw["max_guidance_scale"] = guidance
        kw["min_guidance_scale"] = min(1.0, guidance or 1.0)
        kw["fps"] = int(round(params.fps))
        if opts["vae_slicing"]:
            kw["decode_chunk_size"] = 2
    if family == "ltx":
        kw["frame_rate"] = int(round(params.fps))
    if family == "wan" and getattr(pipe, "transformer_2", None) is not None:
        kw["guidance_scale_2"] = opts["guidance_2"] if opts["guidance_2"] is not None else (
            entry.guidance_2 if entry and entry.guidance_2 is not None else guidance)  # fmt: skip
    if family == "cogvideox":  # CogVideoX's text length is fixed by its transformer
        kw["max_sequence_length"] = int(pipe.transformer.config.max_text_seq_length)
    elif opts["max_sequence_length"] is not None:
        kw["max_sequence_length"] = opts["max_sequence_length"]

    first = params.image if params.mode == "i2v" else (params.video[-1] if params.video is not None else None)
    if params.mode != "t2v":
        assert first is not None
        if type(pipe).__name__ == "LTXConditionPipeline" and params.mode == "extend" and params.video is not None:
            # condition on the clip's last frames (a count the VAE takes: 8k+1), placed at the start of the new clip
            ratio = int(getattr(pipe, "vae_temporal_compression_ratio", 8))
            n = ratio + 1 if len(params.video) >= ratio + 1 else 1
            kw["video"] = [_image(f, params.width, params.height) for f in params.video[-n:]]
            kw["frame_index"] = 0
        else:
            kw["image"] = _image(first, params.width, params.height)
    accepted = _accepted(pipe)
    dropped = sorted(k for k in kw if k not in accepted)
    for k in dropped:
        kw.pop(k)
    return kw, len(kw["timesteps"]) if "timesteps" in kw else steps


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


def step_callbacks(pipe: Any, ctx: GenerationContext, total: int) -> dict[str, Any]:
    """Step progress into Kinema's events, and cancellation through the pipeline's interrupt."""

    def stop() -> None:
        # _interrupt makes the pipeline's own loop stop stepping; raising as well skips the VAE decode of a
        # half-denoised clip (seconds on a GPU), so a cancel takes effect within the current step.
        pipe._interrupt = True
        raise Cancelled("the generation was cancelled")

    def on_step_end(_pipe: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        ctx.progress("denoising", step + 1, total)
        if ctx.cancel.cancelled:
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
