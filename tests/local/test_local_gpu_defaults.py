"""The diffusers backend as GPU users run it, checked on the CPU with tiny checkpoints (issue "Real GPUs").

Each test would have caught one defect: compile with a cache hook, the i2v pipeline's dtype, version-dependent
names, memory estimates per offload mode, the authors' quality defaults, options that silently did nothing, and
group offload of the VAE. Sources of the defaults: docs/models.md and /work/shared/reference/reviews-2026-12.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.backends import get_backend
from kinema.errors import GenerationFailed, InvalidRequest, MissingExtra

Tiny = Callable[[str], Path]


def run(folder: Path | str, steps: int = 2, size: int = 32, frames: int = 5, **fields: Any) -> kinema.Result:
    options = {"device": "cpu", **fields.pop("options", {})}
    if "max_sequence_length" not in options and "svd" not in str(folder):
        options["max_sequence_length"] = 32
    if "width" not in fields and "aspect_ratio" not in fields:
        fields.update(width=size, height=size)
    return kinema.generate(
        fields.pop("prompt", "a red ball on the sea"),
        backend="diffusers",
        model=str(folder),
        num_frames=frames,
        num_inference_steps=steps,
        seed=5,
        options=options,
        **fields,
    )


def loaded_pipe() -> Any:
    return get_backend("diffusers")._loaded.pipe


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every pipeline call (the real call still runs)."""
    import diffusers

    seen: list[dict[str, Any]] = []
    for name in (
        "WanPipeline",
        "WanImageToVideoPipeline",
        "HunyuanVideoPipeline",
        "StableVideoDiffusionPipeline",
        "CogVideoXImageToVideoPipeline",
    ):
        cls = getattr(diffusers, name)
        original = cls.__call__

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen.append(kwargs)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", functools.wraps(original)(spy))
    yield seen


def resolve(model: str, **fields: Any) -> Any:
    backend = get_backend("diffusers")
    return backend.resolve(kinema.VideoRequest(prompt="a cat", backend="diffusers", model=model, **fields), 1)


# -- 1. compile together with a cache hook ---------------------------------------------------------------------------


def test_compile_with_a_cache_hook_turns_fullgraph_off(tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.models.modeling_utils import ModelMixin

    chosen: list[bool] = []
    monkeypatch.setattr(ModelMixin, "compile_repeated_blocks", lambda self, **kw: chosen.append(kw["fullgraph"]))
    run(tiny_checkpoint("wan-t2v"), options={"compile": True})
    run(tiny_checkpoint("wan-t2v"), options={"compile": True, "cache": "firstblock"})
    run(tiny_checkpoint("wan-t2v"), options={"compile": True, "cache": "taylorseer"})
    assert chosen == [True, False, False]


def test_compile_and_firstblock_cache_trace_for_real(tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamo really traces the blocks with the cache hook on (the eager backend skips only code generation)."""
    from diffusers.models.modeling_utils import ModelMixin

    original = ModelMixin.compile_repeated_blocks

    def eager(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, backend="eager", **kwargs)

    monkeypatch.setattr(ModelMixin, "compile_repeated_blocks", eager)
    result = run(
        tiny_checkpoint("wan-t2v"), steps=3, options={"compile": True, "cache": "firstblock", "cache_threshold": 0.5}
    )
    assert result.video.frames.shape == (5, 32, 32, 3) and result.video.frames.std() > 0
    assert loaded_pipe().transformer.is_cache_enabled


@pytest.mark.slow
def test_compile_and_firstblock_cache_with_inductor(tiny_checkpoint: Tiny) -> None:
    """The real torch.compile (inductor, about 40 s on 2 CPU cores) with FirstBlockCache."""
    result = run(tiny_checkpoint("wan-t2v"), options={"compile": True, "cache": "firstblock"})
    assert result.video.frames.shape == (5, 32, 32, 3)


# -- 2. the i2v pipeline keeps the loaded dtypes ---------------------------------------------------------------------


def component_dtypes(pipe: Any) -> dict[str, str]:
    import torch

    # the model's dtype (a few small modules a model marks _keep_in_fp32_modules stay float32 in any case)
    return {
        name: str(module.dtype).split(".")[-1]
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }


def test_ti2v_image_to_video_keeps_bf16(tiny_checkpoint: Tiny, image_file: Path) -> None:
    result = run(tiny_checkpoint("wan22-ti2v"), image=str(image_file), options={"dtype": "bfloat16"})
    pipe = loaded_pipe()
    assert type(pipe).__name__ == "WanImageToVideoPipeline"
    assert component_dtypes(pipe) == {"text_encoder": "bfloat16", "transformer": "bfloat16", "vae": "float32"}
    assert pipe.config.expand_timesteps  # the TI2V config value came along
    assert result.video.frames.shape == (5, 32, 32, 3)


def test_ltx_image_to_video_keeps_bf16(tiny_checkpoint: Tiny, image_file: Path) -> None:
    run(tiny_checkpoint("ltx"), frames=9, image=str(image_file), options={"dtype": "bfloat16"})
    pipe = loaded_pipe()
    assert type(pipe).__name__ == "LTXImageToVideoPipeline"
    assert set(component_dtypes(pipe).values()) == {"bfloat16"}


def test_wan_folder_gets_the_float32_vae(tiny_checkpoint: Tiny) -> None:
    run(tiny_checkpoint("wan-t2v"), options={"dtype": "bfloat16"})
    assert component_dtypes(loaded_pipe()) == {"text_encoder": "bfloat16", "transformer": "bfloat16", "vae": "float32"}


def test_authors_component_dtypes_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from kinema.backends.diffusers import component_dtypes as dtypes_for
    from kinema.backends.diffusers import locate

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert dtypes_for(locate("svd"), "auto", "cuda") == {"default": torch.float16}
    assert dtypes_for(locate("cogvideox-2b"), "auto", "cuda") == {"default": torch.float16}
    assert dtypes_for(locate("cogvideox-5b"), "auto", "cuda") == {"default": torch.bfloat16}
    assert dtypes_for(locate("hunyuanvideo"), "auto", "cuda") == {
        "default": torch.float16,
        "transformer": torch.bfloat16,
    }
    wan = dtypes_for(locate("wan2.1-i2v-14b-480p"), "auto", "cuda")
    assert wan == {"default": torch.bfloat16, "vae": torch.float32, "image_encoder": torch.float32}
    assert dtypes_for(locate("svd"), "bfloat16", "cuda") == {"default": torch.bfloat16}  # an explicit dtype wins


# -- 3. version-dependent names --------------------------------------------------------------------------------------


def test_old_diffusers_names_the_version(tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers.hooks

    monkeypatch.delattr(diffusers.hooks, "TaylorSeerCacheConfig")
    with pytest.raises(MissingExtra) as info:
        run(tiny_checkpoint("wan-t2v"), options={"cache": "taylorseer"})
    assert "diffusers>=0.36" in info.value.message and "options.cache=taylorseer" in info.value.message


# -- 4. memory estimates ---------------------------------------------------------------------------------------------


def gpu_gb(model: str, **options: Any) -> float:
    import torch

    from kinema.backends.diffusers import locate, memory_estimate, validate_options

    located = locate(model)
    caps = located.capabilities
    dtypes = {"default": torch.bfloat16, "vae": torch.float32 if located.family.vae_float32 else torch.bfloat16}
    size = (caps.default_size[0], caps.default_size[1], caps.default_frames)
    return memory_estimate(located, validate_options(options), dtypes, size).gpu_gb


def test_memory_estimates_a_gpu_user_sees() -> None:
    # Wan2.1 1.3B: the UMT5-XXL encoder (~11.4 GB in bf16) is on the GPU under model offload; the authors'
    # 8.19 GB keeps it on the CPU (--t5_cpu)
    assert gpu_gb("wan2.1-t2v-1.3b", offload="model") == pytest.approx(11.4, abs=0.2)
    assert gpu_gb("wan2.1-t2v-1.3b", offload="model", text_encoder_device="cpu") == pytest.approx(8.2, abs=0.2)
    assert gpu_gb("wan2.1-t2v-1.3b", offload="none") == pytest.approx(20.1, abs=0.3)
    # HunyuanVideo 720x1280x129: about 60 GB with everything on the GPU (the authors' figure), not 45
    assert gpu_gb("hunyuanvideo", offload="none") == pytest.approx(60.0, abs=1.0)
    assert gpu_gb("hunyuanvideo", offload="model") > 40
    # streaming modes: far less, the VAE kept whole under group offload by default
    assert gpu_gb("wan2.1-t2v-14b", offload="group") < gpu_gb("wan2.1-t2v-14b", offload="model") / 2
    assert gpu_gb("wan2.1-t2v-14b", offload="sequential") < gpu_gb("wan2.1-t2v-14b", offload="group")
    from kinema.backends.catalog import CATALOG

    assert CATALOG["wan2.1-t2v-1.3b"].min_gpu_gb == pytest.approx(11.4, abs=0.2)
    assert CATALOG["hunyuanvideo"].memory("none").gpu_gb == pytest.approx(60.0, abs=1.0)


def test_request_that_cannot_fit_says_why_and_what_helps() -> None:
    from kinema.backends.catalog import CATALOG
    from kinema.backends.diffusers import check_fits, validate_options

    gib = 1024**3
    estimate = CATALOG["wan2.1-t2v-14b"].memory("model")
    with pytest.raises(GenerationFailed) as info:
        check_fits("wan2.1-t2v-14b", estimate, 20 * gib, 24 * gib, validate_options({"offload": "model"}))
    text = info.value.message
    assert "offload=model" in text and "20.0 GiB free of 24.0" in text and "one component on the GPU" in text
    assert "offload=group" in text and "vae_tiling=true" in text
    check_fits(
        "wan2.1-t2v-14b",
        CATALOG["wan2.1-t2v-14b"].memory("group"),
        20 * gib,
        24 * gib,
        validate_options({"offload": "group"}),
    )


def test_memory_is_checked_before_loading_in_every_mode(
    _empty_hf_cache: Path, tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from test_local_errors import seed_cache

    import kinema.backends.diffusers as backend_module

    seed_cache(_empty_hf_cache, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", tiny_checkpoint("wan-t2v"))
    monkeypatch.setattr(backend_module, "pick_device", lambda choice: "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (10 * 1024**3, 12 * 1024**3))
    loads: list[str] = []
    monkeypatch.setattr(backend_module.DiffusersBackend, "_pipeline", lambda *a: loads.append("load"))
    with pytest.raises(GenerationFailed, match="offload=model"):
        kinema.generate("a cat", backend="diffusers", model="wan2.1-t2v-1.3b", options={"offload": "model"})
    with pytest.raises(GenerationFailed, match="offload=none"):
        kinema.generate("a cat", backend="diffusers", model="wan2.1-t2v-1.3b")
    assert loads == []
    # the text encoder on the CPU brings the 1.3B model under 10 GiB: the check passes and loading starts
    with pytest.raises(Exception):  # noqa: B017 - the stubbed loader returns no pipeline
        kinema.generate(
            "a cat",
            backend="diffusers",
            model="wan2.1-t2v-1.3b",
            options={"offload": "model", "text_encoder_device": "cpu"},
        )
    assert loads == ["load"]


def test_text_encoder_on_the_cpu_gives_the_same_clip(tiny_checkpoint: Tiny) -> None:
    base = run(tiny_checkpoint("wan-t2v")).video.frames
    cpu_text = run(tiny_checkpoint("wan-t2v"), options={"text_encoder_device": "cpu"}).video.frames
    assert loaded_pipe().text_encoder is None  # kept aside, out of every placement and offload hook
    assert np.abs(cpu_text.astype(int) - base.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("name", "size", "frames", "negative"),
    [("ltx", 32, 9, None), ("cogvideox", 16, 9, None), ("hunyuan", 16, 5, "blurry")],
)
def test_text_encoder_on_the_cpu_for_the_other_families(
    tiny_checkpoint: Tiny, name: str, size: int, frames: int, negative: str | None
) -> None:
    # HunyuanVideo encodes a negative prompt only with true CFG on (its default scale is the authors' 1.0)
    extra = {"true_cfg_scale": 3.0} if negative else {}
    base = run(tiny_checkpoint(name), size=size, frames=frames, negative_prompt=negative, options=extra).video.frames
    cpu_text = run(
        tiny_checkpoint(name),
        size=size,
        frames=frames,
        negative_prompt=negative,
        options={**extra, "text_encoder_device": "cpu"},
    )
    assert np.abs(cpu_text.video.frames.astype(int) - base.astype(int)).max() <= 1


# -- 5. the authors' quality defaults --------------------------------------------------------------------------------


def test_wan_gets_the_authors_negative_prompt(tiny_checkpoint: Tiny, calls: list[dict[str, Any]]) -> None:
    from kinema.backends.catalog import WAN_NEGATIVE_PROMPT

    run(tiny_checkpoint("wan-t2v"))
    assert calls[-1]["negative_prompt"] == WAN_NEGATIVE_PROMPT
    assert WAN_NEGATIVE_PROMPT.startswith("色调艳丽，过曝，静态")
    run(tiny_checkpoint("wan-t2v"), negative_prompt="blurry")
    assert calls[-1]["negative_prompt"] == "blurry"


def test_image_to_video_follows_the_image_aspect(tmp_path: Path) -> None:
    from PIL import Image

    portrait = tmp_path / "portrait.png"
    Image.new("RGB", (480, 832)).save(portrait)
    params = resolve("wan2.1-i2v-14b-480p", image=str(portrait))
    assert (params.width, params.height) == (480, 832)  # the 832x480 area at the image's aspect
    square = tmp_path / "square.png"
    Image.new("RGB", (500, 500)).save(square)
    params = resolve("wan2.2-ti2v-5b", image=str(square))
    assert (params.width, params.height) == (928, 928) and params.width % 32 == 0
    params = resolve("wan2.1-i2v-14b-480p", image=str(portrait), width=832, height=480)  # a given size wins
    assert (params.width, params.height) == (832, 480)
    params = resolve("cogvideox-5b-i2v", image=str(portrait), num_frames=49)  # fixed-size models keep their size
    assert (params.width, params.height) == (720, 480)


def test_image_to_video_sizes_a_url_image_when_loaded(tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import kinema.media.io as media_io
    from kinema.backends.catalog import FAMILIES

    # a 32x32 default area keeps the tiny model within its tiny rotary table; the rule is the same at 832x480
    monkeypatch.setitem(FAMILIES, "wan", dataclasses.replace(FAMILIES["wan"], default_size=(32, 32)))
    monkeypatch.setattr(media_io, "load_image", lambda source, field="image": np.full((64, 32, 3), 128, np.uint8))
    result = run(tiny_checkpoint("wan-i2v"), image="https://example.invalid/tall.png", width=None, height=None)
    assert result.video.frames.shape[1:3] == (32, 16)  # 2:1 portrait at the 32x32 area, multiples of 16
    assert (result.recipe["width"], result.recipe["height"]) == (16, 32)


def test_cogvideox_5b_pairs_dynamic_cfg_with_the_dpm_scheduler(_empty_hf_cache: Path, tiny_checkpoint: Tiny) -> None:
    from test_local_errors import seed_cache

    from kinema.backends.diffusers import call_kwargs, locate, validate_options

    seed_cache(_empty_hf_cache, "zai-org/CogVideoX-5b", tiny_checkpoint("cogvideox"))
    located = locate("cogvideox-5b")
    backend = get_backend("diffusers")
    opts = validate_options({"device": "cpu"})
    import torch

    pipe = backend._pipeline(located, "CogVideoXPipeline", "cpu", {"default": torch.float32}, opts)
    assert type(pipe.scheduler).__name__ == "CogVideoXDPMScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    params = resolve("cogvideox-5b")
    warnings: list[str] = []
    kwargs, _steps = call_kwargs(located, pipe, params, opts, warnings)
    assert kwargs["use_dynamic_cfg"] is True and not warnings
    from diffusers import CogVideoXDDIMScheduler

    pipe.scheduler = CogVideoXDDIMScheduler.from_config(pipe.scheduler.config)  # a DDIM scheduler: dynamic CFG off
    kwargs, _steps = call_kwargs(located, pipe, params, opts, warnings)
    assert "use_dynamic_cfg" not in kwargs and "dynamic CFG" in warnings[0]


def test_modelscope_gets_the_documented_scheduler(_empty_hf_cache: Path, tiny_checkpoint: Tiny) -> None:
    import torch
    from test_local_errors import seed_cache

    from kinema.backends.diffusers import locate, validate_options

    seed_cache(_empty_hf_cache, "ali-vilab/text-to-video-ms-1.7b", tiny_checkpoint("modelscope"))
    opts = validate_options({"device": "cpu"})
    pipe = get_backend("diffusers")._pipeline(
        locate("modelscope-t2v"), "TextToVideoSDPipeline", "cpu", {"default": torch.float32}, opts
    )
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_cogvideox_i2v_keeps_its_learned_positional_embedding(tiny_checkpoint: Tiny, image_file: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve("cogvideox-5b-i2v", image=str(image_file), num_frames=41)
    assert info.value.field == "num_frames" and "49" in info.value.message
    # a folder trained for 9 frames, asked for 5: it runs, and says what is lost
    result = run(tiny_checkpoint("cogvideox-i2v"), size=16, frames=5, image=str(image_file))
    assert any("positional embedding" in w for w in result.warnings)


def test_svd_micro_conditioning_and_decode_chunk(
    tiny_checkpoint: Tiny, image_file: Path, calls: list[dict[str, Any]]
) -> None:
    run(tiny_checkpoint("svd"), size=16, frames=4, image=str(image_file))
    assert calls[-1]["decode_chunk_size"] == 8 and "motion_bucket_id" not in calls[-1]
    run(
        tiny_checkpoint("svd"),
        size=16,
        frames=4,
        image=str(image_file),
        options={"motion_bucket_id": 180, "noise_aug_strength": 0.1, "decode_chunk_size": 2},
    )
    assert (calls[-1]["motion_bucket_id"], calls[-1]["noise_aug_strength"], calls[-1]["decode_chunk_size"]) == (
        180,
        0.1,
        2,
    )
    with pytest.raises(InvalidRequest) as info:
        resolve("wan2.1-t2v-1.3b", options={"motion_bucket_id": 100})
    assert info.value.field == "options.motion_bucket_id"


def test_hunyuan_negative_prompt_turns_on_true_cfg(tiny_checkpoint: Tiny, calls: list[dict[str, Any]]) -> None:
    # the authors' --cfg-scale default 1.0 (Tencent-Hunyuan/HunyuanVideo hyvideo/config.py): true CFG off, said so
    result = run(tiny_checkpoint("hunyuan"), size=16, negative_prompt="blurry")
    assert "negative_prompt" not in calls[-1] and "true_cfg_scale" not in calls[-1]
    assert any("true_cfg_scale 1 (the authors' default)" in w for w in result.warnings)
    run(tiny_checkpoint("hunyuan"), size=16, negative_prompt="blurry", options={"true_cfg_scale": 3.5})
    assert calls[-1]["negative_prompt"] == "blurry"
    assert calls[-1]["true_cfg_scale"] == 3.5
    run(tiny_checkpoint("hunyuan"), size=16)
    assert "negative_prompt" not in calls[-1] and "true_cfg_scale" not in calls[-1]


def test_wan_1_3b_keeps_the_authors_text_to_video_shift(tiny_checkpoint: Tiny, _empty_hf_cache: Path) -> None:
    # Wan-Video/Wan2.1 generate.py _validate_args: sample_shift 5.0 for t2v-1.3B at 832*480 (3.0 is i2v at 480p)
    import torch
    from test_local_errors import seed_cache

    from kinema.backends.catalog import CATALOG
    from kinema.backends.diffusers import locate, validate_options

    assert CATALOG["wan2.1-t2v-1.3b"].flow_shift == 5.0
    seed_cache(_empty_hf_cache, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", tiny_checkpoint("wan-t2v"))  # saved at 3.0
    backend: Any = get_backend("diffusers")
    pipe = backend._pipeline(
        locate("wan2.1-t2v-1.3b"),
        "WanPipeline",
        "cpu",
        {"default": torch.float32},
        validate_options({"device": "cpu"}),
    )
    assert pipe.scheduler.config.flow_shift == 5.0


# -- 6. options that would do nothing are refused up front ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "options", "field", "allowed"),
    [
        ("cogvideox-5b", {"attention": "flash"}, "options.attention", "sdpa"),
        ("svd", {"attention": "sage"}, "options.attention", "sdpa"),
        ("cogvideox-2b", {"shift": 3.0}, "options.shift", "no shift"),
        ("svd", {"shift": 3.0}, "options.shift", "no shift"),
        ("modelscope-t2v", {"shift": 3.0}, "options.shift", "no shift"),
        ("wan2.1-t2v-1.3b", {"true_cfg_scale": 4.0}, "options.true_cfg_scale", "HunyuanVideo"),
        ("modelscope-t2v", {"text_encoder_device": "cpu"}, "options.text_encoder_device", "auto"),
        ("wan2.1-t2v-1.3b", {"offload_exclude": "vae"}, "options.offload_exclude", "offload=group"),
        ("wan2.1-t2v-1.3b", {"low_cpu_mem_usage": True}, "options.low_cpu_mem_usage", "offload=group"),
        ("wan2.1-t2v-1.3b", {"guidance_2": 3.0}, "options.guidance_2", "A14B"),
    ],
)
def test_options_that_would_do_nothing_are_refused(
    model: str, options: dict[str, Any], field: str, allowed: str
) -> None:
    image = np.zeros((576, 1024, 3), np.uint8) if model == "svd" else None  # SVD is image-to-video only
    with pytest.raises(InvalidRequest) as info:
        resolve(model, options=options, image=image)
    assert info.value.field == field and allowed in (info.value.allowed or "")


def test_options_that_work_are_accepted() -> None:
    resolve("wan2.1-t2v-1.3b", options={"attention": "flash", "shift": 8.0})
    resolve("hunyuanvideo", options={"attention": "sage", "shift": 7.0, "true_cfg_scale": 4.0})
    resolve("wan2.2-t2v-a14b", options={"guidance_2": 2.5, "offload": "group", "offload_exclude": "vae,text_encoder"})


def test_lora_reaches_both_wan22_experts(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from test_local_options import make_lora

    lora = make_lora(tiny_checkpoint("wan-t2v"), tmp_path / "lora")
    run(tiny_checkpoint("wan22-a14b"), options={"lora": f"{lora}:0.7"})
    pipe = loaded_pipe()
    for expert in (pipe.transformer, pipe.transformer_2):
        assert "kinema_lora_0" in expert.peft_config
    assert pipe.get_list_adapters() == {"transformer": ["kinema_lora_0"], "transformer_2": ["kinema_lora_0"]}


# -- 7. group offload keeps the VAE whole by default -----------------------------------------------------------------


def test_group_offload_excludes_the_vae_by_default(tiny_checkpoint: Tiny) -> None:
    from diffusers import WanPipeline

    from kinema.backends.diffusers import apply_group_offload

    def hooked(module: Any) -> bool:  # diffusers keeps a module's hooks in its _diffusers_hook registry
        return any(getattr(m, "_diffusers_hook", None) is not None for m in module.modules())

    pipe = WanPipeline.from_pretrained(tiny_checkpoint("wan-t2v"))
    apply_group_offload(pipe, "cpu", low_cpu_mem_usage=True)
    assert hooked(pipe.transformer) and hooked(pipe.text_encoder) and not hooked(pipe.vae)
    out = pipe(
        "a cat", height=32, width=32, num_frames=5, num_inference_steps=2, output_type="np", max_sequence_length=16
    ).frames
    assert np.asarray(out).shape == (1, 5, 32, 32, 3)

    pipe = WanPipeline.from_pretrained(tiny_checkpoint("wan-t2v"))
    apply_group_offload(pipe, "cpu", exclude=[])
    assert hooked(pipe.vae)
    with pytest.raises(InvalidRequest) as info:
        apply_group_offload(WanPipeline.from_pretrained(tiny_checkpoint("wan-t2v")), "cpu", exclude=["unet"])
    assert info.value.field == "options.offload_exclude" and "transformer" in (info.value.allowed or "")
