"""LTX-Video's multi-scale flow (``--option multiscale=true``) on a tiny LTXConditionPipeline and a tiny
LTXLatentUpsamplerModel saved in the real layouts: a first pass at 2/3 of the size to latents, the latent upsampler
(2x), a short refine pass at twice the first pass's size, decoded and resized to the size asked for. Sources of the
recipe: docs/models.md, "LTX-Video multi-scale"."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.backends import get_backend
from kinema.errors import InvalidRequest, ModelNotFound

Tiny = Callable[[str], Path]
LTX_REPO = "Lightricks/LTX-Video-0.9.8-13B-distilled"
UPSAMPLER_REPO = "Lightricks/ltxv-spatial-upscaler-0.9.7"


def run(
    model: Path | str, size: tuple[int, int] = (96, 96), frames: int = 9, steps: int | None = 2, **fields: Any
) -> kinema.Result:
    options = {"device": "cpu", "max_sequence_length": 16, "multiscale": True, **fields.pop("options", {})}
    return kinema.generate(
        fields.pop("prompt", "a red ball on the sea"),
        backend="diffusers",
        model=str(model),
        width=size[0],
        height=size[1],
        num_frames=frames,
        num_inference_steps=steps,
        seed=3,
        options=options,
        **fields,
    )


def resolve(model: str, **fields: Any) -> Any:
    options = {"multiscale": True, **fields.pop("options", {})}
    request = kinema.VideoRequest(prompt="a cat", backend="diffusers", model=model, options=options, **fields)
    return get_backend("diffusers").resolve(request, 1)


def loaded() -> Any:
    backend: Any = get_backend("diffusers")
    return backend._loaded


def dtype_name(dtype: Any) -> str:
    return str(dtype).split(".")[-1]


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Each stage as it runs: ("pass", LTXConditionPipeline's kwargs), ("upsample", LTXLatentUpsamplePipeline's) and
    ("upsampler", the latents' shape and dtype and the model's dtype as LTXLatentUpsamplerModel.forward sees them).
    The real calls still run."""
    import diffusers
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    seen: list[tuple[str, dict[str, Any]]] = []
    for label, cls in (("pass", diffusers.LTXConditionPipeline), ("upsample", diffusers.LTXLatentUpsamplePipeline)):
        original = cls.__call__

        def spy(self: Any, *args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            seen.append((_label, kwargs))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", functools.wraps(original)(spy))
    forward = LTXLatentUpsamplerModel.forward

    def on_forward(self: Any, hidden_states: Any) -> Any:
        seen.append(
            (
                "upsampler",
                {
                    "shape": tuple(hidden_states.shape),
                    "dtype": dtype_name(hidden_states.dtype),
                    "model_dtype": dtype_name(self.dtype),
                },
            )
        )
        return forward(self, hidden_states)

    monkeypatch.setattr(LTXLatentUpsamplerModel, "forward", on_forward)
    yield seen


def seed_ltx_video(hf_home: Path, tiny: Tiny) -> None:
    """ltx-video and its upsampler in the hub cache, as 'kinema pull' of both repos leaves them."""
    from test_local_errors import seed_cache

    seed_cache(hf_home, LTX_REPO, tiny("ltx-condition"))
    seed_cache(hf_home, UPSAMPLER_REPO, tiny("ltx-upsampler"))


# -- the flow --------------------------------------------------------------------------------------------------------


def test_ltx_video_runs_the_authors_three_stages_in_bf16(
    _empty_hf_cache: Path, tiny_checkpoint: Tiny, stages: list[tuple[str, Any]]
) -> None:
    from kinema.backends.catalog import CATALOG

    seed_ltx_video(_empty_hf_cache, tiny_checkpoint)
    events: list[Any] = []
    # 160x128 (ltx-video takes 128 and up): first pass 96x64, refine 192x128, resized to 160x128
    result = run("ltx-video", size=(160, 128), steps=None, options={"dtype": "bfloat16"}, on_progress=events.append)
    assert result.video.frames.shape == (9, 128, 160, 3) and result.video.frames.std() > 0

    names = [name for name, _ in stages]
    assert names == ["pass", "upsample", "upsampler", "pass"]
    first, upsample, upsampler, refine = (kwargs for _, kwargs in stages)
    # 1. the first pass at int(size x 0.6666666) rounded down to 32, to latents, on the distilled 8-step schedule
    assert (first["width"], first["height"], first["output_type"]) == (96, 64, "latent")
    assert first["timesteps"] == [1000, 993, 987, 981, 975, 909, 725, 0.03] and first["guidance_scale"] == 1.0
    assert (first["decode_timestep"], first["image_cond_noise_scale"]) == (0.05, 0.025)
    # 2. the upsampler: AdaIN 1.0 and tone mapping 0.6 (diffusers' 0.9.8 example), latents out, 2x in latent space
    assert (upsample["adain_factor"], upsample["tone_map_compression_ratio"]) == (1.0, 0.6)
    assert (upsample["width"], upsample["height"], upsample["output_type"]) == (192, 128, "latent")
    assert upsample["latents"].shape[-2:] == (16, 24)  # the tiny VAE compresses 4x: 64 / 4, 96 / 4
    assert upsampler == {"shape": (1, 8, 3, 16, 24), "dtype": "bfloat16", "model_dtype": "bfloat16"}
    # 3. the refine pass at twice the first pass's size, from the upsampled latents, 4 of its 5 timesteps
    assert (refine["width"], refine["height"], refine["output_type"]) == (192, 128, "np")
    assert refine["latents"].shape[-2:] == (32, 48) and refine["denoise_strength"] == 0.999
    assert refine["timesteps"] == [1000, 909, 725, 421, 0] and refine["num_inference_steps"] == 5
    assert all(p[k] % 32 == 0 for p in (first, refine) for k in ("width", "height"))

    state = loaded()
    pipe_dtypes = {n: dtype_name(m.dtype) for n, m in state.pipe.components.items() if hasattr(m, "dtype")}
    assert set(pipe_dtypes.values()) == {"bfloat16"} and dtype_name(state.upsampler[1].dtype) == "bfloat16"
    steps = [(e.step, e.total) for e in events if e.stage == "denoising"]
    assert steps == [(i, 12) for i in range(1, 13)]  # 8 first-pass steps, then int(5 x 0.999) = 4 refine steps

    record = result.recipe["engine"]["multiscale"]
    assert record["upsampler"] == UPSAMPLER_REPO and len(record["upsampler_revision"]) == 40
    assert (record["first_pass"], record["refine_pass"], record["refine_strength"]) == ("96x64", "192x128", 0.999)
    assert record["refine_timesteps"] == [1000, 909, 725, 421, 0]
    assert result.recipe["options"]["_pipeline"]["multiscale"]["first_pass"] == "96x64"  # the plan says it too
    assert CATALOG["ltx-video"].multiscale is not None and CATALOG["ltx-video"].multiscale.upsampler == UPSAMPLER_REPO


def test_a_folder_with_the_upsampler_option_and_the_pipeline_stays_loaded(
    tiny_checkpoint: Tiny, stages: list[tuple[str, dict[str, Any]]]
) -> None:
    folder, ups = tiny_checkpoint("ltx-condition"), tiny_checkpoint("ltx-upsampler")
    single = run(folder, size=(96, 128), options={"multiscale": False})
    pipe = loaded().pipe
    assert loaded().upsampler is None and [n for n, _ in stages] == ["pass"]
    stages.clear()
    # 96x128: first pass 32x64 (int(96 x 0.6666666) = 63 -> 32), refine 64x128, resized to 96x128; the refine
    # recipe of diffusers' 0.9.7-dev example
    result = run(folder, size=(96, 128), options={"upsampler": str(ups)})
    assert result.video.frames.shape == (9, 128, 96, 3)
    first, _upsample, _forward, refine = (kwargs for _, kwargs in stages)
    assert (first["width"], first["height"], refine["width"], refine["height"]) == (32, 64, 64, 128)
    assert (refine["denoise_strength"], refine["num_inference_steps"]) == (0.4, 10) and "timesteps" not in refine
    assert loaded().pipe is pipe  # turning multiscale on loads the upsampler only
    model = loaded().upsampler[1]
    run(folder, size=(96, 128), options={"upsampler": str(ups)})
    assert loaded().upsampler[1] is model  # and the next run reuses it
    assert result.recipe["engine"]["multiscale"]["upsampler"] == "a local folder"
    assert not np.array_equal(single.video.frames, result.video.frames)
    # the upsampler saved on its own (the layout of a bare LTXLatentUpsamplerModel repo) loads the same
    again = run(folder, size=(96, 128), options={"upsampler": str(ups / "latent_upsampler")})
    assert np.array_equal(again.video.frames, result.video.frames)


def test_image_to_video_conditions_both_passes(
    tiny_checkpoint: Tiny, image_file: Path, stages: list[tuple[str, dict[str, Any]]]
) -> None:
    # with TaylorSeer, whose cached state must not leak from the first pass into the larger refine pass
    result = run(
        tiny_checkpoint("ltx-condition"),
        image=str(image_file),
        options={"upsampler": str(tiny_checkpoint("ltx-upsampler")), "cache": "taylorseer"},
    )
    assert result.video.frames.shape == (9, 96, 96, 3)
    passes = [kwargs for name, kwargs in stages if name == "pass"]
    assert len(passes) == 2 and all(p["image"] is passes[0]["image"] for p in passes)
    assert (passes[0]["width"], passes[1]["width"]) == (32, 64)


def test_the_memory_estimate_counts_the_upsampler_and_the_refine_size() -> None:
    import torch

    from kinema.backends.catalog import CATALOG
    from kinema.backends.diffusers import locate, memory_estimate, validate_options

    located = locate("ltx-video")
    dtypes = {"default": torch.bfloat16}
    work = CATALOG["ltx-video"].work_gb
    for offload in ("none", "model", "group", "sequential"):
        base = memory_estimate(located, validate_options({"offload": offload}), dtypes, (768, 512, 121))
        multi = memory_estimate(
            located, validate_options({"offload": offload, "multiscale": True}), dtypes, (768, 512, 121)
        )
        # 768x512: first pass 480x320, refine 960x640 (1.5625x the pixels): more activations, plus the upsampler
        extra_work = work * (960 * 640 / (768 * 512) - 1)
        upsampler = 0.126 * 2  # in bf16, whole on the GPU in every offload mode
        assert multi.gpu_gb == pytest.approx(base.gpu_gb + extra_work + upsampler, abs=0.02), offload
        assert multi.weights_gb == pytest.approx(base.weights_gb + 0.126 * 2, abs=0.02)


# -- refusals --------------------------------------------------------------------------------------------------------


def test_non_ltx_models_are_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve("wan2.1-t2v-1.3b")
    assert info.value.field == "options.multiscale" and "LTX-Video 0.9.7 / 0.9.8" in (info.value.allowed or "")


def test_ltx_0_9_0_checkpoints_are_refused(tiny_checkpoint: Tiny) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve(str(tiny_checkpoint("ltx")), options={"upsampler": str(tiny_checkpoint("ltx-upsampler"))})
    assert info.value.field == "options.multiscale" and "LTXPipeline" in info.value.message


def test_an_ltx_checkpoint_without_an_upsampler_is_refused(
    tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from kinema.backends.catalog import CATALOG

    with pytest.raises(InvalidRequest) as info:
        resolve(str(tiny_checkpoint("ltx-condition")))  # a folder: which LTX version it is, its files do not say
    assert info.value.field == "options.upsampler" and UPSAMPLER_REPO in (info.value.allowed or "")
    monkeypatch.setitem(CATALOG, "ltx-video", dataclasses.replace(CATALOG["ltx-video"], multiscale=None))
    with pytest.raises(InvalidRequest) as info:
        resolve("ltx-video")
    assert info.value.field == "options.upsampler"


def test_sizes_it_cannot_split_are_refused(tiny_checkpoint: Tiny) -> None:
    from kinema.backends.diffusers import multiscale_sizes

    options = {"upsampler": str(tiny_checkpoint("ltx-upsampler"))}
    with pytest.raises(InvalidRequest) as info:
        resolve(str(tiny_checkpoint("ltx-condition")), width=32, height=96, options=options)
    assert info.value.field == "width" and info.value.allowed == "64 or more with options.multiscale=true"
    assert multiscale_sizes(1216, 704, 0.6666666) == ((800, 448), (1600, 896))  # the authors' default size
    assert multiscale_sizes(768, 512, 0.6666666) == ((480, 320), (960, 640))
    assert multiscale_sizes(64, 64, 0.6666666) == ((32, 32), (64, 64))


@pytest.mark.parametrize(
    ("options", "fields", "field"),
    [
        ({"multiscale": False, "upsampler": UPSAMPLER_REPO}, {}, "options.upsampler"),
        ({"upsampler": "not a repo"}, {}, "options.upsampler"),
        ({"multiscale": "maybe"}, {}, "options.multiscale"),
        ({"cache": "magcache", "cache_ratios": [1.0, 0.9]}, {}, "options.cache"),
        ({}, {"source_video": "CLIP", "strength": 0.5}, "options.multiscale"),  # an edit
    ],
)
def test_options_it_cannot_take_are_refused(
    options: dict[str, Any], fields: dict[str, Any], field: str, tmp_path: Path
) -> None:
    if fields.get("source_video") == "CLIP":
        fields["source_video"] = tmp_path / "clip.mp4"
        kinema.Video(np.zeros((9, 32, 32, 3), np.uint8), fps=24).save(fields["source_video"])
    with pytest.raises(InvalidRequest) as info:
        resolve("ltx-video", options=options, **fields)
    assert info.value.field == field


def test_an_upsampler_not_here_is_named_before_loading(
    _empty_hf_cache: Path, tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_local_errors import seed_cache

    import kinema.backends.diffusers as backend_module

    seed_cache(_empty_hf_cache, LTX_REPO, tiny_checkpoint("ltx-condition"))
    loads: list[str] = []
    monkeypatch.setattr(backend_module.DiffusersBackend, "_pipeline", lambda *a: loads.append("load"))
    with pytest.raises(ModelNotFound) as info:
        run("ltx-video", size=(160, 128), steps=None)
    assert f"kinema pull {UPSAMPLER_REPO}" in info.value.message and loads == []


def test_an_upsampler_for_other_latents_is_refused(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    LTXLatentUpsamplerModel(in_channels=16, mid_channels=32, num_blocks_per_stage=1).save_pretrained(tmp_path / "u")
    with pytest.raises(InvalidRequest) as info:
        run(tiny_checkpoint("ltx-condition"), options={"upsampler": str(tmp_path / "u")})
    assert info.value.field == "options.upsampler" and "16-channel" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        run(tiny_checkpoint("ltx-condition"), options={"upsampler": str(tiny_checkpoint("ltx"))})
    assert info.value.field == "options.upsampler" and "LTXLatentUpsamplerModel" in info.value.message
