"""Video: formats, odd sizes, metadata round trips."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from kinema import InvalidRequest, Video, read_metadata
from kinema.video import sidecar_path


def _clip(f: int = 8, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth content so lossy codecs stay close to the source
    base = rng.integers(0, 255, (1, 1, 1, 3))
    ramp = np.linspace(0, 200, w)[None, None, :, None] + np.arange(f)[:, None, None, None] * 4
    return np.clip(base * 0.2 + ramp + np.zeros((f, h, w, 3)), 0, 255).astype(np.uint8)


META = {
    "prompt": "a red ball",
    "seed": 7,
    "guidance_scale": 4.5,
    "nested": {"a": [1, 2.25, None]},
    "unicode": "caméra ✓",
}


def test_mp4_is_h264_yuv420p_faststart_with_metadata(tmp_path: Path) -> None:
    path = Video(_clip(), fps=8, metadata=META).save(tmp_path / "a.mp4")
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert json.loads(c.metadata["kinema"]) == META
        assert "a red ball" in c.metadata["comment"]
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "faststart puts the index before the media data"


def test_round_trip_keeps_metadata_exactly_and_frames_closely(tmp_path: Path) -> None:
    frames = _clip()
    path = Video(frames, fps=12.5, metadata=META).save(tmp_path / "b.mp4")
    back = Video.open(path)
    assert back.metadata == META
    assert back.frames.shape == frames.shape
    assert back.fps == pytest.approx(12.5)
    assert np.abs(back.frames.astype(int) - frames.astype(int)).mean() < 4
    assert json.loads(sidecar_path(path).read_text()) == META
    assert read_metadata(path) == META


@pytest.mark.parametrize(("h", "w"), [(31, 48), (32, 47), (33, 35)])
def test_odd_sizes_are_padded_and_cropped_back(tmp_path: Path, h: int, w: int) -> None:
    path = Video(_clip(h=h, w=w), fps=8).save(tmp_path / "odd.mp4")
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.width % 2 == 0
    assert Video.open(path).frames.shape == (8, h, w, 3)


def test_webm_gif_and_png_frames(tmp_path: Path) -> None:
    frames = _clip()
    webm = Video(frames, fps=8, metadata=META).save(tmp_path / "c.webm")
    back = Video.open(webm)
    assert back.metadata == META and back.frames.shape == frames.shape
    with av.open(str(webm)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
    gif = Video(frames, fps=8, metadata=META).save(tmp_path / "d.gif")
    g = Video.open(gif)
    assert g.frames.shape == frames.shape and g.metadata == META  # metadata from the sidecar
    folder = Video(frames, fps=10, metadata=META).save(tmp_path / "frames", format="png")
    assert len(list(folder.glob("*.png"))) == 8
    p = Video.open(folder)
    assert np.array_equal(p.frames, frames), "PNG frames are lossless"
    assert p.fps == 10 and p.metadata == META


def test_bad_frames_and_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="^frames: must have shape"):
        Video(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InvalidRequest, match="^frames: must be uint8"):
        Video(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(InvalidRequest, match="^fps: must be a positive"):
        Video(np.zeros((1, 4, 4, 3), np.uint8), fps=0)
    with pytest.raises(InvalidRequest, match="^path: unknown video extension '.avi'"):
        Video(np.zeros((1, 4, 4, 3), np.uint8)).save(tmp_path / "x.avi")
    with pytest.raises(InvalidRequest, match="^path: file not found"):
        Video.open(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(InvalidRequest, match="^path: .*not a readable video"):
        Video.open(junk)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    Video(_clip(), fps=8).save(tmp_path / "e.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.mp4", "e.mp4.json"]


def test_the_same_frames_encode_to_the_same_bytes(tmp_path: Path) -> None:
    """A recipe reproduces its file: x264's macroblock tree made the bytes (and decoded frames) of one clip differ
    from one save to the next on an AVX-512 CPU."""
    import hashlib

    import kinema

    clip = kinema.generate("a red ball bouncing on green grass", seed=5, num_inference_steps=3).video
    clip.metadata = {}
    digests = set()
    for i in range(6):
        path = clip.save(tmp_path / f"c{i}.mp4", sidecar=False)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
