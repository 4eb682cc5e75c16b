"""bench/gpu_wan.py: its CPU smoke mode runs every setup's code path on a tiny checkpoint; without CUDA it refuses."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_wan.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_wan_bench", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_measures_every_setup_side_by_side(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("diffusers")
    pytest.importorskip("torchao")
    from diffusers.models.modeling_utils import ModelMixin

    # inductor on 2 CPU cores takes ~40 s per setup: record the compile calls instead (test_local_gpu_defaults.py
    # compiles for real); what matters here is which setups ask for it and how
    compiled: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        ModelMixin,
        "compile_repeated_blocks",
        lambda self, **kw: compiled.append((type(self).__name__, kw["fullgraph"])),
    )
    loaded: list[Any] = []
    import kinema.backends.diffusers as backend

    original = backend.DiffusersBackend._pipeline

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        pipe = original(self, *args, **kwargs)
        loaded.append(pipe)
        return pipe

    monkeypatch.setattr(backend.DiffusersBackend, "_pipeline", spy)
    bench = load()
    assert bench.main(["--tiny", "--json", "--steps", "1", "--folder", str(tmp_path / "ckpt")]) == 0
    figures = json.loads(capsys.readouterr().out)
    rows = {r["setup"]: r for r in figures["rows"]}
    assert list(rows) == list(bench.SETUPS)
    ran = [name for name, r in rows.items() if not r["skipped"]]
    # CPU: the CUDA-only quantization modes are listed with Kinema's reason, the rest are measured
    assert {name for name, r in rows.items() if r["skipped"]} == {"kinema-fp8", "kinema-bnb8", "kinema-bnb4"}
    assert "CUDA" in rows["kinema-bnb4"]["skipped"]
    for name in ran:
        assert rows[name]["frames"] == 5 and rows[name]["clip_s"] > 0 and rows[name]["first_clip_s"] > 0
    # the plain compile row compiles full-graph; Kinema's rows go through its loader (with fullgraph off where a
    # cache hook or a layerwise-casting hook sits in the forward)
    assert compiled.count(("WanTransformer3DModel", True)) == 3  # diffusers-compile, kinema-fast, kinema-int8
    assert compiled.count(("WanTransformer3DModel", False)) == 2  # kinema-fbcache, kinema-fp8_layerwise
    # the Kinema rows really ran the backend's loader with their options: the int8 row's weights are int8
    assert len(loaded) >= 5
    assert any("Int8" in type(p.transformer.blocks[0].attn1.to_q.weight).__name__ for p in loaded)
    assert all(p.vae.dtype == torch.float32 for p in loaded)
    table = bench.table([bench.Row(**r) for r in figures["rows"]])
    assert table.count("\n") == len(bench.SETUPS) + 1 and "not run: options.quantize" in table


def test_unknown_setup_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert load().main(["--tiny", "--setups", "diffusers,warp"]) == 2
    assert "warp" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_refuses_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert load().main([]) == 2
    err = capsys.readouterr().err
    assert "needs CUDA" in err and "--tiny" in err


def test_parallel_tiny_run_times_one_and_two_processes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """bench/gpu_parallel.py --tiny: plain diffusers, Kinema in one process and a 2-process Ulysses group (gloo),
    each timed by its step events, on the same tiny checkpoint."""
    pytest.importorskip("diffusers")
    spec = importlib.util.spec_from_file_location("gpu_parallel_bench", SCRIPT.parent / "gpu_parallel.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--json", "--steps", "3", "--folder", str(tmp_path / "ckpt")]) == 0
    figures = json.loads(capsys.readouterr().out)
    rows = {r["setup"]: r for r in figures["rows"]}
    assert list(rows) == ["diffusers", "kinema", "kinema-ulysses2"]
    for r in rows.values():
        assert r["skipped"] is None and r["frames"] == 5 and r["step_s"] > 0 and r["clip_s"] > 0
    assert rows["kinema-ulysses2"]["gpus"] == 2
    assert "| kinema-ulysses2 | 2 |" in bench.table([bench.Row(**r) for r in figures["rows"]])
    # a group size the machine does not have is refused before anything is built
    assert bench.main(["--tiny", "--gpus", "3"]) == 2
