"""bench/gpu_wan.py: its CPU smoke mode runs the same code with tiny configs; without CUDA it refuses clearly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_wan.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_wan_bench", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_smoke_run(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("diffusers")
    assert load().main(["--tiny", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["settings"]["cache"] == "firstblock"
    for setup in ("stock", "kinema"):
        assert figures[setup]["step_s"] > 0 and figures[setup]["end_to_end_s"] >= figures[setup]["step_s"]
        assert figures[setup]["frames"] == 5


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_refuses_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert load().main([]) == 2
    err = capsys.readouterr().err
    assert "needs CUDA" in err and "--tiny" in err
