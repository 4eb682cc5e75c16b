"""Post-processing and editing on real clips, checked with the decoder (frame count, fps, size, duration, audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinema import InvalidRequest, MissingExtra, Video
from kinema.media import edit, enhance
from kinema.media.ffmpeg import media_info
from kinema.media.thumbnail import contact_sheet, pick_frame, save_image, thumbnail

from .conftest import block_diff, smooth_clip


def test_upscale_lanczos_real_clip(real_clip: Path, tmp_path: Path) -> None:
    clip = Video.open(real_clip)
    big = enhance.upscale(clip, 2)
    out = big.save(tmp_path / "big.mp4")
    info = media_info(out)["video"]
    assert (info["width"], info["height"]) == (clip.width * 2, clip.height * 2)
    assert info["frames"] == clip.num_frames and info["fps"] == pytest.approx(clip.fps)
    # Lanczos keeps the picture: each 2x2 block of the big frame averages to about the original pixel
    h, w = clip.height, clip.width
    pooled = big.frames.astype(float).reshape(-1, h, 2, w, 2, 3).mean(axis=(2, 4))
    assert block_diff(pooled[3], clip.frames[3]) < 3
    assert block_diff(pooled[3], clip.frames[9]) > 6  # and a different frame does not match
    assert big.metadata["prompt"] == clip.metadata["prompt"]


def test_upscale_with_model_file_needs_spandrel(real_clip: Path, tmp_path: Path) -> None:
    fake_model = tmp_path / "4x.pth"
    fake_model.write_bytes(b"not a model")
    pytest.importorskip("torch")
    try:
        import spandrel  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtra) as exc:
            enhance.upscale(Video.open(real_clip), 4, model=fake_model)
        assert "spandrel" in str(exc.value) and "pip install" in str(exc.value)
    else:  # pragma: no cover - where spandrel is installed the bad file is refused as a model
        with pytest.raises(InvalidRequest, match="upscale.model"):
            enhance.upscale(Video.open(real_clip), 4, model=fake_model)


@pytest.mark.parametrize("factor", [2, 3])
def test_interpolate_keeps_duration(real_clip: Path, tmp_path: Path, factor: int) -> None:
    clip = Video.open(real_clip)
    out = enhance.interpolate(clip, factor).save(tmp_path / "smooth.mp4")
    info = media_info(out)["video"]
    assert info["fps"] == pytest.approx(clip.fps * factor)
    assert info["frames"] == clip.num_frames * factor
    assert info["duration"] == pytest.approx(clip.duration)


def test_fps_retime_and_interpolated_frames_are_new() -> None:
    clip = smooth_clip(16, 32, fps=8)
    out = enhance.change_fps(clip, 12)
    assert out.fps == 12 and out.num_frames == 24 and out.duration == pytest.approx(clip.duration)
    doubled = enhance.interpolate(clip, 2)
    # an in-between frame is neither of its neighbours (motion-compensated, not duplicated)
    mid = doubled.frames[1].astype(float)
    assert np.abs(mid - clip.frames[0]).mean() > 0.5 and np.abs(mid - clip.frames[1]).mean() > 0.5


def test_denoise_reduces_noise_and_sharpen_adds_detail() -> None:
    clean = smooth_clip(8, 32)
    rng = np.random.default_rng(0)
    noisy_frames = np.clip(clean.frames + rng.normal(0, 20, clean.frames.shape), 0, 255).astype(np.uint8)
    noisy = Video(noisy_frames, fps=8)
    err_before = np.abs(noisy.frames.astype(float) - clean.frames).mean()
    for method, gain in (("nlmeans", 0.6), ("hqdn3d", 0.9)):
        den = enhance.denoise(noisy, 1.0 if method == "nlmeans" else 4.0, method=method)
        assert den.frames.shape == noisy.frames.shape
        err_after = np.abs(den.frames.astype(float) - clean.frames).mean()
        assert err_after < err_before * gain, method

    def detail(v: Video) -> float:
        return float(np.abs(np.diff(v.frames.astype(float), axis=2)).mean())

    sharp = enhance.sharpen(clean, 2.0)
    assert sharp.frames.shape == clean.frames.shape and detail(sharp) > detail(clean)


def test_trim_and_loop_counts(real_clip: Path, tmp_path: Path) -> None:
    clip = Video.open(real_clip)  # 16 frames at 8 fps
    cut = edit.trim(clip, 0.5, 1.5)
    assert cut.num_frames == 8 and np.array_equal(cut.frames[0], clip.frames[4])
    assert edit.trim(clip, 0, -0.5).num_frames == 12
    assert edit.loop(clip, "repeat", count=3).num_frames == 48
    assert edit.loop(clip, "pingpong").num_frames == 30
    looped = edit.loop(clip, "crossfade", overlap=0.5)  # 4 frames of overlap
    assert looped.num_frames == 12
    info = media_info(looped.save(tmp_path / "loop.mp4"))["video"]
    assert info["frames"] == 12
    with pytest.raises(InvalidRequest, match="trim"):
        edit.trim(clip, 3, 4)
    with pytest.raises(InvalidRequest, match="trim"):
        edit.parse_trim("abc")


def test_mux_audio_trimmed_to_video(real_clip: Path, long_tone: Path, tmp_path: Path) -> None:
    out = edit.mux_audio(real_clip, long_tone, tmp_path / "scored.mp4")
    info = media_info(out)
    assert info["video"]["frames"] == 16
    assert info["audio"] is not None and info["audio"]["codec"] == "aac"
    assert info["audio"]["duration"] == pytest.approx(2.0, abs=0.05)  # 12 s of tone cut to the 2 s video
    assert Video.open(out).metadata["prompt"] == "a red ball bouncing on green grass"  # the recipe survives


def test_mux_audio_pads_a_short_track(tone: Path, tmp_path: Path) -> None:
    long_clip = edit.loop(smooth_clip(16, 32), "repeat", count=3).save(tmp_path / "six.mp4")  # 6 s
    out = edit.mux_audio(long_clip, tone)  # 3 s of tone, in place
    assert out == long_clip
    assert media_info(out)["audio"]["duration"] == pytest.approx(6.0, abs=0.05)


def test_mux_audio_errors(real_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="audio: file not found"):
        edit.mux_audio(real_clip, tmp_path / "missing.wav", tmp_path / "x.mp4")
    with pytest.raises(InvalidRequest, match="cannot carry sound"):
        edit.mux_audio(real_clip, real_clip, tmp_path / "x.gif")
    with pytest.raises(InvalidRequest, match="no audio stream"):
        edit.mux_audio(real_clip, real_clip, tmp_path / "x.mp4")


@pytest.mark.parametrize(("spec", "frames"), [("cut", 32), ("fade:0.5", 28), ("dissolve:1", 24), ("wipe:0.25", 30)])
def test_concat_transition_lengths(real_clip: Path, tmp_path: Path, spec: str, frames: int) -> None:
    a = Video.open(real_clip)
    b = smooth_clip(16, 64, seed=3)
    out = edit.concat([a, b], spec).save(tmp_path / "joined.mp4")
    info = media_info(out)["video"]
    assert info["frames"] == frames and info["duration"] == pytest.approx(frames / 8)


def test_transition_content() -> None:
    black = Video(np.zeros((8, 16, 16, 3), np.uint8), fps=8)
    white = Video(np.full((8, 16, 16, 3), 200, np.uint8), fps=8)
    dissolve = edit.join(black, white, "dissolve:0.375").frames  # 3 overlap frames
    assert dissolve.shape[0] == 13
    levels = [int(dissolve[i].mean()) for i in range(5, 8)]
    assert levels == [50, 100, 150]
    fade = edit.join(white, white, "fade:0.375").frames
    assert fade[6].mean() == 0  # the middle of a fade is black
    wipe = edit.join(black, white, "wipe:0.375").frames
    assert wipe[6][:, 0].mean() == 200 and wipe[6][:, -1].mean() == 0  # B comes in from the left


def test_concat_fits_size_and_fps_and_checks_lengths() -> None:
    a = smooth_clip(16, 32, fps=8)
    b = smooth_clip(24, 48, fps=12)  # 2 s at 12 fps -> 16 frames at 8 fps, 32x32
    out = edit.concat([a, b])
    assert out.frames.shape == (32, 32, 32, 3) and out.fps == 8
    with pytest.raises(InvalidRequest, match="transition.duration"):
        edit.concat([a, b], "dissolve:5")
    with pytest.raises(InvalidRequest, match="transition"):
        edit.concat([a, b], "spin:1")
    with pytest.raises(InvalidRequest, match="transitions"):
        edit.concat([a, b, a], ["fade:0.5"] * 3)


def test_gif_export_with_palette(real_clip: Path, tmp_path: Path) -> None:
    clip = Video.open(real_clip)
    path = edit.export_gif(clip, tmp_path / "clip.gif", colors=16, width=32)
    info = media_info(path)["video"]
    assert info["frames"] == 16 and (info["width"], info["height"]) == (32, 32)
    frames = Video.open(path).frames
    colours = np.unique(frames.reshape(-1, 3), axis=0)
    assert len(colours) <= 16


def test_thumbnail_and_contact_sheet(real_clip: Path, tmp_path: Path) -> None:
    clip = Video.open(real_clip)
    assert pick_frame(clip, 1.0) == 8
    assert 4 <= pick_frame(clip) < 12
    thumb = thumbnail(clip, 1.0, width=128)
    assert thumb.shape == (128, 128, 3)
    sheet = contact_sheet(clip, columns=4, count=8)
    assert sheet.shape == (2 * 128 + 3 * 2, 4 * 128 + 5 * 2, 3)
    assert np.array_equal(sheet[2:130, 2:130], clip.frames[0])  # first tile is the first frame
    path = save_image(sheet, tmp_path / "sheet.png")
    info = media_info(path)["video"]
    assert (info["width"], info["height"]) == (sheet.shape[1], sheet.shape[0])


def test_chain_validation_names_the_step_and_field(tmp_path: Path) -> None:
    cases = [
        ([{"op": "zoom"}], "postprocess[0].op"),
        ([{"op": "upscale", "factor": 99}], "postprocess[0].factor"),
        ([{"op": "upscale"}, {"op": "sharpen", "amout": 1}], "postprocess[1].amout"),
        ([{"op": "fps"}], "postprocess[0].fps"),
        ([{"op": "audio", "path": str(tmp_path / "none.wav")}], "postprocess[0].path"),
        ([{"op": "trim", "start": "soon"}], "postprocess[0].start"),
        ([{"op": "loop", "mode": "spiral"}], "postprocess[0].mode"),
        (["upscale:big"], "postprocess[0].factor"),
        ([3], "postprocess[0]"),
        ({"op": "upscale"}, "postprocess"),
    ]
    for steps, field in cases:
        with pytest.raises(InvalidRequest) as exc:
            enhance.validate_chain(steps)
        assert exc.value.field == field, (steps, exc.value)
        assert str(exc.value).startswith(field + ":")


def test_apply_chain_and_file_steps(real_clip: Path, tone: Path, tmp_path: Path) -> None:
    clip = Video.open(real_clip)
    steps = ["trim:0.5:1.5", {"op": "upscale", "params": {"factor": 2}}, "fps:16", {"op": "audio", "path": str(tone)}]
    out = enhance.apply_chain(clip, steps)
    assert out.frames.shape == (16, 256, 256, 3) and out.fps == 16
    assert [s["op"] for s in out.metadata["postprocess"]] == ["trim", "upscale", "fps", "audio"]
    path = enhance.apply_file_steps(out.save(tmp_path / "pp.mp4"), steps)
    info = media_info(path)
    assert info["video"]["frames"] == 16 and info["audio"]["duration"] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(InvalidRequest, match=r"postprocess\[0\]"):
        enhance.apply_chain(clip, ["trim:5:6"])  # outside this clip: the error names the step


def test_process_file_keeps_input_audio(real_clip: Path, long_tone: Path, tmp_path: Path) -> None:
    scored = edit.mux_audio(real_clip, long_tone, tmp_path / "scored.mp4")
    out = enhance.process_file(scored, tmp_path / "cut.mp4", ["trim:0.5:1.5"])
    info = media_info(out)
    assert info["video"]["frames"] == 8
    assert info["audio"] is not None and info["audio"]["duration"] == pytest.approx(1.0, abs=0.05)
