"""Memory, speed, progress and cancel options of the diffusers backend, on the tiny Wan checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.backends import get_backend
from kinema.errors import Cancelled, InvalidRequest


def wan(tiny_checkpoint: Callable[[str], Path], steps: int = 2, **fields: Any) -> kinema.Result:
    # a short text length keeps the tiny UMT5 cheap; the loader and call path are the same as with the default 512
    options = {"device": "cpu", "max_sequence_length": 32, **fields.pop("options", {})}
    return kinema.generate(
        "a red ball on the sea",
        backend="diffusers",
        model=str(tiny_checkpoint("wan-t2v")),
        width=32,
        height=32,
        num_frames=5,
        num_inference_steps=steps,
        seed=7,
        options=options,
        **fields,
    )


def loaded_pipe() -> Any:
    return get_backend("diffusers")._loaded.pipe


def test_cache_on_and_off_give_valid_clips(tiny_checkpoint: Callable[[str], Path]) -> None:
    off = wan(tiny_checkpoint, steps=3)
    assert not loaded_pipe().transformer.is_cache_enabled
    for cache in ("firstblock", "taylorseer"):
        on = wan(tiny_checkpoint, steps=3, options={"cache": cache, "cache_threshold": 0.5})
        assert loaded_pipe().transformer.is_cache_enabled
        assert on.video.frames.shape == (5, 32, 32, 3) and on.video.frames.std() > 0
        assert on.recipe["options"]["cache"] == cache
    assert off.video.frames.shape == (5, 32, 32, 3) and off.video.frames.std() > 0


def test_cache_on_a_unet_model_is_refused(tiny_checkpoint: Callable[[str], Path]) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.generate(
            "a cat",
            backend="diffusers",
            model=str(tiny_checkpoint("modelscope")),
            width=32,
            height=32,
            num_frames=4,
            num_inference_steps=2,
            options={"device": "cpu", "cache": "firstblock"},
        )
    assert info.value.field == "options.cache"


def test_progress_events_count_the_steps(tiny_checkpoint: Callable[[str], Path]) -> None:
    events: list[Any] = []
    wan(tiny_checkpoint, steps=3, on_progress=events.append)
    steps = [(e.step, e.total) for e in events if e.stage == "denoising"]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert events[-1].stage == "done"


def test_cancel_stops_within_a_step(tiny_checkpoint: Callable[[str], Path]) -> None:
    token = kinema.CancelToken()
    seen: list[int] = []
    wan(tiny_checkpoint)  # load first, so the counter below sees only the cancelled run
    calls = {"n": 0}
    handle = loaded_pipe().transformer.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))

    def on_progress(event: Any) -> None:
        if event.stage == "denoising":
            seen.append(event.step)
            if event.step == 2:
                token.cancel()

    try:
        with pytest.raises(Cancelled):
            wan(tiny_checkpoint, steps=8, on_progress=on_progress, cancel=token)
    finally:
        handle.remove()
    assert seen == [1, 2]
    assert calls["n"] == 2 * 2  # two steps, each a conditional and an unconditional forward; none after the cancel
    assert loaded_pipe()._interrupt


def test_vae_tiling_and_slicing(tiny_checkpoint: Callable[[str], Path]) -> None:
    result = wan(tiny_checkpoint, options={"vae_tiling": True, "vae_slicing": "true"})
    vae = loaded_pipe().vae
    assert vae.use_tiling and vae.use_slicing
    assert result.video.frames.shape == (5, 32, 32, 3)


def test_vae_tiling_unsupported_by_svd(tiny_checkpoint: Callable[[str], Path], image_file: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.generate(
            "x",
            backend="diffusers",
            model=str(tiny_checkpoint("svd")),
            image=str(image_file),
            width=32,
            height=32,
            num_frames=4,
            num_inference_steps=2,
            options={"device": "cpu", "vae_tiling": True},
        )
    assert info.value.field == "options.vae_tiling" and "AutoencoderKLTemporalDecoder" in info.value.message


def test_offload_needs_a_gpu(tiny_checkpoint: Callable[[str], Path]) -> None:
    with pytest.raises(InvalidRequest) as info:
        wan(tiny_checkpoint, options={"offload": "model"})
    assert info.value.field == "options.offload" and "none" in info.value.message


def test_group_offload_hooks_run_the_pipeline(tiny_checkpoint: Callable[[str], Path]) -> None:
    from diffusers import WanPipeline

    from kinema.backends.diffusers import apply_group_offload

    pipe = WanPipeline.from_pretrained(tiny_checkpoint("wan-t2v"))
    apply_group_offload(pipe, "cpu")
    from diffusers.hooks import HookRegistry

    assert HookRegistry.check_if_exists_or_initialize(pipe.transformer).hooks  # the offload hooks are in place
    out = pipe("a cat", height=32, width=32, num_frames=5, num_inference_steps=2, output_type="np").frames
    assert np.asarray(out).shape == (1, 5, 32, 32, 3)


def test_compile_uses_regional_compilation(
    tiny_checkpoint: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers.models.modeling_utils import ModelMixin

    compiled: list[str] = []
    monkeypatch.setattr(ModelMixin, "compile_repeated_blocks", lambda self, **kw: compiled.append(type(self).__name__))
    result = wan(tiny_checkpoint, options={"compile": True})
    assert compiled == ["WanTransformer3DModel"]
    assert result.video.frames.shape == (5, 32, 32, 3)


def make_lora(folder: Path, out: Path) -> Path:
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = WanPipeline.from_pretrained(folder)
    pipe.transformer.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    with __import__("torch").no_grad():
        for name, param in pipe.transformer.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    WanPipeline.save_lora_weights(out, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    return out / "pytorch_lora_weights.safetensors"


def test_lora_with_scales(tiny_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    pytest.importorskip("peft")
    lora = make_lora(tiny_checkpoint("wan-t2v"), tmp_path / "lora")
    base = wan(tiny_checkpoint).video.frames
    zero = wan(tiny_checkpoint, options={"lora": f"{lora}:0"}).video.frames
    full = wan(tiny_checkpoint, options={"lora": [f"{lora}:1.5"]}).video.frames
    assert np.abs(zero.astype(int) - base.astype(int)).max() <= 2  # scale 0: the base model (up to encoding)
    assert np.abs(full.astype(int) - base.astype(int)).max() > 3  # the LoRA changes the clip


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cache": "fast"}, "options.cache"),
        ({"offload": "disk"}, "options.offload"),
        ({"device": "tpu"}, "options.device"),
        ({"device": "cuda"}, "options.device"),
        ({"dtype": "int8"}, "options.dtype"),
        ({"vae_tiling": "maybe"}, "options.vae_tiling"),
        ({"lora": "/no/such/file.safetensors:0.5"}, "options.lora"),
        ({"lora": "style.safetensors:99"}, "options.lora"),
        ({"cache_threshold": 3}, "options.cache_threshold"),
        ({"warp_speed": True}, "options.warp_speed"),
    ],
)
def test_bad_options_name_the_option(
    options: dict[str, Any], field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "style.safetensors").write_bytes(b"")
    with pytest.raises(InvalidRequest) as info:
        req = kinema.VideoRequest(prompt="a cat", backend="diffusers", options=options)
        backend = get_backend("diffusers")
        params = backend.resolve(req, 1)
        from kinema.backends.diffusers import pick_device

        pick_device(params.options["_resolved"]["device"])
    assert info.value.field == field
    assert info.value.allowed


def test_lora_paths_keep_windows_drive_letters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kinema.backends.diffusers import parse_lora

    monkeypatch.chdir(tmp_path)  # "C:/loras/..." is a relative path here; make it exist
    (tmp_path / "C:" / "loras").mkdir(parents=True)
    (tmp_path / "C:" / "loras" / "a.safetensors").write_bytes(b"")
    assert parse_lora(["C:/loras/a.safetensors:0.7", "org/name"]) == [
        ("C:/loras/a.safetensors", 0.7, None),
        ("org/name", 1.0, None),
    ]


def test_dtype_and_device_defaults() -> None:
    import torch

    from kinema.backends.diffusers import pick_device, pick_dtype

    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cpu", "cuda", "mps")
