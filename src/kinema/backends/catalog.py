"""The catalog of local open-weight video models: ids, Hub repos, pipelines, defaults, limits and licences.

One entry per model Kinema knows by a short id. ``--model`` also takes any Hub repo id or a local folder in the
diffusers layout; those get their Capabilities from the pipeline class in their ``model_index.json`` and the
compression factors in their VAE and transformer configs (:func:`derive_capabilities`). Sources of every default
are in docs/models.md.

>>> from kinema.backends.catalog import get_entry
>>> entry = get_entry("wan2.1-t2v-1.3b")
>>> entry.repo, entry.default_size, entry.frame_rule()
('Wan-AI/Wan2.1-T2V-1.3B-Diffusers', (832, 480), '4k+1')
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Capabilities

__all__ = [
    "CatalogEntry",
    "Family",
    "CATALOG",
    "FAMILIES",
    "get_entry",
    "find_by_repo",
    "family_for_pipeline",
    "derive_capabilities",
    "DEFAULT_MODEL",
    "MemoryEstimate",
    "estimate_memory",
    "component_bytes",
    "scaled_work",
    "WAN_NEGATIVE_PROMPT",
    "read_json",
    "MultiScale",
    "LTX_DEV_MULTISCALE",
]

DEFAULT_MODEL = "wan2.1-t2v-1.3b"


#: The Wan authors' negative prompt, applied whenever none is given (Wan-Video/Wan2.1 and Wan2.2
#: ``wan/configs/shared_config.py`` ``sample_neg_prompt``; ``wan/text2video.py``: ``if n_prompt == "": n_prompt =
#: self.sample_neg_prompt``)
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，"
    "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，"
    "三条腿，背景人很多，倒着走"
)


@dataclass(frozen=True)
class Family:
    """What a model family's pipelines take, and how its frame count and size rules follow from its configs."""

    name: str
    t2v: str | None  # diffusers pipeline class for text-to-video
    i2v: str | None  # ... for image-to-video (built from the same weights with ``from_pipe`` where it differs)
    extend: str | None  # ... for continuing a clip; None: extension uses the clip's last frame as an i2v image
    default_size: tuple[int, int]
    default_frames: int
    default_fps: float
    default_steps: int
    default_guidance: float
    max_guidance: float = 30.0
    negative_prompt: bool = True
    prompt: bool = True  # SVD ignores the prompt
    work_gb: float = 6.0  # activations and decode at the default size (GB), for checkpoints outside the catalog
    vae_float32: bool = False  # Wan: the authors and diffusers' docs keep the VAE in float32
    default_negative_prompt: str | None = None  # Wan: the authors' negative prompt
    default_strength: float = 0.6  # edit: the video-to-video pipeline's example value (docs/models.md)


FAMILIES: dict[str, Family] = {
    "wan": Family(
        "wan",
        "WanPipeline",
        "WanImageToVideoPipeline",
        None,
        (832, 480),
        81,
        16.0,
        50,
        5.0,
        work_gb=5.4,
        vae_float32=True,
        default_negative_prompt=WAN_NEGATIVE_PROMPT,
        default_strength=0.7,
    ),
    "ltx": Family(
        "ltx", "LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline", (768, 512), 121, 24.0, 50, 3.0
    ),
    "cogvideox": Family(
        "cogvideox",
        "CogVideoXPipeline",
        "CogVideoXImageToVideoPipeline",
        None,
        (720, 480),
        49,
        8.0,
        50,
        6.0,
        default_strength=0.8,
    ),
    "hunyuan": Family("hunyuan", "HunyuanVideoPipeline", None, None, (1280, 720), 129, 24.0, 50, 6.0, work_gb=18.7),
    "svd": Family(
        "svd",
        None,
        "StableVideoDiffusionPipeline",
        None,
        (1024, 576),
        14,
        7.0,
        25,
        3.0,
        max_guidance=20.0,
        negative_prompt=False,
        prompt=False,
    ),
    "modelscope": Family("modelscope", "TextToVideoSDPipeline", None, None, (256, 256), 16, 8.0, 50, 9.0, work_gb=2.0),
}

#: timed keyframes an LTX checkpoint takes (LTXVideoCondition at any frame index); each image past frame 0 adds a
#: latent frame of tokens to the sequence (LTXConditionPipeline.prepare_latents), so their number is bounded to keep
#: memory predictable
LTX_MAX_KEYFRAMES = 8

#: diffusers pipeline class (as in model_index.json) -> (family, modes that checkpoint offers)
_PIPELINE_FAMILY: dict[str, tuple[str, tuple[str, ...]]] = {
    "WanPipeline": ("wan", ("t2v",)),
    "WanImageToVideoPipeline": ("wan", ("i2v", "extend")),
    "WanVACEPipeline": ("wan", ("t2v", "references")),
    "LTXPipeline": ("ltx", ("t2v", "i2v", "extend", "edit", "keyframes")),
    "LTXImageToVideoPipeline": ("ltx", ("t2v", "i2v", "extend", "edit", "keyframes")),
    "LTXConditionPipeline": ("ltx", ("t2v", "i2v", "extend", "edit", "keyframes")),
    "CogVideoXPipeline": ("cogvideox", ("t2v", "edit")),
    "CogVideoXImageToVideoPipeline": ("cogvideox", ("i2v", "extend")),
    "HunyuanVideoPipeline": ("hunyuan", ("t2v",)),
    "StableVideoDiffusionPipeline": ("svd", ("i2v", "extend")),
    "TextToVideoSDPipeline": ("modelscope", ("t2v",)),
}


def family_for_pipeline(class_name: str) -> tuple[Family, tuple[str, ...]] | None:
    """The family and modes of a checkpoint whose model_index.json names ``class_name``; None if unsupported."""
    found = _PIPELINE_FAMILY.get(class_name)
    if found is None:
        return None
    return FAMILIES[found[0]], found[1]


def supported_pipelines() -> list[str]:
    return sorted(_PIPELINE_FAMILY)


@dataclass(frozen=True)
class MultiScale:
    """LTX-Video's multi-scale flow (``--option multiscale=true``): a first pass at ``downscale`` of the size, the
    latent upsampler (2x), then a short refine pass at twice the first pass's size. Sources in docs/models.md."""

    upsampler: str | None  # the Hub repo of the latent upsampler the authors pair with the checkpoint
    upsampler_params_b: float = 0.126  # LTXLatentUpsamplerModel's default config (the 0.9.7 / 0.9.8 upsampler)
    downscale: float = 0.6666666  # the authors' downscale_factor (configs/ltxv-13b-0.9.8-distilled.yaml)
    adain_factor: float = 0.0  # LTXLatentUpsamplePipeline: match the upsampled latents' statistics to the first's
    tone_map_compression_ratio: float = 0.0  # LTXLatentUpsamplePipeline (diffusers 0.36+): 0.6 for 0.9.8
    refine_timesteps: tuple[float, ...] | None = None  # the refine pass's schedule (a distilled checkpoint's)
    refine_steps: int = 10  # the refine pass's schedule length, of which int(steps x strength) run
    refine_strength: float = 0.4  # LTXConditionPipeline's denoise_strength for the refine pass


#: the recipe of diffusers' LTX-Video 0.9.7-dev multi-scale example (ltx_video.md): for an LTX checkpoint given by
#: folder or repo id with ``--option upsampler=...``, which is run with the family's (non-distilled) defaults
LTX_DEV_MULTISCALE = MultiScale(upsampler=None)


@dataclass(frozen=True)
class CatalogEntry:
    """One model: where its weights are, which pipeline runs it, what it accepts and under which licence."""

    id: str
    repo: str
    family: str
    pipeline: str  # the diffusers class Kinema loads the repo with
    modes: tuple[str, ...]
    default_size: tuple[int, int]  # (width, height)
    size_multiple: int
    default_frames: int
    frame_step: int  # frame counts are frame_step*k + frame_offset
    frame_offset: int
    max_frames: int
    default_fps: float
    default_steps: int
    default_guidance: float
    license: str
    commercial_use: bool
    params_b: dict[str, float]  # parameters per component, in billions (model cards / configs): memory estimates
    work_gb: float  # activations and VAE decode at the default size, in GB, on top of the weights (see docs)
    sizes: tuple[tuple[int, int], ...] | None = None  # fixed sizes, where the model takes only these
    min_size: int = 128
    max_size: int = 1920
    min_frames: int = 1
    guidance_2: float | None = None  # Wan2.2 A14B: guidance of the low-noise expert
    flow_shift: float | None = None  # scheduler shift Kinema sets
    max_guidance: float = 30.0
    negative_prompt: bool = True
    prompt: bool = True
    revision: str | None = None  # a commit id to pin; None: the "main" snapshot kinema pull fetched
    variant: str | None = None  # weight file variant to download and load ("fp16")
    vae_float32: bool = False  # keep the VAE in float32 (Wan's recommendation)
    #: component -> dtype the authors use, applied with dtype=auto on a GPU ("default" for the rest)
    dtypes: dict[str, str] = field(default_factory=dict)
    #: a scheduler class (and from_config overrides) the authors pair with these defaults
    scheduler: tuple[str, dict[str, Any]] | None = None
    default_negative_prompt: str | None = None  # what the authors apply when the user gives none
    call_defaults: dict[str, Any] = field(default_factory=dict)  # extra pipeline-call arguments
    gated: bool = False  # the Hub asks users to accept the licence first (pull needs HF_TOKEN)
    aliases: tuple[str, ...] = ()
    notes: str = ""
    #: takes a last frame (WanImageToVideoPipeline's last_image): checked from the transformer's config when the
    #: weights are here; this says it before they are
    last_frame: bool = False
    needs_last_frame: bool = False  # FLF2V: its image embedder reads two images' CLIP tokens, never one
    #: edit (VideoRequest.strength) when the request gives none: the diffusers pipeline's own example value
    default_strength: float = 0.6
    #: longest edit / keyframes clip (None: the general frame rule alone); reasons in docs/models.md
    edit_max_frames: int | None = None
    max_references: int = 0  # reference images (mode "references")
    keyframes_max_frames: int | None = None
    #: images at given times besides a first and last one (VideoRequest.keyframes); 0: none
    max_keyframes: int = 0
    #: LTX-Video: the multi-scale flow the authors recommend (``--option multiscale=true``); None: not offered
    multiscale: MultiScale | None = None

    def frame_rule(self) -> str:
        if self.frame_step == 1:
            return "any"
        return f"{self.frame_step}k+{self.frame_offset}" if self.frame_offset else f"{self.frame_step}k"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            modes=self.modes,
            default_size=self.default_size,
            sizes=self.sizes,
            size_multiple=self.size_multiple,
            min_size=self.min_size,
            max_size=self.max_size,
            default_frames=self.default_frames,
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            frame_step=self.frame_step,
            frame_offset=self.frame_offset,
            default_fps=self.default_fps,
            default_steps=self.default_steps,
            max_steps=500,
            default_guidance=self.default_guidance,
            max_guidance=self.max_guidance,
            negative_prompt=self.negative_prompt,
            notes=f"{self.license}" + (f"; {self.notes}" if self.notes else ""),
            default_strength=self.default_strength,
            edit_max_frames=self.edit_max_frames,
            max_references=self.max_references,
            keyframes_max_frames=self.keyframes_max_frames,
            max_keyframes=self.max_keyframes,
        )

    def memory(self, offload: str = "model", text_encoder_device: str = "auto") -> MemoryEstimate:
        """The GPU memory this model needs at its default size in 16-bit (VAE in float32 where Kinema keeps it)."""
        return estimate_memory(
            self.params_b,
            component_bytes(self.params_b, 2.0, self.vae_float32),
            self.work_gb,
            offload,
            text_encoder_device=text_encoder_device,
        )

    def memory_table(self) -> dict[str, dict[str, float]]:
        """GPU GB at the default size for each offload mode and each way of storing the denoiser's weights
        (16-bit, then each ``quantize`` mode); a combination Kinema refuses (see docs/models.md) is left out."""
        from .quantization import DENOISERS, QUANT_MODES

        table: dict[str, dict[str, float]] = {}
        for offload in ("none", "model", "group", "sequential"):
            row = {"16bit": round(self.memory(offload).gpu_gb, 1)}
            for mode in QUANT_MODES.values():
                if offload == "sequential" or (offload == "group" and mode.name != "fp8_layerwise"):
                    continue
                quant = {n: mode.bytes_per_param for n in DENOISERS if n in self.params_b}
                bytes_per = component_bytes(self.params_b, 2.0, self.vae_float32, quant)
                row[mode.name] = round(estimate_memory(self.params_b, bytes_per, self.work_gb, offload).gpu_gb, 1)
            table[offload] = row
        return table

    @property
    def min_gpu_gb(self) -> float:
        """GPU memory at the default size with offload=model (the catalog's "GPU GB" column)."""
        return round(self.memory("model").gpu_gb, 1)

    @property
    def weights_gb(self) -> float:
        """All weights at 16-bit (VAE float32 where kept): what offload=none holds before any activation."""
        return round(self.memory("none").weights_gb, 1)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["frame_rule"] = self.frame_rule()
        data["min_gpu_gb"] = self.min_gpu_gb
        data["weights_gb"] = self.weights_gb
        data["memory_gb"] = self.memory_table()
        return data


# -- memory ------------------------------------------------------------------------------------------------------

_TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
_STREAM_MARGIN_GB = 1.0  # sequential / group offload: the layers in flight and the prefetched group


@dataclass(frozen=True)
class MemoryEstimate:
    """What a model needs in GPU and CPU memory with one offload mode, and what the figure assumes."""

    gpu_gb: float
    cpu_gb: float
    weights_gb: float  # all weights, wherever they live
    assumes: str


def component_bytes(
    params_b: dict[str, float], default: float, vae_float32: bool = False, overrides: dict[str, float] | None = None
) -> dict[str, float]:
    """Bytes per parameter of each component: ``default``; 4 for the VAE and image encoder when Kinema keeps them in
    float32 (Wan); then ``overrides``."""
    out = {name: default for name in params_b}
    for name in ("vae", "image_encoder"):
        if vae_float32 and name in out:
            out[name] = 4.0
    out.update({k: v for k, v in (overrides or {}).items() if k in out})
    return out


def estimate_memory(
    params_b: dict[str, float],
    bytes_per: dict[str, float],
    work_gb: float,
    offload: str,
    *,
    text_encoder_device: str = "auto",
    group_exclude: tuple[str, ...] = ("vae",),
    low_cpu_mem_usage: bool = False,
) -> MemoryEstimate:
    """GPU and CPU memory (GB) from each component's parameter count x bytes per parameter, and the offload mode.

    - ``none``: every component on the GPU, plus ``work_gb`` (activations and the VAE decode).
    - ``model``: one component on the GPU at a time: the larger of the biggest text encoder and the biggest other
      component plus ``work_gb``.
    - ``sequential``: weights stream layer by layer: ``work_gb`` plus a margin for the layers in flight.
    - ``group``: the excluded components (the VAE by default) sit on the GPU, the rest streams: their weights plus
      ``work_gb`` plus a margin; CPU memory holds twice the streamed weights (pinned copies) unless
      ``low_cpu_mem_usage``.
    ``text_encoder_device="cpu"`` keeps the text encoders off the GPU in every mode.
    """
    gb = {name: params_b[name] * bytes_per.get(name, 2.0) for name in params_b}
    total = sum(gb.values())
    text_cpu = text_encoder_device == "cpu"
    on_gpu = {n: v for n, v in gb.items() if not (text_cpu and n in _TEXT_ENCODERS)}
    text = [v for n, v in on_gpu.items() if n in _TEXT_ENCODERS]
    rest = [v for n, v in on_gpu.items() if n not in _TEXT_ENCODERS]
    cpu_text = sum(v for n, v in gb.items() if n in _TEXT_ENCODERS) if text_cpu else 0.0
    where = "text encoders on the CPU" if text_cpu else "text encoders on the GPU"
    if offload == "none":
        gpu, cpu = sum(on_gpu.values()) + work_gb, cpu_text
        assumes = f"all weights on the GPU ({where}) plus activations and decode"
    elif offload == "model":
        gpu = max(max(text, default=0.0), max(rest, default=0.0) + work_gb)
        cpu = total
        assumes = f"one component on the GPU at a time ({where}): the largest plus activations and decode"
    elif offload == "sequential":
        gpu, cpu = work_gb + _STREAM_MARGIN_GB, total
        assumes = "weights streamed layer by layer: activations and decode plus the layers in flight"
    else:
        kept = sum(v for n, v in on_gpu.items() if n in group_exclude)
        streamed = sum(v for n, v in on_gpu.items() if n not in group_exclude)
        gpu = kept + work_gb + _STREAM_MARGIN_GB
        cpu = streamed * (1.0 if low_cpu_mem_usage else 2.0) + cpu_text
        assumes = (
            f"group offload: {', '.join(group_exclude) or 'nothing'} kept on the GPU, the rest streamed "
            f"({where}); CPU memory {'1x' if low_cpu_mem_usage else '2x'} the streamed weights"
        )
    return MemoryEstimate(round(gpu, 2), round(cpu, 2), round(total, 2), assumes)


def scaled_work(work_gb: float, default: tuple[int, int, int], size: tuple[int, int, int]) -> float:
    """``work_gb`` (given at the default width x height x frames) scaled linearly to another size."""
    base = default[0] * default[1] * default[2]
    return work_gb * (size[0] * size[1] * size[2]) / base if base else work_gb


_UMT5 = 5.68  # UMT5-XXL encoder (Wan): ~11.4 GB in bf16
_WAN_VAE = 0.127  # Wan2.1 VAE: ~0.5 GB in float32
_T5XXL = 4.76  # T5-v1.1-XXL encoder (CogVideoX, LTX): ~9.5 GB in 16-bit
_COG_DPM = ("CogVideoXDPMScheduler", {"timestep_spacing": "trailing"})  # THUDM/CogVideo inference/cli_demo.py

_WAN = dict(
    family="wan",
    license="Apache-2.0",
    commercial_use=True,
    vae_float32=True,
    default_negative_prompt=WAN_NEGATIVE_PROMPT,
)
_WAN_T2V = dict(_WAN, pipeline="WanPipeline", modes=("t2v",))
# Wan 2.1 text-to-video weights also edit a clip (WanVideoToVideoPipeline; diffusers' example names both Wan2.1 T2V
# repos and strength=0.7); Wan2.2 A14B is left out: that pipeline has no second (low-noise) expert
_WAN21_T2V = dict(_WAN_T2V, modes=("t2v", "edit"), default_strength=0.7)
# Wan 2.1's clips: 4k+1 frames up to 161 at 16 fps, sizes in multiples of 16 (Wan-Video/Wan2.1 generate.py)
_WAN_FRAMES = dict(size_multiple=16, default_frames=81, frame_step=4, frame_offset=1, max_frames=161, default_fps=16.0)
#: reference images a Wan VACE request takes. WanVACEPipeline has no cap of its own: each image is letterboxed to the
#: clip's size and becomes one more latent frame in front of the clip (prepare_video_latents), so each adds a 21st of
#: an 81-frame clip's tokens; its example passes one. Kinema's cap, not an upstream figure (docs/models.md)
VACE_MAX_REFERENCES = 3

CATALOG: dict[str, CatalogEntry] = {
    e.id: e
    for e in [
        CatalogEntry(
            id="wan2.1-t2v-1.3b",
            repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            **_WAN21_T2V,  # type: ignore[arg-type]
            default_size=(832, 480),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=50,
            default_guidance=5.0,
            flow_shift=5.0,  # Wan2.1 generate.py _validate_args: 5.0 for text-to-video (3.0 is its 480p i2v value)
            params_b={"transformer": 1.42, "text_encoder": _UMT5, "vae": _WAN_VAE},
            work_gb=5.4,
            notes="trained at 480p; 720p works but is less stable",
        ),
        CatalogEntry(
            id="wan2.1-t2v-14b",
            repo="Wan-AI/Wan2.1-T2V-14B-Diffusers",
            **_WAN21_T2V,  # type: ignore[arg-type]
            default_size=(1280, 720),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=50,
            default_guidance=5.0,
            flow_shift=5.0,
            params_b={"transformer": 14.3, "text_encoder": _UMT5, "vae": _WAN_VAE},
            work_gb=12.5,
        ),
        CatalogEntry(
            id="wan2.1-i2v-14b-480p",
            repo="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
            **_WAN,  # type: ignore[arg-type]
            pipeline="WanImageToVideoPipeline",
            modes=("i2v", "extend"),
            default_size=(832, 480),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=40,
            default_guidance=5.0,
            flow_shift=3.0,
            params_b={"transformer": 14.3, "text_encoder": _UMT5, "vae": _WAN_VAE, "image_encoder": 0.63},
            work_gb=5.4,
        ),
        CatalogEntry(
            # the 720P image-to-video checkpoint: the authors' generate.py keeps sample_shift 5.0 for it (3.0 is for
            # 480P sizes only), 40 steps for i2v tasks, guide scale 5.0; work scaled from the 480P figure by pixels
            id="wan2.1-i2v-14b-720p",
            repo="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
            **_WAN,  # type: ignore[arg-type]
            pipeline="WanImageToVideoPipeline",
            modes=("i2v", "extend"),
            default_size=(1280, 720),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=40,
            default_guidance=5.0,
            flow_shift=5.0,
            params_b={"transformer": 14.3, "text_encoder": _UMT5, "vae": _WAN_VAE, "image_encoder": 0.63},
            work_gb=12.5,
        ),
        CatalogEntry(
            # first-last-frame-to-video: --image is the first frame, --option last_image=PATH the last. The
            # authors' defaults (Wan-Video/Wan2.1 generate.py _validate_args, task flf2v-14B): 50 steps (the
            # task name has no "i2v"), sample_shift 16, guide scale 5.0, 81 frames at 16 fps, 1280x720
            id="wan2.1-flf2v-14b-720p",
            repo="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
            **_WAN,  # type: ignore[arg-type]
            pipeline="WanImageToVideoPipeline",
            modes=("i2v", "extend", "keyframes"),
            default_size=(1280, 720),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=50,
            default_guidance=5.0,
            flow_shift=16.0,
            params_b={"transformer": 14.3, "text_encoder": _UMT5, "vae": _WAN_VAE, "image_encoder": 0.63},
            work_gb=12.5,  # as Wan2.1-T2V-14B at 720p: Kinema's estimate, not a measured figure
            notes="first-last-frame-to-video: --image FIRST --last-image LAST",
            last_frame=True,
            needs_last_frame=True,
        ),
        CatalogEntry(
            id="wan2.2-ti2v-5b",
            repo="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            **_WAN,  # type: ignore[arg-type]
            pipeline="WanPipeline",
            modes=("t2v", "i2v", "extend"),
            default_size=(1280, 704),
            size_multiple=32,
            default_frames=121,
            frame_step=4,
            frame_offset=1,
            max_frames=241,
            default_fps=24.0,
            default_steps=50,
            default_guidance=5.0,
            flow_shift=5.0,
            params_b={"transformer": 5.0, "text_encoder": _UMT5, "vae": 0.7},
            work_gb=13.0,
            notes="one model for text and image to video at 720p, 24 fps",
        ),
        CatalogEntry(
            id="wan2.2-t2v-a14b",
            repo="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
            **_WAN_T2V,  # type: ignore[arg-type]
            default_size=(1280, 720),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=40,
            default_guidance=4.0,
            guidance_2=3.0,
            flow_shift=12.0,
            params_b={"transformer": 14.3, "transformer_2": 14.3, "text_encoder": _UMT5, "vae": _WAN_VAE},
            work_gb=12.5,
            notes="two 14B experts (high- and low-noise); guidance_2 is the low-noise expert's",
        ),
        CatalogEntry(
            id="wan2.2-i2v-a14b",
            repo="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
            **_WAN,  # type: ignore[arg-type]
            pipeline="WanImageToVideoPipeline",
            modes=("i2v", "extend", "keyframes"),
            default_size=(1280, 720),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=40,
            default_guidance=3.5,
            guidance_2=3.5,
            flow_shift=5.0,
            params_b={"transformer": 14.3, "transformer_2": 14.3, "text_encoder": _UMT5, "vae": _WAN_VAE},
            work_gb=12.5,
            notes="two 14B experts (high- and low-noise)",
            last_frame=True,  # no CLIP image tokens (image_dim None): diffusers conditions on the last frame's latent
        ),
        CatalogEntry(
            # reference-to-video: WanVACEPipeline(reference_images=...) with no video or mask (diffusers
            # pipelines/wan/pipeline_wan_vace.py, whose example loads this repo with flow_shift 3.0 for 480P)
            id="wan2.1-vace-1.3b",
            repo="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
            **_WAN,  # type: ignore[arg-type]
            pipeline="WanVACEPipeline",
            modes=("t2v", "references"),
            default_size=(832, 480),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=50,
            default_guidance=5.0,
            flow_shift=3.0,
            # the T2V-1.3B transformer plus 15 VACE blocks (vace_layers 0, 2, ..., 28; diffusers
            # scripts/convert_wan_to_diffusers.py): 2.154B counted from the config
            params_b={"transformer": 2.15, "text_encoder": _UMT5, "vae": _WAN_VAE},
            work_gb=5.4,  # as Wan2.1-T2V-1.3B: Kinema's estimate, not a measured figure
            max_references=VACE_MAX_REFERENCES,
            notes="reference images: --reference IMAGE (up to 3)",
        ),
        CatalogEntry(
            id="wan2.1-vace-14b",
            repo="Wan-AI/Wan2.1-VACE-14B-diffusers",
            **_WAN,  # type: ignore[arg-type]
            pipeline="WanVACEPipeline",
            modes=("t2v", "references"),
            default_size=(1280, 720),
            **_WAN_FRAMES,  # type: ignore[arg-type]
            default_steps=50,
            default_guidance=5.0,
            flow_shift=5.0,  # the diffusers example's value for 720P
            # the T2V-14B transformer plus 8 VACE blocks (vace_layers 0, 5, ..., 35): 17.34B counted from the config
            params_b={"transformer": 17.34, "text_encoder": _UMT5, "vae": _WAN_VAE},
            work_gb=12.5,  # as Wan2.1-T2V-14B at 720p: Kinema's estimate, not a measured figure
            max_references=VACE_MAX_REFERENCES,
            notes="reference images: --reference IMAGE (up to 3)",
        ),
        CatalogEntry(
            id="ltx-video",
            repo="Lightricks/LTX-Video-0.9.8-13B-distilled",
            family="ltx",
            pipeline="LTXConditionPipeline",
            modes=("t2v", "i2v", "extend", "edit", "keyframes"),
            max_keyframes=LTX_MAX_KEYFRAMES,
            default_size=(768, 512),
            size_multiple=32,
            default_frames=121,
            frame_step=8,
            frame_offset=1,
            max_frames=257,
            default_fps=24.0,
            default_steps=8,
            default_guidance=1.0,
            # its 8-step distilled schedule (timesteps below) runs the last int(8 x strength) steps: 0.3 runs the
            # last two, from noise level 0.725; 0.375 to 0.5 would start at 0.909 or above, which keeps little
            default_strength=0.3,
            license="LTXV Open Weights License (0.9.7 and later; see the repo's LICENSE)",
            commercial_use=True,
            params_b={"transformer": 13.0, "text_encoder": _T5XXL, "vae": 0.5},
            work_gb=6.0,
            call_defaults={
                "decode_timestep": 0.05,
                "decode_noise_scale": 0.025,
                "image_cond_noise_scale": 0.025,
                "timesteps": [1000, 993, 987, 981, 975, 909, 725, 0.03],
            },
            notes="13B step-distilled release: 8 steps without classifier-free guidance",
            # the authors' recipe (configs/ltxv-13b-0.9.8-distilled.yaml) as diffusers' ltx_video.md runs it for
            # 0.9.8 distilled: AdaIN 1.0, tone mapping 0.6, refine 4 of [1000, 909, 725, 421, 0] (strength 0.999).
            # The 0.9.8 upsampler file is a copy of the 0.9.7 one (the Hub repo Lightricks/LTX-Video, commit 264b748),
            # whose diffusers-layout repo is this one (docs/models.md)
            multiscale=MultiScale(
                upsampler="Lightricks/ltxv-spatial-upscaler-0.9.7",
                adain_factor=1.0,
                tone_map_compression_ratio=0.6,
                refine_timesteps=(1000, 909, 725, 421, 0),
                refine_steps=5,
                refine_strength=0.999,
            ),
        ),
        CatalogEntry(
            id="cogvideox-2b",
            repo="zai-org/CogVideoX-2b",
            family="cogvideox",
            pipeline="CogVideoXPipeline",
            modes=("t2v", "edit"),
            default_strength=0.8,  # CogVideoXVideoToVideoPipeline's default and its docs example
            default_size=(720, 480),
            sizes=((720, 480),),
            size_multiple=16,
            default_frames=49,
            frame_step=8,
            frame_offset=1,
            max_frames=49,
            default_fps=8.0,
            default_steps=50,
            default_guidance=6.0,
            license="Apache-2.0",
            commercial_use=True,
            params_b={"transformer": 1.69, "text_encoder": _T5XXL, "vae": 0.215},
            work_gb=4.0,
            dtypes={"default": "float16"},
            aliases=("THUDM/CogVideoX-2b",),
        ),
        CatalogEntry(
            id="cogvideox-5b",
            repo="zai-org/CogVideoX-5b",
            family="cogvideox",
            pipeline="CogVideoXPipeline",
            modes=("t2v", "edit"),
            default_strength=0.8,
            default_size=(720, 480),
            sizes=((720, 480),),
            size_multiple=16,
            default_frames=49,
            frame_step=8,
            frame_offset=1,
            max_frames=49,
            default_fps=8.0,
            default_steps=50,
            default_guidance=6.0,
            call_defaults={"use_dynamic_cfg": True},
            scheduler=_COG_DPM,
            license="CogVideoX License (commercial use needs registration)",
            commercial_use=False,
            params_b={"transformer": 5.57, "text_encoder": _T5XXL, "vae": 0.215},
            work_gb=5.0,
            aliases=("THUDM/CogVideoX-5b",),
        ),
        CatalogEntry(
            id="cogvideox-5b-i2v",
            repo="zai-org/CogVideoX-5b-I2V",
            family="cogvideox",
            pipeline="CogVideoXImageToVideoPipeline",
            modes=("i2v", "extend"),
            default_size=(720, 480),
            sizes=((720, 480),),
            size_multiple=16,
            default_frames=49,
            frame_step=8,
            frame_offset=1,
            max_frames=49,
            default_fps=8.0,
            default_steps=50,
            default_guidance=6.0,
            call_defaults={"use_dynamic_cfg": True},
            scheduler=_COG_DPM,
            license="CogVideoX License (commercial use needs registration)",
            commercial_use=False,
            params_b={"transformer": 5.57, "text_encoder": _T5XXL, "vae": 0.215},
            work_gb=5.0,
            min_frames=49,
            aliases=("THUDM/CogVideoX-5b-I2V",),
            notes="49 frames only: its learned positional embedding is for 49 frames",
        ),
        CatalogEntry(
            id="hunyuanvideo",
            repo="hunyuanvideo-community/HunyuanVideo",
            family="hunyuan",
            pipeline="HunyuanVideoPipeline",
            modes=("t2v",),
            default_size=(1280, 720),
            size_multiple=16,
            default_frames=129,
            frame_step=4,
            frame_offset=1,
            max_frames=129,
            default_fps=24.0,
            default_steps=50,
            default_guidance=6.0,
            flow_shift=7.0,
            license="Tencent Hunyuan Community License (not licensed in the EU, UK and South Korea)",
            commercial_use=True,
            params_b={"transformer": 12.8, "text_encoder": 7.5, "text_encoder_2": 0.123, "vae": 0.246},
            work_gb=18.7,
            dtypes={"default": "float16", "transformer": "bfloat16"},
            notes="guidance is embedded (distilled); true CFG with a negative prompt needs option true_cfg_scale > 1",
        ),
        CatalogEntry(
            id="svd",
            repo="stabilityai/stable-video-diffusion-img2vid",
            family="svd",
            pipeline="StableVideoDiffusionPipeline",
            modes=("i2v", "extend"),
            default_size=(1024, 576),
            size_multiple=8,
            min_size=64,
            max_size=1024,
            default_frames=14,
            frame_step=1,
            frame_offset=0,
            max_frames=25,
            default_fps=7.0,
            default_steps=25,
            default_guidance=3.0,
            max_guidance=20.0,
            negative_prompt=False,
            prompt=False,
            variant="fp16",
            dtypes={"default": "float16"},
            license="SVD non-commercial community licence (not for commercial use)",
            commercial_use=False,
            params_b={"unet": 1.52, "vae": 0.098, "image_encoder": 0.632},
            work_gb=6.0,
            gated=True,
            notes="image-to-video only; the prompt is ignored",
        ),
        CatalogEntry(
            id="svd-xt",
            repo="stabilityai/stable-video-diffusion-img2vid-xt",
            family="svd",
            pipeline="StableVideoDiffusionPipeline",
            modes=("i2v", "extend"),
            default_size=(1024, 576),
            size_multiple=8,
            min_size=64,
            max_size=1024,
            default_frames=25,
            frame_step=1,
            frame_offset=0,
            max_frames=25,
            default_fps=7.0,
            default_steps=25,
            default_guidance=3.0,
            max_guidance=20.0,
            negative_prompt=False,
            prompt=False,
            variant="fp16",
            dtypes={"default": "float16"},
            license="SVD non-commercial community licence (not for commercial use)",
            commercial_use=False,
            params_b={"unet": 1.52, "vae": 0.098, "image_encoder": 0.632},
            work_gb=8.0,
            gated=True,
            notes="image-to-video only; the prompt is ignored",
        ),
        CatalogEntry(
            id="modelscope-t2v",
            repo="ali-vilab/text-to-video-ms-1.7b",
            family="modelscope",
            pipeline="TextToVideoSDPipeline",
            modes=("t2v",),
            default_size=(256, 256),
            size_multiple=8,
            min_size=64,
            max_size=1024,
            default_frames=16,
            frame_step=1,
            frame_offset=0,
            max_frames=64,
            default_fps=8.0,
            default_steps=25,
            default_guidance=9.0,
            variant="fp16",
            scheduler=("DPMSolverMultistepScheduler", {}),  # diffusers v0.35 text_to_video.md: 25 steps with it
            license="CC-BY-NC-4.0 (non-commercial)",
            commercial_use=False,
            params_b={"unet": 1.41, "text_encoder": 0.354, "vae": 0.084},
            work_gb=2.0,
            aliases=("damo-vilab/text-to-video-ms-1.7b",),
        ),
    ]
}


def get_entry(model_id: str) -> CatalogEntry | None:
    """The catalog entry for a short id or its Hub repo id (case-insensitive); None if it is not in the catalog."""
    key = model_id.strip()
    if key in CATALOG:
        return CATALOG[key]
    return find_by_repo(key)


def find_by_repo(repo: str) -> CatalogEntry | None:
    low = repo.lower()
    for entry in CATALOG.values():
        if entry.repo.lower() == low or low in (a.lower() for a in entry.aliases) or entry.id == low:
            return entry
    return None


# -- capabilities of a checkpoint that is not in the catalog ---------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _patch(value: Any, index: int = -1) -> int:
    if isinstance(value, list | tuple):
        return int(value[index])
    return int(value or 1)


def compression(folder: Path, family: str) -> tuple[int, int]:
    """(pixels per side that must divide the size, temporal compression) read from the VAE and denoiser configs."""
    vae = read_json(folder / "vae" / "config.json")
    net = read_json(folder / "transformer" / "config.json") or read_json(folder / "unet" / "config.json")
    if family == "wan":
        spatial = int(vae.get("scale_factor_spatial") or 2 ** len(vae.get("temperal_downsample", [0, 0, 0])))
        temporal = int(
            vae.get("scale_factor_temporal")
            or 2 ** sum(bool(t) for t in vae.get("temperal_downsample", [False, True, True]))
        )
        return spatial * _patch(net.get("patch_size", 2)), temporal
    if family == "ltx":
        scaling = vae.get("spatio_temporal_scaling", [True, True, True, False])
        spatial = int(vae.get("spatial_compression_ratio") or _patch(vae.get("patch_size", 4)) * 2 ** sum(scaling))
        temporal = int(vae.get("temporal_compression_ratio") or _patch(vae.get("patch_size_t", 1)) * 2 ** sum(scaling))
        return spatial * _patch(net.get("patch_size", 1)), temporal
    if family == "cogvideox":
        spatial = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
        return spatial * _patch(net.get("patch_size", 2)), int(vae.get("temporal_compression_ratio", 4))
    if family == "hunyuan":
        spatial = int(vae.get("spatial_compression_ratio", 8))
        return spatial * _patch(net.get("patch_size", 2)), int(vae.get("temporal_compression_ratio", 4))
    # UNet families (SVD, ModelScope): the pipelines check for multiples of 8
    spatial = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    return math.lcm(8, spatial), 1


def _component(index: dict[str, Any], name: str) -> bool:
    """Whether model_index.json fills the slot ``name`` (Wan 2.1 writes ``transformer_2: [null, null]``)."""
    spec = index.get(name)
    return isinstance(spec, list) and len(spec) == 2 and bool(spec[0]) and bool(spec[1])


def read_model_index(folder: Path) -> dict[str, Any]:
    return read_json(folder / "model_index.json")


def derive_capabilities(folder: Path, class_name: str | None = None) -> tuple[Capabilities, Family]:
    """Capabilities of a diffusers-layout folder that is not in the catalog, from its own configs.

    Raises KeyError when the pipeline class is not one Kinema supports.
    """
    index = read_model_index(folder)
    class_name = class_name or str(index.get("_class_name", ""))
    found = family_for_pipeline(class_name)
    if found is None:
        raise KeyError(class_name)
    family, modes = found
    if family.name == "wan" and class_name == "WanPipeline":
        if index.get("expand_timesteps"):
            modes = ("t2v", "i2v", "extend")  # the Wan2.2 TI2V layout does both with one transformer
        elif not _component(index, "transformer_2"):
            # WanVideoToVideoPipeline takes one transformer and no expand_timesteps (Wan2.1 T2V weights)
            modes = ("t2v", "edit")
    if family.name == "wan" and class_name == "WanImageToVideoPipeline":
        net = read_json(folder / "transformer" / "config.json")
        # a last frame: FLF2V's image embedder takes two images' CLIP tokens (pos_embed_seq_len); Wan2.2 I2V takes
        # none (image_dim null) and conditions on the last frame's latent. Wan2.1 I2V reads one image's tokens only
        if net.get("pos_embed_seq_len") is not None or net.get("image_dim") is None:
            modes = (*modes, "keyframes")
    multiple, temporal = compression(folder, family.name)
    step, offset = (temporal, 1) if temporal > 1 else (1, 0)
    frames = family.default_frames
    if step > 1 and (frames - offset) % step:
        frames = ((frames - offset) // step) * step + offset
    if family.name == "svd":
        unet = read_json(folder / "unet" / "config.json")
        frames = int(unet.get("num_frames", frames))
    w, h = family.default_size
    caps = Capabilities(
        modes=modes,
        default_size=(w - w % multiple, h - h % multiple),
        size_multiple=multiple,
        min_size=multiple,
        max_size=4096,
        default_frames=frames,
        min_frames=1,
        max_frames=1024,
        frame_step=step,
        frame_offset=offset,
        default_fps=family.default_fps,
        default_steps=family.default_steps,
        max_steps=500,
        default_guidance=family.default_guidance,
        max_guidance=family.max_guidance,
        negative_prompt=family.negative_prompt,
        default_strength=family.default_strength,
        max_references=VACE_MAX_REFERENCES if "references" in modes else 0,
        # every LTX checkpoint runs keyframes through LTXConditionPipeline, which takes images at any frame
        max_keyframes=LTX_MAX_KEYFRAMES if family.name == "ltx" else 0,
        notes=f"{class_name} checkpoint at {folder}; limits derived from its configs (licence: see its model card)",
    )
    return caps, family
