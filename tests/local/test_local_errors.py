"""The errors a user of local models meets: each names the field, what was wrong and the way forward."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kinema
from kinema.errors import InvalidRequest, ModelNotFound


def cli(*args: str) -> tuple[int, str, str]:
    from kinema.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_missing_catalog_weights_name_repo_cache_and_two_ways(_empty_hf_cache: Path, tmp_path: Path) -> None:
    code, _out, err = cli(
        "generate",
        "a cat",
        "--backend",
        "diffusers",
        "--model",
        "wan2.1-t2v-1.3b",
        "--size",
        "832x480",
        "--frames",
        "5",
        "-o",
        str(tmp_path / "x.mp4"),
    )
    assert code == 1
    text = " ".join(err.split())
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in text
    assert str(_empty_hf_cache / "hub") in text.replace(" ", "") or "hf-home" in text
    assert "kinema pull wan2.1-t2v-1.3b" in text and "--model /path/to/folder" in text


def test_missing_hub_repo_weights_fail_fast_without_network(_empty_hf_cache: Path) -> None:
    with pytest.raises(ModelNotFound) as info:
        kinema.generate("a cat", backend="diffusers", model="someone/not-downloaded", num_frames=5)
    assert "someone/not-downloaded" in info.value.message and "kinema pull" in info.value.message


def test_incomplete_snapshot_is_reported(tiny_checkpoint: Callable[[str], Path], tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "partial"
    shutil.copytree(tiny_checkpoint("wan-t2v"), folder)
    shutil.rmtree(folder / "transformer")
    with pytest.raises(ModelNotFound, match="lacks transformer"):
        kinema.generate(
            "a cat",
            backend="diffusers",
            model=str(folder),
            width=32,
            height=32,
            num_frames=5,
            options={"device": "cpu"},
        )


def test_folder_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="model_index.json"):
        kinema.generate("a cat", backend="diffusers", model=str(tmp_path), num_frames=5)


@pytest.mark.parametrize("frames", ["6", "80"])
def test_wrong_frame_count(frames: str, tmp_path: Path) -> None:
    code, _out, err = cli(
        "generate",
        "a cat",
        "--backend",
        "diffusers",
        "--model",
        "wan2.1-t2v-1.3b",
        "--frames",
        frames,
        "-o",
        str(tmp_path / "x.mp4"),
    )
    assert code == 2
    assert "num_frames" in err and "4k+1" in err


def test_size_not_a_multiple(tmp_path: Path) -> None:
    code, _out, err = cli(
        "generate",
        "a cat",
        "--backend",
        "diffusers",
        "--model",
        "wan2.2-ti2v-5b",
        "--size",
        "1280x720",
        "-o",
        str(tmp_path / "x.mp4"),
    )
    assert code == 2
    assert "height" in err and "multiple of 32" in err


def test_fixed_size_model_lists_its_size() -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.generate("a cat", backend="diffusers", model="cogvideox-2b", width=640, height=480)
    assert info.value.field == "size" and "720x480" in info.value.message


def test_derived_rules_of_a_tiny_folder(tiny_checkpoint: Callable[[str], Path]) -> None:
    # a folder's own configs set its rules: the tiny LTX VAE compresses 4x in space and time
    with pytest.raises(InvalidRequest) as info:
        kinema.generate(
            "a cat", backend="diffusers", model=str(tiny_checkpoint("ltx")), width=30, height=32, num_frames=9
        )
    assert info.value.field == "width" and "multiple of 4" in info.value.message
    with pytest.raises(InvalidRequest, match="4k\\+1"):
        kinema.generate(
            "a cat", backend="diffusers", model=str(tiny_checkpoint("ltx")), width=32, height=32, num_frames=8
        )


@pytest.mark.parametrize("model", ["wan2.1-i2v-14b-480p", "svd"])
def test_i2v_without_image(model: str, tmp_path: Path) -> None:
    code, _out, err = cli(
        "generate", "a cat", "--backend", "diffusers", "--model", model, "-o", str(tmp_path / "x.mp4")
    )
    assert code == 2
    assert "image" in err and "image-to-video" in err


def test_i2v_without_image_on_a_tiny_i2v_folder(tiny_checkpoint: Callable[[str], Path]) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.generate(
            "a cat", backend="diffusers", model=str(tiny_checkpoint("wan-i2v")), width=32, height=32, num_frames=5
        )
    assert info.value.field == "image"


def test_t2v_only_model_refuses_an_image(tiny_checkpoint: Callable[[str], Path], image_file: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.generate(
            "a cat",
            backend="diffusers",
            model=str(tiny_checkpoint("wan-t2v")),
            image=str(image_file),
            width=32,
            height=32,
            num_frames=5,
        )
    assert info.value.field == "image" and "text-to-video" in info.value.message


def test_unknown_model_id() -> None:
    with pytest.raises(InvalidRequest) as info:
        kinema.generate("a cat", backend="diffusers", model="not a model")
    assert info.value.field == "model" and "wan2.1-t2v-1.3b" in info.value.message


def test_unsupported_pipeline_class(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(InvalidRequest, match="StableDiffusionPipeline"):
        kinema.generate("a cat", backend="diffusers", model=str(tmp_path))


def seed_cache(hf_home: Path, repo: str, folder: Path) -> Path:
    """Put a checkpoint into the hub cache layout (refs/main -> snapshots/<commit>), as kinema pull leaves it."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


def test_models_json_lists_the_catalog_and_what_is_here(
    _empty_hf_cache: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    import json

    code, out, _err = cli("models", "--json")
    assert code == 0
    data = json.loads(out)
    ids = {m["id"]: m for m in data["models"]}
    assert {"wan2.1-t2v-1.3b", "ltx-video", "svd", "svd-xt", "modelscope-t2v", "hunyuanvideo"} <= set(ids)
    assert not any(m["present"] for m in ids.values())
    assert ids["svd"]["commercial_use"] is False and ids["modelscope-t2v"]["commercial_use"] is False
    assert data["cache"] == str(_empty_hf_cache / "hub")

    seed_cache(_empty_hf_cache, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", tiny_checkpoint("wan-t2v"))
    ids = {m["id"]: m for m in json.loads(cli("models", "--json")[1])["models"]}
    assert ids["wan2.1-t2v-1.3b"]["present"] and ids["wan2.1-t2v-1.3b"]["snapshot"].startswith("0123")


def test_hub_id_in_the_cache_loads_offline(_empty_hf_cache: Path, tiny_checkpoint: Callable[[str], Path]) -> None:
    seed_cache(_empty_hf_cache, "someone/tiny-ltx", tiny_checkpoint("ltx"))
    result = kinema.generate(
        "a cat",
        backend="diffusers",
        model="someone/tiny-ltx",
        width=32,
        height=32,
        num_frames=9,
        num_inference_steps=2,
        options={"device": "cpu"},
    )
    assert result.video.frames.shape == (9, 32, 32, 3)
    assert result.recipe["model_revision"] == "0123456789abcdef0123456789abcdef01234567"


def test_pull_refuses_offline_at_once(_empty_hf_cache: Path) -> None:
    code, _out, err = cli("pull", "wan2.1-t2v-1.3b")
    assert code == 1 and "HF_HUB_OFFLINE" in err and "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in err


def test_pull_selects_safetensors_configs_and_the_variant() -> None:
    from kinema.cli.local import select_files

    files = [
        ("model_index.json", 1),
        ("unet/config.json", 1),
        ("unet/diffusion_pytorch_model.safetensors", 9),
        ("unet/diffusion_pytorch_model.fp16.safetensors", 5),
        ("unet/diffusion_pytorch_model.bin", 9),
        ("vae/diffusion_pytorch_model.safetensors", 3),
        ("tokenizer/spiece.model", 1),
        (".gitattributes", 1),
        ("README.md", 1),
        ("scheduler/scheduler_config.json", 1),
    ]
    chosen = [name for name, _ in select_files(files, "fp16")]
    assert chosen == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "tokenizer/spiece.model",
        "scheduler/scheduler_config.json",
    ]
    assert "unet/diffusion_pytorch_model.safetensors" in [n for n, _ in select_files(files, None)]
