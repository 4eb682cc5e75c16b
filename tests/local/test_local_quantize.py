"""Quantization of the diffusers backend on the tiny Wan: what a GPU user would feel, checked on a CPU.

Each mode that runs on a CPU (torchao int8, layerwise fp8, a GGUF transformer file) must store the weights the way it
says, give a clip close to the unquantized one, lower the memory estimate, and combine with the other speed options;
each mode that cannot run here (bitsandbytes, torchao fp8) and each combination Kinema does not support is refused up
front, naming the option and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.backends import get_backend
from kinema.backends.diffusers import component_dtypes, locate, memory_estimate, validate_options
from kinema.errors import InvalidRequest

pytest.importorskip("torchao")
torch = pytest.importorskip("torch")

Tiny = Callable[[str], Path]


def wan(tiny_checkpoint: Tiny, **options: Any) -> np.ndarray:
    result = kinema.generate(
        "a red ball on the sea",
        backend="diffusers",
        model=str(tiny_checkpoint("wan-t2v")),
        width=32,
        height=32,
        num_frames=5,
        num_inference_steps=2,
        seed=7,
        options={"device": "cpu", "max_sequence_length": 32, **options},
    )
    return result.video.frames.astype(np.float32)


def pipe() -> Any:
    return get_backend("diffusers")._loaded.pipe


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Tiny) -> np.ndarray:
    return wan(tiny_checkpoint)


def test_int8_stores_int8_weights_and_stays_close(tiny_checkpoint: Tiny, reference: np.ndarray) -> None:
    out = wan(tiny_checkpoint, quantize="int8")
    weight = pipe().transformer.blocks[0].attn1.to_q.weight
    assert "Int8" in type(weight).__name__  # a torchao int8 tensor, not a float one
    assert type(pipe().text_encoder.shared.weight).__name__ == "Parameter"  # only the denoiser by default
    assert np.abs(out - reference).mean() < 2.0  # 0-255 levels


def test_int8_reaches_the_text_encoder_when_asked(tiny_checkpoint: Tiny) -> None:
    wan(tiny_checkpoint, quantize="int8", quantize_components="transformer,text_encoder")
    ffn = pipe().text_encoder.encoder.block[0].layer[1].DenseReluDense.wi_0.weight
    assert "Int8" in type(ffn).__name__


def test_fp8_layerwise_stores_float8_and_computes_in_the_pipeline_dtype(
    tiny_checkpoint: Tiny, reference: np.ndarray
) -> None:
    out = wan(tiny_checkpoint, quantize="fp8_layerwise")
    transformer = pipe().transformer
    assert transformer.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert transformer.patch_embedding.weight.dtype == torch.float32  # the model's skip list: embeddings stay
    assert np.abs(out - reference).mean() < 4.0


def test_gguf_transformer_file_loads_q8_weights(tiny_checkpoint: Tiny, reference: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    from tiny_checkpoints import write_wan_gguf

    path, quantized = write_wan_gguf(tiny_checkpoint("wan-t2v"), tmp_path / "tiny-wan-Q8_0.gguf")
    assert quantized > 0
    out = wan(tiny_checkpoint, transformer_file=str(path))
    weight = pipe().transformer.blocks[0].ffn.net[2].weight
    assert type(weight).__name__ == "GGUFParameter" and int(weight.quant_type) == 8  # Q8_0
    assert np.abs(out - reference).mean() < 2.0


def test_quantization_combines_with_cache_and_lora(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    """The last review found a crash where two speed options met: every CPU mode with a cache hook."""
    for mode in ("int8", "fp8_layerwise"):
        out = wan(tiny_checkpoint, quantize=mode, cache="firstblock", cache_threshold=0.5)
        assert out.shape == (5, 32, 32, 3) and out.std() > 0
        assert pipe().transformer.is_cache_enabled


def test_compile_keeps_fullgraph_only_where_nothing_dequantizes_in_a_hook() -> None:
    from kinema.backends.diffusers import compile_fullgraph

    def opts(**kw: Any) -> dict[str, Any]:
        return validate_options({"device": "cpu", **kw})

    assert compile_fullgraph(opts(quantize="int8"))
    assert not compile_fullgraph(opts(quantize="fp8_layerwise"))
    assert not compile_fullgraph(opts(quantize="bnb4"))


def test_memory_estimate_follows_the_quantization() -> None:
    located = locate("wan2.1-t2v-14b")  # the catalog's parameter counts; no weights needed
    dtypes = component_dtypes(located, "bfloat16", "cpu")

    def gb(**kw: Any) -> float:
        opts = validate_options({"device": "cpu", **kw})
        return memory_estimate(located, opts, dtypes, (832, 480, 81)).weights_gb

    full, int8, nf4 = gb(), gb(quantize="int8"), gb(quantize="bnb4")
    assert nf4 < int8 < full
    assert full - int8 == pytest.approx(14.0, abs=0.5)  # 14B parameters from 2 bytes to 1


def test_catalog_lists_memory_per_offload_and_quantization() -> None:
    from kinema.backends.catalog import CATALOG

    table = CATALOG["wan2.1-t2v-14b"].to_dict()["memory_gb"]
    assert set(table) == {"none", "model", "group", "sequential"}
    assert table["none"]["bnb4"] < table["none"]["int8"] < table["none"]["16bit"]
    assert "int8" not in table["sequential"]  # refused combinations are not advertised


@pytest.mark.parametrize(
    ("options", "field", "allowed"),
    [
        ({"quantize": "int3"}, "options.quantize", "int8"),
        ({"quantize": "bnb4"}, "options.quantize", "fp8_layerwise"),  # CUDA only: refused on this CPU
        ({"quantize": "nf4"}, "options.quantize", "int8"),
        ({"quantize": "fp8"}, "options.quantize", "int8"),
        ({"quantize_components": "text_encoder"}, "options.quantize_components", "quantize=int8"),
        ({"quantize": "int8", "quantize_components": "unet"}, "options.quantize_components", "transformer"),
        ({"transformer_file": "/no/such/file.gguf"}, "options.transformer_file", ".gguf"),
        ({"transformer_file": "weights.bin"}, "options.transformer_file", ".gguf"),
        ({"quantize": "int8", "offload": "sequential"}, "options.offload", "model"),
        ({"quantize": "int8", "offload": "group"}, "options.offload", "fp8_layerwise"),
    ],
)
def test_bad_quantization_options_are_refused_up_front(
    tiny_checkpoint: Tiny, options: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        wan(tiny_checkpoint, **options)
    assert info.value.field == field
    assert allowed in str(info.value.allowed)


def test_a_second_transformer_file_needs_a_second_transformer(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    path = tmp_path / "low-noise.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(InvalidRequest) as info:
        wan(tiny_checkpoint, transformer_2_file=str(path))
    assert info.value.field == "options.transformer_2_file"
