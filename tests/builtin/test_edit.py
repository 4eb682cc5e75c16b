"""Editing and keyframes with the built-in model, measured on clips of its own world (docs/editing.md).

An edit (SDEdit) noises the source to ``strength`` and denoises it with the new prompt: at 0 the source comes back,
at 0.3 its layout is kept (PSNR to the source >= 15 dB), higher strengths let the prompt's attribute show
(the detectors see it more often), and at 1 it is text-to-video, frame for frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import kinema
from kinema.backends.builtin import EDIT_GUIDANCE, EDIT_GUIDANCE_INTERVAL
from kinema.builtin import detectors, load_model, world
from kinema.builtin.evaluate import psnr
from kinema.builtin.sampling import edit_timesteps, sample

SETTINGS = ("mountains", "hills", "ocean", "meadow", "city", "forest")


def _size() -> dict[str, int]:
    """The shipped weights' frame size, to render world clips at."""
    cfg = load_model()[0].cfg
    return {"height": cfg.height, "width": cfg.width}


@pytest.fixture(scope="module")
def clear_days(trained_builtin: Path) -> np.ndarray:
    """Six clear-day world clips, one per setting."""
    scenes = [world.Scene("day", "sun", s, "clear", "static") for s in SETTINGS]
    return world.render_batch(scenes, seed=5, **_size())


def _prompts(suffix: str) -> list[str]:
    """The six places of :func:`clear_days`, asked for with ``suffix`` ("in heavy snow", "at night")."""
    return [f"{world.SETTING_PHRASES[s][0]} {suffix}" for s in SETTINGS]


def _edit(clips: np.ndarray, prompts: list[str], strength: float, guidance: float = EDIT_GUIDANCE) -> np.ndarray:
    model, tokenizer, _ = load_model()
    out = sample(
        model,
        tokenizer,
        prompts,
        seed=11,
        init=clips,
        strength=strength,
        guidance=guidance,
        guidance_interval=EDIT_GUIDANCE_INTERVAL,
    )
    assert isinstance(out, np.ndarray)
    return out


def test_weak_edits_keep_the_layout_and_stronger_ones_show_the_prompt(clear_days: np.ndarray) -> None:
    clips, prompts = clear_days, _prompts("in heavy snow")
    results = {}
    for strength in (0.0, 0.3, 0.6):
        out = _edit(clips, prompts, strength)
        results[strength] = (
            float(np.mean([min(psnr(o, c), 99.0) for o, c in zip(out, clips, strict=True)])),
            sum(detectors.detect_weather(o) == "snow" for o in out),
        )
    assert results[0.0] == (99.0, 0)  # strength 0 hands the source back, exactly
    assert results[0.3][0] >= 15.0  # measured 17.0 dB (v1: 18.8)
    assert results[0.3][0] > results[0.6][0] + 3  # measured 11.0 dB at 0.6
    # snow seen in 6, 5 and 0 of 6 (session 21's weights: 6, 6 and 0; session 20's: 6, 3 and 0); never less at a
    # higher strength
    assert results[0.6][1] >= results[0.3][1] >= results[0.0][1]
    assert results[0.6][1] >= 4  # and so more than at 0, which the first assertion holds at 0 of 6


def _layout(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the luminance correlation of two clips: 1 for the same layout in any global colour."""
    la, lb = (x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) for x in (a, b))
    rs = []
    for fa, fb in zip(la, lb, strict=True):
        fa, fb = fa - fa.mean(), fb - fb.mean()
        rs.append(float((fa * fb).sum() / max(np.sqrt((fa**2).sum() * (fb**2).sum()), 1e-9)))
    return float(np.mean(rs))


def test_an_edit_with_the_edit_guidance_shows_the_prompt_and_keeps_the_layout(
    clear_days: np.ndarray, tmp_path: Path
) -> None:
    """Night at strength 0.45: the edit guidance (3) makes it show where the text-to-video scale (1.5) does not, and
    the layout stays (docs/editing.md's table)."""
    clips, prompts = clear_days, _prompts("at night")
    out = _edit(clips, prompts, 0.45)
    weak = _edit(clips, prompts, 0.45, guidance=1.5)
    nights = sum(detectors.detect_time(o) == "night" for o in out)
    # measured 4 against 0 (session 20's and 21's weights: 3 against 0; session 19's: 4 against 0)
    assert nights >= 3 and nights > sum(detectors.detect_time(o) == "night" for o in weak)
    layout = np.mean([_layout(o, c) for o, c in zip(out, clips, strict=True)])
    other = np.mean([_layout(a, b) for a, b in zip(clips, np.roll(clips, 1, axis=0), strict=True)])
    assert layout >= 0.6 and layout > other + 0.15  # measured 0.75, against 0.43 for another scene
    # through the backend: an edit without a guidance gets EDIT_GUIDANCE, recorded; an explicit one is kept
    path = kinema.Video(clips[0], fps=8).save(tmp_path / "src.mp4")
    plan = kinema.plan(kinema.VideoRequest(prompt=prompts[0], source_video=str(path), strength=0.45))
    assert plan.params.guidance_scale == EDIT_GUIDANCE
    kept = kinema.plan(
        kinema.VideoRequest(prompt=prompts[0], source_video=str(path), strength=0.3, guidance_scale=1.5)
    )
    assert kept.params.guidance_scale == 1.5
    full = kinema.plan(kinema.VideoRequest(prompt=prompts[0], source_video=str(path), strength=1.0))
    assert full.params.guidance_scale == 1.5  # strength 1 is text-to-video, with its default


def test_strength_one_is_text_to_video_and_an_edit_costs_its_share_of_steps(
    trained_builtin: Path, tmp_path: Path
) -> None:
    source = world.render(world.Scene("day", "sun", "hills", "clear", "static"), np.random.default_rng(2), **_size())
    path = kinema.Video(source, fps=8).save(tmp_path / "hills.mp4")
    full = kinema.generate("hills at night", source_video=path, strength=1.0, seed=3, num_inference_steps=6)
    t2v = kinema.generate("hills at night", seed=3, num_inference_steps=6)
    assert np.array_equal(full.video.frames, t2v.video.frames)
    assert psnr(full.video.frames, source) < 15.0
    steps: list[int] = []
    weak = kinema.generate(
        "hills at night",
        source_video=path,
        strength=0.3,
        seed=3,
        on_progress=lambda e: steps.append(e.total) if e.stage == "denoising" else None,
    )
    cfg = load_model()[0].cfg  # an edit runs on the training shift's schedule (3), not the sampling one (5)
    assert set(steps) == {len(edit_timesteps(20, 0.3, cfg.shift)) - 1} == {2}  # 2 of 20 at strength 0.3: its share
    assert len(edit_timesteps(20, 0.45, cfg.shift)) - 1 == 4 > len(edit_timesteps(20, 0.45, cfg.sampling_shift)) - 1
    assert psnr(weak.video.frames, source) > psnr(full.video.frames, source) + 4  # measured 14.2 dB against 8.0


def test_keyframes_put_the_last_image_at_the_end_of_the_clip(trained_builtin: Path) -> None:
    """The model hands the last image back (its own frame 15, before the known frames are written over it, matches
    the image) and draws the frames before it towards it: frame 14 is closer to the real clip's frame 14 than
    without the last image (docs/editing.md)."""
    model, tokenizer, _ = load_model()
    scene = world.Scene("sunset", "sun_setting", "ocean", "clear", "pan_left")
    real = world.render(scene, np.random.default_rng(4), **_size())[None]
    known = np.concatenate([real[:, :1], real[:, -1:]], axis=1)
    out, raw = sample(
        model,
        tokenizer,
        ["the ocean at sunset, the camera pans left"],
        seed=4,
        known=known,
        num_known=2,
        known_index=[0, 15],
        return_raw=True,
    )
    assert np.array_equal(out[0, 0], real[0, 0]) and np.array_equal(out[0, 15], real[0, 15])
    assert psnr(raw[0, 15], real[0, 15]) >= 30.0  # measured 32.7 dB (27.4 on average over 8 held-out clips)
    first = sample(model, tokenizer, ["the ocean at sunset, the camera pans left"], seed=4, known=known, num_known=1)
    assert isinstance(first, np.ndarray)
    assert psnr(out[0, 14], real[0, 14]) > psnr(first[0, 14], real[0, 14]) + 2.0  # measured 23.5 dB against 21.2
    with pytest.raises(ValueError, match="known_index"):
        sample(model, tokenizer, ["x"], steps=1, known=known, num_known=2, known_index=[0, 16])
