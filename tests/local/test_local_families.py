"""End to end, per family: a tiny random-weight checkpoint in the real diffusers layout -> ``kinema generate``.

Each test goes through the command line and the same loader a user's downloaded checkpoint goes through
(``--backend diffusers --model <folder>``), on the CPU, and checks the MP4 that comes out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

#: family -> (tiny checkpoint, size, frames, needs an image)
CASES = {
    "wan-t2v": ("wan-t2v", "32x32", 5, False),
    "wan-i2v": ("wan-i2v", "32x32", 5, True),
    "wan22-ti2v-text": ("wan22-ti2v", "32x32", 5, False),
    "wan22-ti2v-image": ("wan22-ti2v", "32x32", 5, True),
    "ltx-t2v": ("ltx", "32x32", 9, False),
    "ltx-i2v": ("ltx", "32x32", 9, True),
    "cogvideox-t2v": ("cogvideox", "16x16", 9, False),
    "cogvideox-i2v": ("cogvideox-i2v", "16x16", 9, True),
    "hunyuanvideo": ("hunyuan", "16x16", 5, False),
    "svd": ("svd", "16x16", 4, True),
    "modelscope": ("modelscope", "16x16", 4, False),
}


def run_cli(args: list[str]) -> tuple[int, str, str]:
    from kinema.cli import app

    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_generate_mp4(case: str, tiny_checkpoint: Callable[[str], Path], image_file: Path, tmp_path: Path) -> None:
    from kinema.video import Video, read_metadata

    name, size, frames, needs_image = CASES[case]
    folder = tiny_checkpoint(name)
    out = tmp_path / f"{case}.mp4"
    args = [
        "generate",
        "a red ball on the sea",
        "--backend",
        "diffusers",
        "--model",
        str(folder),
        "--size",
        size,
        "--frames",
        str(frames),
        "--steps",
        "2",
        "--seed",
        "3",
        "-o",
        str(out),
        "--json",
        "--option",
        "device=cpu",
    ]
    if needs_image:
        args += ["--image", str(image_file)]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["num_frames"] == frames
    video = Video.open(out)
    width, height = (int(v) for v in size.split("x"))
    assert video.frames.shape == (frames, height, width, 3)
    assert video.frames.std() > 0  # random weights still give a non-constant clip
    recipe = read_metadata(out)
    assert recipe["backend"] == "diffusers" and recipe["mode"] == ("i2v" if needs_image else "t2v")


#: extension: (tiny checkpoint, size, frames) — LTX conditions on the clip's last frames, the others on its last frame
EXTEND = {
    "ltx": ("ltx", 32, 9),
    "wan22-ti2v": ("wan22-ti2v", 32, 5),
    "svd": ("svd", 16, 4),
}


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    from kinema.video import Video

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    return Video(frames, fps=8).save(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.mark.parametrize("case", list(EXTEND))
def test_extend(case: str, tiny_checkpoint: Callable[[str], Path], clip_file: Path, tmp_path: Path) -> None:
    import kinema

    name, size, frames = EXTEND[case]
    result = kinema.generate(
        "a red ball",
        backend="diffusers",
        model=str(tiny_checkpoint(name)),
        video=str(clip_file),
        width=size,
        height=size,
        num_frames=frames,
        num_inference_steps=2,
        seed=1,
        output=tmp_path / "next.mp4",
        options={"device": "cpu"},
    )
    assert result.recipe["mode"] == "extend"
    assert result.video.frames.shape == (frames, size, size, 3)
    assert (tmp_path / "next.mp4").stat().st_size > 0
