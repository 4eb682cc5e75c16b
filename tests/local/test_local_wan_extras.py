"""Issue 20 on the tiny Wan checkpoints: first-last-frame-to-video, a choice of scheduler, LoRAs from repos holding
several files; each checked for what a GPU user would feel (the dtypes as loaded, combinations that crash)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.backends import get_backend
from kinema.backends.catalog import CATALOG
from kinema.errors import InvalidRequest

torch = pytest.importorskip("torch")
Tiny = Callable[[str], Path]


def run(folder: Path | str, steps: int = 2, **fields: Any) -> kinema.Result:
    options = {"device": "cpu", "max_sequence_length": 32, **fields.pop("options", {})}
    return kinema.generate(
        "a red ball on the sea",
        backend="diffusers",
        model=str(folder),
        width=32,
        height=32,
        num_frames=5,
        num_inference_steps=steps,
        seed=3,
        options=options,
        **fields,
    )


def loaded_pipe() -> Any:
    return get_backend("diffusers")._loaded.pipe


@pytest.fixture
def latents_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The arguments WanImageToVideoPipeline.prepare_latents gets (the real method still runs)."""
    from diffusers import WanImageToVideoPipeline

    seen: list[dict[str, Any]] = []
    original = WanImageToVideoPipeline.prepare_latents

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        names = (
            "image",
            "batch_size",
            "num_channels_latents",
            "height",
            "width",
            "num_frames",
            "dtype",
            "device",
            "generator",
            "latents",
            "last_image",
        )
        seen.append({**dict(zip(names, args, strict=False)), **kwargs})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WanImageToVideoPipeline, "prepare_latents", functools.wraps(original)(spy))
    yield seen


@pytest.fixture(scope="module")
def last_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("last") / "last.png"
    Image.fromarray(np.full((40, 48, 3), (250, 20, 20), dtype=np.uint8)).save(path)  # red, unlike the first frame
    return path


# -- 1. first-last-frame-to-video ----------------------------------------------------------------------------------


def test_last_image_reaches_the_pipeline_in_bf16(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path, latents_calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    from PIL import Image

    folder = tiny_checkpoint("wan-flf2v")
    other = tmp_path / "other.png"
    Image.fromarray(np.full((40, 48, 3), (20, 20, 250), dtype=np.uint8)).save(other)
    plain = run(folder, image=str(image_file), options={"dtype": "bfloat16", "last_image": str(other)})
    both = run(folder, image=str(image_file), options={"dtype": "bfloat16", "last_image": str(last_file)})
    last = latents_calls[-1]["last_image"]
    # the preprocessed last frame, at the clip's size; diffusers keeps it float32 for the VAE encode
    assert tuple(last.shape) == (1, 3, 32, 32) and last.dtype == torch.float32
    assert last[0, 0].mean() > 0.9 and last[0, 1].mean() < -0.8  # red in [-1, 1]: it is our file, not the first
    assert both.video.frames.shape == plain.video.frames.shape == (5, 32, 32, 3)
    assert not np.array_equal(both.video.frames, plain.video.frames)
    pipe = loaded_pipe()  # the dtypes as loaded: a GPU user's bf16 transformer, Wan's float32 VAE and CLIP
    assert pipe.transformer.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32 and pipe.image_encoder.dtype == torch.float32
    assert both.recipe["options"]["last_image"] == str(last_file)


def test_last_image_does_not_reload_the_pipeline(tiny_checkpoint: Tiny, image_file: Path, last_file: Path) -> None:
    folder = tiny_checkpoint("wan-flf2v")
    run(folder, image=str(image_file), options={"last_image": str(image_file)})
    first = loaded_pipe()
    run(folder, image=str(image_file), options={"last_image": str(last_file)})
    assert loaded_pipe() is first  # a call argument, not a load option


def test_generate_refuses_a_last_image_the_transformer_cannot_take(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path
) -> None:
    """The same rule holds for a caller that hands generate() parameters without resolve()'s model check."""
    from kinema.backends.base import GenerationContext
    from kinema.progress import ProgressTracker

    backend = get_backend("diffusers")
    request = kinema.VideoRequest(
        prompt="a cat",
        backend="diffusers",
        model=str(tiny_checkpoint("wan-i2v")),
        image=str(image_file),
        width=32,
        height=32,
        num_frames=5,
        num_inference_steps=1,
        options={"device": "cpu", "max_sequence_length": 32},
    )
    params = backend.resolve(request, 1)
    params.image = np.zeros((32, 32, 3), dtype=np.uint8)
    params.options["_resolved"]["last_image"] = str(last_file)
    with pytest.raises(InvalidRequest) as info:
        backend.generate(params, GenerationContext(progress=ProgressTracker(None)))
    assert info.value.field == "options.last_image" and "first frame only" in str(info.value)


def test_flf2v_without_a_last_image_is_refused(tiny_checkpoint: Tiny, image_file: Path) -> None:
    """diffusers' FLF2V transformer fails on one image's CLIP tokens (a view to two images' length)."""
    from kinema.backends.diffusers import check_model_options, locate, validate_options

    request = kinema.VideoRequest(
        prompt="a cat", backend="diffusers", model=str(tiny_checkpoint("wan-flf2v")), image=str(image_file)
    )
    with pytest.raises(InvalidRequest) as info:
        get_backend("diffusers").resolve(request, 1)
    assert info.value.field == "options.last_image" and "two images" in str(info.value)
    with pytest.raises(InvalidRequest):
        check_model_options(locate("wan2.1-flf2v-14b-720p"), validate_options({}), set(), "i2v")


@pytest.mark.parametrize(
    ("model", "mode", "why"),
    [
        ("wan-t2v", "t2v", "--image"),
        ("wan22-ti2v", "t2v", "--image"),
        ("wan22-ti2v", "i2v", "expand_timesteps"),
        ("cogvideox-i2v", "i2v", "takes no last frame"),
        ("wan-i2v", "i2v", "first frame only"),
    ],  # diffusers' transformer would crash mid-call on two CLIP images
)
def test_last_image_is_refused_where_it_would_do_nothing(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path, model: str, mode: str, why: str
) -> None:
    fields: dict[str, Any] = {"image": str(image_file)} if mode == "i2v" else {}
    request = kinema.VideoRequest(
        prompt="a cat",
        backend="diffusers",
        model=str(tiny_checkpoint(model)),
        options={"last_image": str(last_file)},
        **fields,
    )
    with pytest.raises(InvalidRequest) as info:
        get_backend("diffusers").resolve(request, 1)
    assert info.value.field == "options.last_image" and why in str(info.value) and info.value.allowed


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("https://example.com/last.png", "URL"),
        ("/no/such/last.png", "not an existing file"),
        (__file__, "not a readable image"),
    ],
)
def test_last_image_must_be_a_local_image(value: str, why: str) -> None:
    from kinema.backends.diffusers import validate_options

    with pytest.raises(InvalidRequest) as info:
        validate_options({"last_image": value})
    assert info.value.field == "options.last_image" and why in str(info.value) and "local image" in info.value.allowed


def test_wan21_i2v_with_a_last_image_crashes_in_diffusers(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path
) -> None:
    """Why the refusal above exists: let through, the request dies inside the transformer (as on a GPU)."""
    from diffusers import WanImageToVideoPipeline
    from PIL import Image

    pipe = WanImageToVideoPipeline.from_pretrained(tiny_checkpoint("wan-i2v"))
    with pytest.raises(RuntimeError, match="Sizes of tensors"):
        pipe(
            image=Image.open(image_file),
            prompt="a cat",
            last_image=Image.open(last_file),
            height=32,
            width=32,
            num_frames=5,
            num_inference_steps=1,
            max_sequence_length=32,
        )


def test_catalog_models_say_whether_they_take_a_last_frame() -> None:
    from kinema.backends.diffusers import check_model_options, locate, validate_options

    opts = validate_options({})
    opts["last_image"] = "x.png"  # the path was checked by validate_options; only the model matters here
    for model in ("wan2.1-flf2v-14b-720p", "wan2.2-i2v-a14b"):
        check_model_options(locate(model), opts, {"last_image"}, "i2v")
    for model in ("wan2.1-i2v-14b-480p", "wan2.2-ti2v-5b", "cogvideox-5b-i2v", "ltx-video"):
        with pytest.raises(InvalidRequest) as info:
            check_model_options(locate(model), opts, {"last_image"}, "i2v")
        assert info.value.field == "options.last_image"


def test_flf2v_catalog_entry_has_the_authors_defaults() -> None:
    entry = CATALOG["wan2.1-flf2v-14b-720p"]
    assert entry.repo == "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers" and entry.pipeline == "WanImageToVideoPipeline"
    assert (entry.default_steps, entry.flow_shift, entry.default_guidance) == (50, 16.0, 5.0)
    assert entry.default_size == (1280, 720) and entry.default_frames == 81
    assert entry.modes == ("i2v", "extend", "keyframes")


# -- 3. scheduler ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["FlowMatchEulerDiscreteScheduler", "dpmsolvermultistep"])
def test_chosen_scheduler_is_what_runs_and_keeps_the_shift(
    tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import diffusers

    stepped: list[str] = []
    for cls_name in ("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler", "DPMSolverMultistepScheduler"):
        cls = getattr(diffusers, cls_name)
        original = cls.step

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            stepped.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "step", spy)
    result = run(tiny_checkpoint("wan-t2v"), options={"scheduler": name, "shift": 7.0})
    scheduler = loaded_pipe().scheduler
    chosen = "FlowMatchEulerDiscreteScheduler" if name.startswith("Flow") else "DPMSolverMultistepScheduler"
    assert type(scheduler).__name__ == chosen and result.recipe["options"]["scheduler"] == name
    assert set(stepped) == {chosen} and len(stepped) == 2
    if chosen == "DPMSolverMultistepScheduler":  # flow matching kept: flow sigmas, flow prediction, the shift
        assert scheduler.config.use_flow_sigmas and scheduler.config.prediction_type == "flow_prediction"
        assert scheduler.config.flow_shift == 7.0
    else:
        assert scheduler.config.shift == 7.0
    assert result.video.frames.shape == (5, 32, 32, 3) and result.video.frames.std() > 0


def test_every_listed_wan_scheduler_builds_and_steps(tiny_checkpoint: Tiny) -> None:
    from diffusers import UniPCMultistepScheduler

    from kinema.backends.diffusers import _set_scheduler, scheduler_choices

    config = dict(UniPCMultistepScheduler.load_config(tiny_checkpoint("wan-t2v") / "scheduler"))
    choices = scheduler_choices(UniPCMultistepScheduler, config)
    # the flow-matching ones only: Euler/DDIM/PNDM from diffusers' compatibles list would silently drop flow sigmas
    wanted = {"UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler", "DPMSolverMultistepScheduler"}
    assert wanted <= set(choices)
    assert "EulerDiscreteScheduler" not in choices and "PNDMScheduler" not in choices
    for name in choices:
        holder = type("P", (), {})()
        holder.scheduler = UniPCMultistepScheduler.from_config(config)
        _set_scheduler(holder, name)
        assert type(holder.scheduler).__name__ == name
        holder.scheduler.set_timesteps(4)
        sample = torch.randn(1, 16, 2, 4, 4)
        out = holder.scheduler.step(torch.randn_like(sample), holder.scheduler.timesteps[0], sample).prev_sample
        assert out.shape == sample.shape and torch.isfinite(out).all()


def test_incompatible_scheduler_is_refused_with_the_allowed_ones(tiny_checkpoint: Tiny) -> None:
    with pytest.raises(InvalidRequest) as info:
        run(tiny_checkpoint("wan-t2v"), options={"scheduler": "EulerDiscreteScheduler"})
    assert info.value.field == "options.scheduler"
    assert "FlowMatchEulerDiscreteScheduler" in info.value.allowed and "UniPCMultistepScheduler" in info.value.allowed
    with pytest.raises(InvalidRequest) as info:
        run(tiny_checkpoint("wan-t2v"), options={"scheduler": "no such; thing"})
    assert info.value.field == "options.scheduler" and "class name" in str(info.value)


# -- 2. LoRA weight files ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_folder(tiny_checkpoint: Tiny, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A folder holding two LoRA files for the tiny Wan transformer (as lightx2v's repos hold several)."""
    pytest.importorskip("peft")
    from diffusers import WanPipeline, WanTransformer3DModel
    from peft import LoraConfig, get_peft_model_state_dict

    folder = tmp_path_factory.mktemp("loras")
    states = {}
    for seed, name in ((1, "style.safetensors"), (2, "steps.safetensors")):
        torch.manual_seed(seed)
        net = WanTransformer3DModel.from_pretrained(tiny_checkpoint("wan-t2v") / "transformer")
        net.add_adapter(
            LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
        )
        states[name] = {k: v.clone() for k, v in get_peft_model_state_dict(net).items()}
        WanPipeline.save_lora_weights(folder, transformer_lora_layers=states[name], weight_name=name)
    return folder, states


def test_lora_weight_name_picks_one_file_of_several(
    tiny_checkpoint: Tiny, lora_folder: tuple[Path, dict[str, Any]]
) -> None:
    folder, states = lora_folder
    key = next(k for k in states["steps.safetensors"] if k.endswith("blocks.0.attn1.to_q.lora_B.weight"))
    result = run(tiny_checkpoint("wan-t2v"), options={"lora": f"{folder}::steps.safetensors:0.8"})
    q = loaded_pipe().transformer.blocks[0].attn1.to_q
    assert torch.equal(q.lora_B["kinema_lora_0"].weight, states["steps.safetensors"][key])
    assert not torch.equal(q.lora_B["kinema_lora_0"].weight, states["style.safetensors"][key])
    assert q.scaling["kinema_lora_0"] == pytest.approx(0.8)
    assert loaded_pipe().transformer.dtype == torch.float32 and result.video.frames.shape == (5, 32, 32, 3)


def test_lora_weight_name_parsing_and_refusals(lora_folder: tuple[Path, dict[str, Any]]) -> None:
    from kinema.backends.diffusers import parse_lora

    folder, _states = lora_folder
    assert parse_lora(["org/repo::lora.safetensors:0.8", f"{folder}::style.safetensors", "org/repo"]) == [
        ("org/repo", 0.8, "lora.safetensors"),
        (str(folder), 1.0, "style.safetensors"),
        ("org/repo", 1.0, None),
    ]
    with pytest.raises(InvalidRequest) as info:
        parse_lora(f"{folder}::missing.safetensors")
    assert info.value.field == "options.lora" and f"{folder}::steps.safetensors" in info.value.allowed
    assert parse_lora("org/repo::loras/x.safetensors") == [("org/repo", 1.0, "loras/x.safetensors")]
    for bad in ("org/repo::", "org/repo::../x.safetensors", "org/repo::/etc/x.safetensors", "org/repo::x.bin:0.5"):
        with pytest.raises(InvalidRequest) as info:
            parse_lora(bad)
        assert info.value.field == "options.lora" and "::" in info.value.allowed


# -- 4. MagCache -----------------------------------------------------------------------------------------------------


def test_magcache_calibrates_then_runs_with_the_ratios(
    tiny_checkpoint: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("diffusers.hooks.mag_cache")
    import json

    ratios = tmp_path / "wan.magcache.json"
    calibrated = run(
        tiny_checkpoint("wan-t2v"),
        steps=6,
        options={"cache": "magcache", "cache_calibrate": True, "cache_ratios": str(ratios), "cache_threshold": 1.0},
    )
    assert "[MagCache]" not in capsys.readouterr().out  # diffusers' print() kept off Kinema's stdout
    saved = json.loads(ratios.read_text())
    assert saved["num_inference_steps"] == 6 and len(saved["mag_ratios"]) == 6
    assert all(r > 0 for r in saved["mag_ratios"])
    assert any("written to" in w for w in calibrated.warnings)
    net = loaded_pipe().transformer
    # a threshold high enough to skip: fewer block passes than steps x CFG passes
    passes = {"n": 0}
    # (a hook on the block itself fires either way: MagCache replaces its forward, not its __call__)
    handle = net.blocks[1].attn1.register_forward_hook(lambda *a: passes.__setitem__("n", passes["n"] + 1))
    try:
        fast = run(
            tiny_checkpoint("wan-t2v"),
            steps=6,
            options={"cache": "magcache", "cache_ratios": str(ratios), "cache_threshold": 1.0},
        )
    finally:
        handle.remove()
    assert loaded_pipe() is not None and loaded_pipe().transformer is net  # the same pipeline: ratios are per call
    assert net.is_cache_enabled and 0 < passes["n"] < 12
    assert fast.video.frames.shape == (5, 32, 32, 3) and fast.video.frames.std() > 0


def test_magcache_combines_with_compile_fullgraph_off(tiny_checkpoint: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.models.modeling_utils import ModelMixin

    original = ModelMixin.compile_repeated_blocks
    chosen: list[bool] = []

    def eager(self: Any, **kw: Any) -> None:  # the real Dynamo trace (test_local_gpu_defaults compiles with inductor)
        chosen.append(kw["fullgraph"])
        original(self, **{**kw, "backend": "eager"})

    monkeypatch.setattr(ModelMixin, "compile_repeated_blocks", eager)
    result = run(
        tiny_checkpoint("wan-t2v"),
        steps=3,
        options={"cache": "magcache", "cache_ratios": [1.0, 0.99, 0.98], "compile": True},
    )
    assert chosen == [False]  # MagCache's hooks are torch.compiler.disable'd: a fullgraph trace would fail
    assert result.video.frames.shape == (5, 32, 32, 3) and result.video.frames.std() > 0


@pytest.mark.parametrize(
    ("options", "field", "why"),
    [
        ({"cache": "magcache"}, "options.cache_ratios", "calibrate once"),
        ({"cache": "magcache", "cache_ratios": [1.0, "x"]}, "options.cache_ratios", "positive"),
        ({"cache": "magcache", "cache_ratios": "/no/such.json"}, "options.cache_ratios", "could not read"),
        (
            {"cache": "magcache", "cache_calibrate": True, "cache_ratios": "/no/dir/r.json"},
            "options.cache_ratios",
            "existing folder",
        ),
        (
            {"cache": "magcache", "cache_calibrate": True, "cache_ratios": "ratios.txt"},
            "options.cache_ratios",
            ".json",
        ),
        (
            {"cache": "magcache", "cache_calibrate": True, "cache_ratios": str(Path(__file__).parent / "conftest.py")},
            "options.cache_ratios",
            ".json",
        ),
        ({"cache": "firstblock", "cache_ratios": [1.0, 1.0]}, "options.cache_ratios", "cache=magcache"),
        ({"cache_calibrate": True}, "options.cache_calibrate", "cache=magcache"),
    ],
)
def test_magcache_needs_ratios_or_calibration(options: dict[str, Any], field: str, why: str) -> None:
    from kinema.backends.diffusers import validate_options

    with pytest.raises(InvalidRequest) as info:
        validate_options(options)
    assert info.value.field == field and why in str(info.value) and info.value.allowed


def test_calibration_never_overwrites_a_file_it_did_not_write(tmp_path: Path) -> None:
    from kinema.backends.diffusers import validate_options

    other = tmp_path / "settings.json"
    other.write_text('{"keep": true}')
    with pytest.raises(InvalidRequest) as info:
        validate_options({"cache": "magcache", "cache_calibrate": True, "cache_ratios": str(other)})
    assert info.value.field == "options.cache_ratios" and "not a MagCache ratios file" in str(info.value)
    assert other.read_text() == '{"keep": true}'
    ours = tmp_path / "wan.magcache.json"
    ours.write_text('{"mag_ratios": [1.0, 0.9]}')  # an earlier calibration's file may be recalibrated
    assert validate_options({"cache": "magcache", "cache_calibrate": True, "cache_ratios": str(ours)})["cache_ratios"]


def test_magcache_on_two_experts_is_refused(tiny_checkpoint: Tiny) -> None:
    with pytest.raises(InvalidRequest) as info:
        run(tiny_checkpoint("wan22-a14b"), options={"cache": "magcache", "cache_ratios": [1.0, 1.0]})
    assert info.value.field == "options.cache" and "two experts" in str(info.value)
