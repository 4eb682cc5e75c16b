"""The procedural world: determinism, coverage, the held-out split, captions and their parsing, speed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kinema.builtin import world
from kinema.builtin.world import ATTRIBUTES, HELDOUT_PAIRS, Scene

SHOWCASE_PAIRS = [
    (("color", "subject"), ("red", "ball")),
    (("subject", "motion"), ("ball", "bounce")),
    (("setting", "time"), ("mountains", "dawn")),
    (("setting", "weather"), ("mountains", "clouds")),
    (("setting", "time"), ("ocean", "day")),
    (("setting", "weather"), ("ocean", "clear")),
    (("setting", "time"), ("meadow", "day")),
    (("color", "subject"), ("blue", "car")),
    (("subject", "motion"), ("car", "right")),
    (("setting", "time"), ("city", "night")),
    (("setting", "time"), ("forest", "dawn")),
    (("setting", "weather"), ("forest", "snow")),
]


@pytest.fixture(scope="module")
def train_scenes() -> list[Scene]:
    rng = np.random.default_rng(0)
    return [world.sample_scene(rng, "train") for _ in range(2000)]


def test_make_dataset_is_deterministic_per_seed() -> None:
    clips_a, caps_a, scenes_a = world.make_dataset(6, seed=3, num_frames=8, height=32, width=32)
    clips_b, caps_b, scenes_b = world.make_dataset(6, seed=3, num_frames=8, height=32, width=32)
    clips_c, caps_c, scenes_c = world.make_dataset(6, seed=4, num_frames=8, height=32, width=32)
    assert np.array_equal(clips_a, clips_b)
    assert caps_a == caps_b and scenes_a == scenes_b
    assert not np.array_equal(clips_a, clips_c)
    assert caps_a != caps_c


def test_render_is_deterministic_given_rng_state() -> None:
    scene = Scene("sunset", "sun_setting", "ocean", "rain", "pan_left", "boat", "red", "large", "right")
    a = world.render(scene, np.random.default_rng(5))
    b = world.render(scene, np.random.default_rng(5))
    c = world.render(scene, np.random.default_rng(6))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # render_batch: clip i depends on (seed, i) only
    batch = world.render_batch([scene, scene], seed=9)
    assert np.array_equal(batch[0], world.render_batch([scene], seed=9)[0])
    assert not np.array_equal(batch[0], batch[1])


def test_subject_mask_marks_the_subject_and_leaves_the_clip_unchanged() -> None:
    scene = Scene("day", "sun", "meadow", "clear", "static", "ball", "red", "small", "right")
    mask = np.zeros((16, 64, 64), bool)
    clip = world.render(scene, np.random.default_rng(5), subject_mask=mask)
    assert np.array_equal(clip, world.render(scene, np.random.default_rng(5)))  # the mask draws nothing
    red = (clip[..., 0].astype(int) - clip[..., 1:].astype(int).max(axis=-1)) > 80  # (F, H, W): the red ball
    assert red.any(axis=(1, 2)).all() and not (red & ~mask).any()  # every red pixel lies in the mask
    assert 0 < mask.mean() < 0.05  # a small subject: a few per cent of the frame
    xs = [np.nonzero(m.any(axis=0))[0].mean() for m in mask]  # mean column per frame
    assert xs[-1] - xs[0] > 20  # it moves right, and the mask moves with it
    empty = np.zeros((2, 16, 64, 64), bool)
    world.render_batch(
        [Scene("day", "sun", "meadow", "clear", "static", None, None, None, None)] * 2, 1, subject_masks=empty
    )
    assert not empty.any()  # no subject, no mask


@pytest.mark.parametrize(("frames", "height", "width"), [(16, 64, 64), (8, 32, 48), (4, 48, 32)])
def test_shapes_and_dtypes(frames: int, height: int, width: int) -> None:
    rng = np.random.default_rng(1)
    scenes = [world.sample_scene(rng) for _ in range(3)]
    clip = world.render(scenes[0], rng, frames, height, width)
    assert clip.shape == (frames, height, width, 3) and clip.dtype == np.uint8
    batch = world.render_batch(scenes, seed=2, num_frames=frames, height=height, width=width)
    assert batch.shape == (3, frames, height, width, 3) and batch.dtype == np.uint8
    assert batch.std() > 10  # not a blank picture
    assert np.abs(np.diff(batch.astype(np.int16), axis=1)).mean() > 0.5  # clips move


def test_every_attribute_value_appears_in_training(train_scenes: list[Scene]) -> None:
    for name, values in ATTRIBUTES.items():
        seen = Counter(getattr(s, name) for s in train_scenes)
        missing = [v for v in values if seen[v] == 0]
        assert not missing, f"{name}: {missing} never sampled"
    assert any(s.subject is None for s in train_scenes)
    for s in train_scenes:
        assert s.celestial in world.CELESTIAL_FOR_TIME[s.time]
        assert (s.subject is None) == (s.color is None) == (s.size is None) == (s.motion is None)


def test_heldout_rule(train_scenes: list[Scene]) -> None:
    assert not any(world.is_heldout(s) for s in train_scenes)
    rng = np.random.default_rng(1)
    held = [world.sample_scene(rng, "heldout") for _ in range(500)]
    assert all(world.is_heldout(s) for s in held)
    # every family is represented in the held-out split, and roughly 15% of each family's pairs are held out
    fams = Counter(fam for s in held for fam, pair in world._pairs(s).items() if pair in HELDOUT_PAIRS[fam])
    assert set(fams) == set(HELDOUT_PAIRS)
    for (a, b), pairs in HELDOUT_PAIRS.items():
        frac = len(pairs) / (len(ATTRIBUTES[a]) * len(ATTRIBUTES[b]))
        assert 0.1 <= frac <= 0.2, (a, b, frac)
    for fam, pair in SHOWCASE_PAIRS:
        assert pair not in HELDOUT_PAIRS[fam], (fam, pair)
    # a concrete held-out scene is recognised as such
    s = Scene("day", "sun", "meadow", "clear", "static", "ball", "black", "small", "static")
    assert world.is_heldout(s)
    with pytest.raises(ValueError):
        world.sample_scene(rng, "test")


def test_captions_state_the_scene(train_scenes: list[Scene]) -> None:
    rng = np.random.default_rng(2)
    with_setting = 0
    for scene in train_scenes[:800]:
        text = world.caption(scene, rng)
        parsed = world.parse_prompt(text)
        truth = scene.to_dict()
        for key, value in parsed.items():
            assert truth[key] == value, (text, key, value, scene)
        if scene.subject is not None:
            for key in ("subject", "color", "motion"):
                assert key in parsed, (text, key)
        if scene.weather != "clear":
            assert "weather" in parsed, text
        if scene.time != "day":
            assert "time" in parsed, text
        if scene.camera != "static":
            assert "camera" in parsed, text
        with_setting += "setting" in parsed
    assert with_setting >= 0.8 * 800


def test_captions_vary() -> None:
    scene = Scene("dawn", "sun_rising", "mountains", "clouds", "zoom_in", "ball", "red", "large", "bounce")
    rng = np.random.default_rng(3)
    texts = {world.caption(scene, rng) for _ in range(200)}
    assert len(texts) > 100
    firsts = Counter(world.tokenize(t)[0] for t in texts)
    assert len(firsts) >= 5  # word order and style prefixes vary


def test_vocabulary_covers_every_caption(train_scenes: list[Scene]) -> None:
    vocab = world.vocabulary()
    assert vocab == sorted(set(vocab)) and all(w.isalpha() and w.islower() for w in vocab)
    words = set(vocab)
    rng = np.random.default_rng(4)
    for scene in train_scenes[:1000]:
        text = world.caption(scene, rng)
        unknown = [w for w in world.tokenize(text) if w not in words]
        assert not unknown, (text, unknown)
    for w in ("red", "ball", "bouncing", "sunrise", "drone", "zooms", "snow", "k"):
        assert w in words


def test_tokenize() -> None:
    assert world.tokenize("A Drone-shot, 4K!") == ["a", "drone", "shot", "k"]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        (
            "A cinematic sunrise over mountains, clouds moving slowly",
            {"time": "dawn", "setting": "mountains", "weather": "clouds"},
        ),
        ("A drone shot of ocean waves crashing on rocks", {"camera": "aerial", "setting": "ocean"}),
        ("Camera slowly zooms in, cinematic lighting", {"camera": "zoom_in"}),
        (
            "a red ball bouncing on green grass",
            {"color": "red", "subject": "ball", "motion": "bounce", "setting": "meadow"},
        ),
        (
            "a blue car driving to the right through a city at night",
            {"color": "blue", "subject": "car", "motion": "right", "setting": "city", "time": "night"},
        ),
        ("snow falling on a forest at dawn", {"weather": "snow", "setting": "forest", "time": "dawn"}),
    ],
)
def test_parse_showcase_prompts(prompt: str, expected: dict[str, str]) -> None:
    assert world.parse_prompt(prompt) == expected


def test_parse_prompt_edge_cases() -> None:
    assert world.parse_prompt("") == {}
    assert world.parse_prompt("a small purple fish swimming to the left, camera pans right") == {
        "size": "small",
        "color": "purple",
        "subject": "fish",
        "motion": "left",
        "camera": "pan_right",
    }
    # weather and sun verbs are not subject motions; colours bind to the subject, not the scenery
    expected = {"color": "white", "subject": "bird", "setting": "hills", "celestial": "sun_setting", "weather": "rain"}
    assert world.parse_prompt("a white bird over green hills as the sun sets, rain falling") == expected


@pytest.mark.parametrize(
    ("prompt", "still"),
    [
        ("A red ball bouncing over the hills", "a red ball sitting still over the hills"),
        # the camera's "left" is not the subject's: only the subject's phrase is replaced
        ("a blue car driving to the left, camera pans left", "a blue car sitting still camera pans left"),
        ("A white car shrinking in a forest, pan right", "a white car sitting still in a forest pan right"),
        # no subject, a subject already still, or a motion the tables read from no word of their own: nothing to guide
        ("A cinematic sunrise over mountains, clouds moving slowly", None),
        ("a green car sitting still on a grassy field", None),
        ("a red ball rolling", None),
    ],
)
def test_still_caption_says_the_subject_still_and_nothing_else(prompt: str, still: str | None) -> None:
    assert world.still_caption(prompt) == still
    if still is not None:
        assert world.parse_prompt(still).get("motion") == "static"
        assert {k: v for k, v in world.parse_prompt(still).items() if k != "motion"} == {
            k: v for k, v in world.parse_prompt(prompt).items() if k != "motion"
        }


def test_still_caption_finds_the_motion_of_every_training_caption() -> None:
    """Over captions drawn as training draws them, every moving subject's caption gets a still version that reads as
    the same scene with the subject still."""
    rng = np.random.default_rng(5)
    moving = 0
    for _ in range(300):
        scene = world.sample_scene(rng)
        text = world.caption(scene, rng)
        still = world.still_caption(text)
        if scene.subject is None or scene.motion in (None, "static"):
            assert still is None, text
            continue
        moving += 1
        assert still is not None, text
        assert world.parse_prompt(still).get("motion") == "static", (text, still)
    assert moving > 100
