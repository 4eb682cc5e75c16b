"""Issue 27 on the tiny checkpoints: editing a clip (``source_video`` + ``strength``) and keyframes (``last_image``)
through the diffusers backend, each on the real pipeline class, with what a GPU user would feel: the weights shared
with the text-to-video pipeline, the dtypes every component computes in, the strength as the pipeline takes it, the
refusals before anything loads, the recipe that reproduces the clip, and the options combined with these paths."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.backends import get_backend
from kinema.errors import InvalidRequest

torch = pytest.importorskip("torch")
Tiny = Callable[[str], Path]
PROMPT = "a red ball on the sea"


def run(folder: Path | str, steps: int = 4, frames: int = 5, **fields: Any) -> kinema.Result:
    options = {"device": "cpu", "max_sequence_length": 32, **fields.pop("options", {})}
    fields.setdefault("fps", 16)
    return kinema.generate(
        PROMPT,
        backend="diffusers",
        model=str(folder),
        width=32,
        height=32,
        num_frames=frames,
        num_inference_steps=steps,
        seed=3,
        options=options,
        **fields,
    )


def request(model: str, **fields: Any) -> kinema.VideoRequest:
    return kinema.VideoRequest(prompt=PROMPT, backend="diffusers", model=model, **fields)


def backend() -> Any:
    """The diffusers backend (its loaded pipeline is what these tests look at)."""
    return get_backend("diffusers")


def loaded() -> Any:
    return backend()._loaded


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames at 16 fps, each a different flat grey (frame i is 20 * i): which source frame reached the pipeline
    can be read back from its pixels."""
    path = tmp_path_factory.mktemp("source") / "source.mp4"
    frames = np.stack([np.full((40, 48, 3), 20 * i, dtype=np.uint8) for i in range(12)])
    kinema.Video(frames, fps=16).save(path)
    return path


@pytest.fixture(scope="module")
def last_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("last") / "last.png"
    Image.fromarray(np.full((40, 48, 3), (250, 20, 20), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """(pipeline class, keyword arguments) of every call of the edit and keyframe pipelines (the real call runs)."""
    import diffusers

    seen: list[tuple[str, dict[str, Any]]] = []
    for name in (
        "WanVideoToVideoPipeline",
        "CogVideoXVideoToVideoPipeline",
        "LTXConditionPipeline",
        "WanImageToVideoPipeline",
    ):
        cls = getattr(diffusers, name)
        original = cls.__call__

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen.append((type(self).__name__, kwargs))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", functools.wraps(original)(spy))
    yield seen


@pytest.fixture
def dtypes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[tuple[str, str]]]]:
    """What each model computes in: ("input dtype", "weights dtype") of every VAE encode and transformer forward,
    and of the transformer's image tokens (Wan's CLIP embeddings)."""
    import diffusers

    seen: dict[str, list[tuple[str, str]]] = {"encode": [], "transformer": [], "image_tokens": []}

    def name(dtype: Any) -> str:
        return str(dtype).split(".")[-1]

    for cls_name in ("AutoencoderKLWan", "AutoencoderKLLTXVideo", "AutoencoderKLCogVideoX"):
        cls = getattr(diffusers, cls_name)
        original = cls.encode

        def encode(self: Any, x: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen["encode"].append((name(x.dtype), name(self.dtype)))
            return _original(self, x, *args, **kwargs)

        monkeypatch.setattr(cls, "encode", functools.wraps(original)(encode))
    for cls_name in ("WanTransformer3DModel", "LTXVideoTransformer3DModel", "CogVideoXTransformer3DModel"):
        cls = getattr(diffusers, cls_name)
        forward = cls.forward

        def spy(self: Any, *args: Any, _original: Any = forward, **kwargs: Any) -> Any:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            seen["transformer"].append((name(hidden.dtype), name(self.dtype)))
            image = kwargs.get("encoder_hidden_states_image")
            if image is not None:
                seen["image_tokens"].append((name(image.dtype), name(self.dtype)))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", functools.wraps(forward)(spy))
    yield seen


def source_frames_as_read(clip: Path) -> np.ndarray:
    from kinema.media.io import load_video_frames

    return load_video_frames(str(clip), "source_video")[0]


# -- 1. edit ---------------------------------------------------------------------------------------------------------


def test_wan_edit_shares_the_loaded_weights_and_keeps_bf16(
    tiny_checkpoint: Tiny, clip: Path, calls: list[Any], dtypes: dict[str, list[Any]]
) -> None:
    folder = tiny_checkpoint("wan-t2v")
    t2v = run(folder, options={"dtype": "bfloat16"})
    first = loaded().pipe
    dtypes["encode"].clear()
    dtypes["transformer"].clear()
    edit = run(folder, source_video=str(clip), strength=0.5, options={"dtype": "bfloat16"})
    pipe = loaded().pipe
    assert type(pipe).__name__ == "WanVideoToVideoPipeline"
    # from_pipe-style: the same modules, nothing read from disk again
    assert pipe.transformer is first.transformer and pipe.vae is first.vae and pipe.text_encoder is first.text_encoder
    assert pipe.scheduler is first.scheduler  # with the shift Kinema set on it
    # what a GPU user's run computes in: a bf16 transformer, Wan's float32 VAE encoding the source in float32
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    assert dtypes["encode"] and set(dtypes["encode"]) == {("float32", "float32")}
    assert dtypes["transformer"] and set(dtypes["transformer"]) == {("bfloat16", "bfloat16")}
    name, kwargs = calls[-1]
    assert name == "WanVideoToVideoPipeline" and kwargs["strength"] == 0.5
    assert len(kwargs["video"]) == 5 and kwargs["video"][0].size == (32, 32)
    assert "num_frames" not in kwargs  # the pipeline takes the clip's length: 5 frames in, 5 out
    assert edit.video.frames.shape == t2v.video.frames.shape == (5, 32, 32, 3)
    assert not np.array_equal(edit.video.frames, t2v.video.frames)
    assert edit.recipe["mode"] == "edit" and edit.recipe["strength"] == 0.5
    assert edit.recipe["source_video"]["sha256"] and "path" not in edit.recipe["source_video"]
    assert edit.recipe["options"]["_pipeline"] == {
        "class": "WanVideoToVideoPipeline",
        "strength_argument": "strength",
        "strength": 0.5,
        "steps_run": 2,
        "steps": 4,
    }
    # how it ran, as a user comparing runs reads it: the pipeline, its dtype and device, never a local path
    engine = edit.recipe["engine"]
    assert (engine["pipeline"], engine["dtype"], engine["device"]) == ("WanVideoToVideoPipeline", "bfloat16", "cpu")
    assert str(folder) not in json.dumps(edit.recipe["engine"])
    # and back: text-to-video again on the same modules, the same clip as before the edit
    again = run(folder, options={"dtype": "bfloat16"})
    assert type(loaded().pipe).__name__ == "WanPipeline" and loaded().pipe.transformer is first.transformer
    assert np.array_equal(again.video.frames, t2v.video.frames)


def test_strength_sets_the_steps_that_run(tiny_checkpoint: Tiny, clip: Path) -> None:
    """int(steps x strength) of the schedule's last steps run (the pipelines' get_timesteps); a fraction that
    rounds down is said."""
    folder = tiny_checkpoint("wan-t2v")
    for strength, expected in ((0.5, 2), (1.0, 4), (0.3, 1)):
        events: list[Any] = []
        result = run(folder, source_video=str(clip), strength=strength, on_progress=events.append)
        steps = [(e.step, e.total) for e in events if e.stage == "denoising"]
        assert steps == [(i, expected) for i in range(1, expected + 1)]
        rounded = [w for w in result.warnings if "rounds down" in w]
        assert bool(rounded) == (strength == 0.3), result.warnings
    with pytest.raises(InvalidRequest) as info:  # no step at all: refused at planning, nothing loads
        kinema.plan(request(str(folder), source_video=str(clip), strength=0.2, num_inference_steps=4))
    assert info.value.field == "strength" and "0.25 to 1" in str(info.value)


def test_edit_default_strength_is_the_models(tiny_checkpoint: Tiny, clip: Path) -> None:
    from kinema.backends.diffusers import DiffusersBackend

    fresh = DiffusersBackend()
    plan = kinema.plan(request(str(tiny_checkpoint("wan-t2v")), source_video=str(clip)), check_available=False)
    assert plan.params.strength == 0.7  # diffusers' WanVideoToVideoPipeline example
    assert fresh.capabilities("cogvideox-5b").default_strength == 0.8
    assert fresh.capabilities("ltx-video").default_strength == 0.3


def test_cogvideox_edit_shares_the_weights_and_keeps_bf16(
    tiny_checkpoint: Tiny, clip: Path, calls: list[Any], dtypes: dict[str, list[Any]]
) -> None:
    folder = tiny_checkpoint("cogvideox")
    run(folder, frames=9, options={"dtype": "bfloat16"})
    first = loaded().pipe
    dtypes["encode"].clear()
    dtypes["transformer"].clear()
    result = run(folder, frames=9, source_video=str(clip), strength=0.5, options={"dtype": "bfloat16"})
    pipe = loaded().pipe
    assert type(pipe).__name__ == "CogVideoXVideoToVideoPipeline" and pipe.transformer is first.transformer
    name, kwargs = calls[-1]
    assert name == "CogVideoXVideoToVideoPipeline" and kwargs["strength"] == 0.5 and len(kwargs["video"]) == 9
    assert dtypes["encode"] and set(dtypes["encode"]) == {("bfloat16", "bfloat16")}
    assert dtypes["transformer"] and set(dtypes["transformer"]) == {("bfloat16", "bfloat16")}
    assert result.video.frames.shape == (9, 32, 32, 3)
    assert result.recipe["options"]["_pipeline"]["class"] == "CogVideoXVideoToVideoPipeline"


def test_a_source_too_short_is_refused_before_loading(tiny_checkpoint: Tiny, clip: Path) -> None:
    diffusers_backend = backend()
    diffusers_backend._loaded = None
    with pytest.raises(InvalidRequest) as info:  # 12 frames at 16 fps (0.75 s) cannot fill 9 frames at 8 fps
        run(tiny_checkpoint("cogvideox"), frames=9, fps=8, source_video=str(clip), strength=0.5)
    assert info.value.field == "source_video" and "num_frames at most 5 at 8 fps" in str(info.value)
    assert diffusers_backend._loaded is None


def test_the_source_is_resampled_to_the_output_fps(tiny_checkpoint: Tiny, clip: Path, calls: list[Any]) -> None:
    """Output frame i shows the source frame on screen at i / fps: at 8 fps from a 16 fps clip, every other one."""
    run(tiny_checkpoint("wan-t2v"), fps=8, source_video=str(clip), strength=0.5)
    _name, kwargs = calls[-1]
    source = source_frames_as_read(clip)
    given = np.stack([np.asarray(img) for img in kwargs["video"]]).astype(int)
    expected = source[[0, 2, 4, 6, 8]].astype(int)
    assert np.abs(given.mean(axis=(1, 2, 3)) - expected.mean(axis=(1, 2, 3))).max() < 3
    run(tiny_checkpoint("wan-t2v"), fps=16, source_video=str(clip), strength=0.5)
    given = np.stack([np.asarray(img) for img in calls[-1][1]["video"]]).astype(int)
    assert np.abs(given.mean(axis=(1, 2, 3)) - source[:5].astype(int).mean(axis=(1, 2, 3))).max() < 3


def test_ltx_edit_encodes_the_source_in_the_vae_dtype(
    tiny_checkpoint: Tiny, clip: Path, calls: list[Any], dtypes: dict[str, list[Any]]
) -> None:
    """LTXConditionPipeline edits from ``latents`` (the source, encoded) and ``denoise_strength``."""
    folder = tiny_checkpoint("ltx")
    run(folder, frames=9, options={"dtype": "bfloat16"})
    first = loaded().pipe
    dtypes["encode"].clear()
    dtypes["transformer"].clear()
    result = run(folder, frames=9, source_video=str(clip), strength=0.5, options={"dtype": "bfloat16"})
    pipe = loaded().pipe
    assert type(pipe).__name__ == "LTXConditionPipeline" and pipe.transformer is first.transformer
    name, kwargs = calls[-1]
    assert name == "LTXConditionPipeline" and kwargs["denoise_strength"] == 0.5 and "strength" not in kwargs
    latents = kwargs["latents"]  # (batch, channels, latent frames, h, w): the shape prepare_latents checks
    assert tuple(latents.shape) == (1, 8, 3, 8, 8) and latents.dtype == torch.bfloat16
    assert set(dtypes["encode"]) == {("bfloat16", "bfloat16")}
    assert dtypes["transformer"] and set(dtypes["transformer"]) == {("bfloat16", "bfloat16")}
    assert result.video.frames.shape == (9, 32, 32, 3)
    assert result.recipe["options"]["_pipeline"]["strength_argument"] == "denoise_strength"


def test_ltx_edit_latents_are_the_source(tiny_checkpoint: Tiny, clip: Path, calls: list[Any]) -> None:
    """The latents handed over are the clip's: a different source gives different latents, the same the same."""
    folder = tiny_checkpoint("ltx")
    run(folder, frames=9, source_video=str(clip), strength=0.5)
    once = calls[-1][1]["latents"].clone()
    run(folder, frames=9, source_video=str(clip), strength=0.75)
    assert torch.equal(calls[-1][1]["latents"], once)
    frames = source_frames_as_read(clip)
    other = clip.parent / "reversed.mp4"
    kinema.Video(frames[::-1].copy(), fps=16).save(other)
    run(folder, frames=9, source_video=str(other), strength=0.5)
    assert not torch.equal(calls[-1][1]["latents"], once)


def test_edit_reproduces_from_its_recipe(tiny_checkpoint: Tiny, clip: Path) -> None:
    from kinema.engine import request_from_recipe

    first = run(tiny_checkpoint("wan-t2v"), source_video=str(clip), strength=0.5)
    with pytest.raises(InvalidRequest) as info:  # the source is recorded by digest: it must be given again
        request_from_recipe(first.recipe)
    assert info.value.field == "source_video" and "--edit" in str(info.value)
    again = kinema.run(request_from_recipe(first.recipe, source_video=str(clip)))
    assert again.recipe["strength"] == 0.5 and again.recipe["mode"] == "edit"
    assert np.array_equal(again.video.frames, first.video.frames)


# -- 2. keyframes ----------------------------------------------------------------------------------------------------


def test_wan_flf2v_keyframes_take_last_image(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path, calls: list[Any], dtypes: dict[str, list[Any]]
) -> None:
    folder = tiny_checkpoint("wan-flf2v")
    result = run(folder, image=str(image_file), last_image=str(last_file), options={"dtype": "bfloat16"})
    name, kwargs = calls[-1]
    assert name == "WanImageToVideoPipeline"
    assert np.asarray(kwargs["last_image"]).reshape(-1, 3).mean(axis=0)[0] > 240  # our red frame, at 32x32
    assert kwargs["last_image"].size == kwargs["image"].size == (32, 32)
    pipe = loaded().pipe
    assert pipe.vae.dtype == torch.float32 and pipe.image_encoder.dtype == torch.float32
    assert set(dtypes["encode"]) == {("float32", "float32")}
    # the latents and both images' CLIP tokens reach the transformer in its own dtype
    assert dtypes["transformer"] and set(dtypes["transformer"]) == {("bfloat16", "bfloat16")}
    assert dtypes["image_tokens"] and set(dtypes["image_tokens"]) == {("bfloat16", "bfloat16")}
    assert result.recipe["mode"] == "keyframes" and result.recipe["last_image"]["sha256"]
    assert "last_image" not in result.recipe["options"]
    # the option of old does the same, with a word about the field
    alias = run(folder, image=str(image_file), options={"dtype": "bfloat16", "last_image": str(last_file)})
    assert np.array_equal(alias.video.frames, result.video.frames)
    assert any("options.last_image is kept" in w for w in alias.warnings)


def test_keyframes_refusals_on_wan(tiny_checkpoint: Tiny, image_file: Path, last_file: Path) -> None:
    flf2v = str(tiny_checkpoint("wan-flf2v"))
    with pytest.raises(InvalidRequest) as info:  # WanImageToVideoPipeline needs the first frame
        kinema.plan(request(flf2v, last_image=str(last_file)), check_available=False)
    assert info.value.field == "image" and "LTX-Video" in str(info.value)
    with pytest.raises(InvalidRequest) as info:  # the last frame twice
        kinema.plan(
            request(flf2v, image=str(image_file), last_image=str(last_file), options={"last_image": str(last_file)}),
            check_available=False,
        )
    assert info.value.field == "options.last_image" and "second time" in str(info.value)
    with pytest.raises(InvalidRequest) as info:  # Wan2.1 I2V reads one image's CLIP tokens
        kinema.plan(
            request(str(tiny_checkpoint("wan-i2v")), image=str(image_file), last_image=str(last_file)),
            check_available=False,
        )
    assert info.value.field == "last_image" and "wan2.1-flf2v-14b-720p" in str(info.value)


def test_ltx_keyframes_condition_the_first_and_last_frames(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path, calls: list[Any], dtypes: dict[str, list[Any]]
) -> None:
    folder = tiny_checkpoint("ltx")
    run(folder, frames=9, options={"dtype": "bfloat16"})
    first = loaded().pipe
    dtypes["encode"].clear()
    dtypes["transformer"].clear()
    both = run(folder, frames=9, image=str(image_file), last_image=str(last_file), options={"dtype": "bfloat16"})
    assert type(loaded().pipe).__name__ == "LTXConditionPipeline" and loaded().pipe.transformer is first.transformer
    conditions = calls[-1][1]["conditions"]
    assert [(c.frame_index, c.strength, c.image.size) for c in conditions] == [(0, 1.0, (32, 32)), (8, 1.0, (32, 32))]
    assert np.asarray(conditions[1].image).reshape(-1, 3).mean(axis=0)[0] > 240
    assert dtypes["encode"] and set(dtypes["encode"]) == {("bfloat16", "bfloat16")}  # both images, VAE dtype
    assert set(dtypes["transformer"]) == {("bfloat16", "bfloat16")}
    last_only = run(folder, frames=9, last_image=str(last_file), options={"dtype": "bfloat16"})
    assert [c.frame_index for c in calls[-1][1]["conditions"]] == [8]
    assert both.video.frames.shape == last_only.video.frames.shape == (9, 32, 32, 3)
    assert not np.array_equal(both.video.frames, last_only.video.frames)
    assert last_only.recipe["mode"] == "keyframes" and last_only.recipe["image"] is None


def test_ltx_timed_keyframes_become_conditions_at_their_frames(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path, calls: list[Any]
) -> None:
    folder = tiny_checkpoint("ltx")
    # 9 frames at 16 fps (run()'s): 0.25 s lands on frame 4
    result = run(
        folder,
        frames=9,
        image=str(image_file),
        last_image=str(last_file),
        keyframes=[{"time": 0.25, "image": str(last_file)}],
    )
    conditions = calls[-1][1]["conditions"]
    assert [c.frame_index for c in conditions] == [0, 4, 8]
    assert np.asarray(conditions[1].image).reshape(-1, 3).mean(axis=0)[0] > 240  # the keyframe's own image
    assert result.recipe["keyframes"][0]["frame"] == 4
    alone = run(folder, frames=9, keyframes=[{"time": 0.25, "image": str(last_file)}])
    assert [c.frame_index for c in calls[-1][1]["conditions"]] == [4] and alone.recipe["mode"] == "keyframes"
    # Wan's first-last-frame models take no images at given times: refused at planning, naming the field
    with pytest.raises(InvalidRequest) as exc:
        kinema.plan(
            request(
                "wan2.1-flf2v-14b-720p",
                image=str(image_file),
                last_image=str(last_file),
                keyframes=[{"time": 1.0, "image": str(last_file)}],
            )
        )
    assert exc.value.field == "keyframes" and "ltx-video" in str(exc.value.allowed)


# -- 3. references (Wan VACE) ---------------------------------------------------------------------------------------


def test_vace_references_reach_the_pipeline_in_the_right_dtypes(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path, calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import diffusers

    folder = tiny_checkpoint("wan-vace")
    seen: dict[str, Any] = {}
    forward = diffusers.WanVACETransformer3DModel.forward

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen["hidden"], seen["control"] = kwargs["hidden_states"].dtype, kwargs["control_hidden_states"].dtype
        seen["frames"] = kwargs["hidden_states"].shape[2]
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.WanVACETransformer3DModel, "forward", functools.wraps(forward)(spy))
    encode = diffusers.AutoencoderKLWan.encode
    encoded: list[tuple[Any, Any]] = []

    def encode_spy(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        encoded.append((x.dtype, self.dtype))
        return encode(self, x, *args, **kwargs)

    monkeypatch.setattr(diffusers.AutoencoderKLWan, "encode", functools.wraps(encode)(encode_spy))
    import diffusers.pipelines.wan.pipeline_wan_vace as vace_module

    original_call = vace_module.WanVACEPipeline.__call__
    got: list[dict[str, Any]] = []

    def call_spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        got.append(kwargs)
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(vace_module.WanVACEPipeline, "__call__", functools.wraps(original_call)(call_spy))
    plain = run(folder, options={"dtype": "bfloat16"})
    one = run(folder, references=[str(last_file)], options={"dtype": "bfloat16"})
    two = run(folder, references=[str(last_file), str(image_file)], options={"dtype": "bfloat16"})
    refs = got[-1]["reference_images"]
    assert [r.size for r in refs] == [(48, 40), (48, 40)]  # as given: the pipeline letterboxes them itself
    assert np.asarray(refs[0]).reshape(-1, 3).mean(axis=0)[0] > 240
    # 5 frames are 2 latent frames; two references add two in front (trimmed from the output)
    assert seen["frames"] == 4 and seen["hidden"] == seen["control"] == torch.bfloat16
    pipe = loaded().pipe
    assert type(pipe).__name__ == "WanVACEPipeline" and pipe.transformer.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32 and set(encoded) == {(torch.float32, torch.float32)}
    assert plain.video.frames.shape == one.video.frames.shape == two.video.frames.shape == (5, 32, 32, 3)
    assert not np.array_equal(one.video.frames, plain.video.frames)
    assert not np.array_equal(two.video.frames, one.video.frames)
    assert two.recipe["mode"] == "references" and len(two.recipe["references"]) == 2
    assert all(r["sha256"] for r in two.recipe["references"])


def test_vace_catalog_entries_and_their_limits(tiny_checkpoint: Tiny, last_file: Path) -> None:
    from kinema.backends.catalog import CATALOG

    small, large = CATALOG["wan2.1-vace-1.3b"], CATALOG["wan2.1-vace-14b"]
    assert small.repo == "Wan-AI/Wan2.1-VACE-1.3B-diffusers" and large.repo == "Wan-AI/Wan2.1-VACE-14B-diffusers"
    assert small.pipeline == large.pipeline == "WanVACEPipeline" and small.modes == ("t2v", "references")
    assert small.capabilities().max_references == large.capabilities().max_references == 3
    # the VACE blocks on top of the T2V transformers: more memory than the T2V entries at the same size
    assert small.memory_table()["none"]["16bit"] > CATALOG["wan2.1-t2v-1.3b"].memory_table()["none"]["16bit"]
    assert large.memory("model").gpu_gb > CATALOG["wan2.1-t2v-14b"].memory("model").gpu_gb
    assert large.to_dict()["memory_gb"]["model"]["int8"] < large.to_dict()["memory_gb"]["model"]["16bit"]
    assert backend().capabilities(str(tiny_checkpoint("wan-vace"))).max_references == 3
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(request("wan2.1-vace-1.3b", references=[str(last_file)] * 4), check_available=False)
    assert info.value.field == "references" and "at most 3" in str(info.value)
    plan = kinema.plan(request("wan2.1-vace-1.3b", references=[str(last_file)] * 3), check_available=False)
    assert plan.params.mode == "references" and plan.params.options["_pipeline"]["class"] == "WanVACEPipeline"


# -- 4. what each family refuses, before anything loads ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        ("hunyuanvideo", {"source_video": "CLIP"}, "source_video"),
        ("svd", {"source_video": "CLIP"}, "source_video"),
        ("modelscope-t2v", {"source_video": "CLIP"}, "source_video"),
        ("cogvideox-5b-i2v", {"source_video": "CLIP"}, "source_video"),  # its transformer takes image latents
        ("wan2.2-t2v-a14b", {"source_video": "CLIP"}, "source_video"),  # WanVideoToVideo has one expert
        ("wan2.2-ti2v-5b", {"source_video": "CLIP"}, "source_video"),  # no expand_timesteps in WanVideoToVideo
        ("wan2.1-i2v-14b-480p", {"source_video": "CLIP"}, "source_video"),
        ("hunyuanvideo", {"last_image": "LAST"}, "last_image"),
        ("cogvideox-5b", {"last_image": "LAST"}, "last_image"),
        ("wan2.1-t2v-1.3b", {"last_image": "LAST"}, "last_image"),
        ("wan2.1-i2v-14b-720p", {"image": "LAST", "last_image": "LAST"}, "last_image"),
        ("svd", {"last_image": "LAST"}, "last_image"),
        ("ltx-video", {"references": ["LAST"]}, "references"),
        ("wan2.1-t2v-14b", {"references": ["LAST", "LAST"]}, "references"),
        ("wan2.1-vace-14b", {"source_video": "CLIP"}, "source_video"),
    ],
)
def test_each_family_refuses_the_modes_it_lacks(
    model: str, fields: dict[str, Any], field: str, clip: Path, last_file: Path
) -> None:
    files = {"CLIP": str(clip), "LAST": str(last_file)}
    given = {k: [files[x] for x in v] if isinstance(v, list) else files[v] for k, v in fields.items()}
    diffusers_backend = backend()
    diffusers_backend._loaded = None
    with pytest.raises(InvalidRequest) as info:
        kinema.plan(request(model, **given), check_available=False)
    assert info.value.field == field
    text = str(info.value)
    if field == "source_video":  # where to go instead: other backends, and this backend's models that edit
        assert "video editing" in text and "builtin" in text
        assert "diffusers (wan2.1-t2v-1.3b, wan2.1-t2v-14b, ltx-video, cogvideox-2b, ...)" in text
    if field == "last_image":  # the default model does no keyframes, so the planner names the models that do
        assert "diffusers (wan2.1-flf2v-14b-720p, wan2.2-i2v-a14b, ltx-video)" in text
    if field == "references":  # the planner names the diffusers models that do
        assert "does not support reference images" in text and "diffusers (wan2.1-vace-1.3b, wan2.1-vace-14b)" in text
    assert diffusers_backend._loaded is None


def test_checkpoint_folders_get_the_modes_of_their_layout(tiny_checkpoint: Tiny) -> None:
    modes = {
        name: backend().capabilities(str(tiny_checkpoint(name))).modes
        for name in (
            "wan-t2v",
            "wan22-a14b",
            "wan22-ti2v",
            "wan-i2v",
            "wan-flf2v",
            "ltx",
            "cogvideox",
            "cogvideox-i2v",
            "hunyuan",
        )
    }
    assert "edit" in modes["wan-t2v"] and "edit" in modes["ltx"] and "edit" in modes["cogvideox"]
    assert "keyframes" in modes["wan-flf2v"] and "keyframes" in modes["ltx"]
    for name in ("wan22-a14b", "wan22-ti2v", "wan-i2v", "cogvideox-i2v", "hunyuan"):
        assert "edit" not in modes[name], name
    for name in ("wan-t2v", "wan22-a14b", "wan-i2v", "cogvideox", "hunyuan"):
        assert "keyframes" not in modes[name], name
    assert all("references" not in m for m in modes.values())
    assert backend().capabilities(str(tiny_checkpoint("wan-vace"))).modes == ("t2v", "references")


# -- 5. the other options on the edit path ----------------------------------------------------------------------------


def test_edit_with_cache_lora_and_text_encoder_on_the_cpu(tiny_checkpoint: Tiny, clip: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from test_local_options import make_lora

    folder = tiny_checkpoint("wan-t2v")
    lora = make_lora(folder, tmp_path / "lora")
    plain = run(folder, source_video=str(clip), strength=0.75).video.frames
    run(folder, options={"lora": f"{lora}:1.5"})  # text-to-video first: the edit must keep its adapter
    with_lora = run(folder, source_video=str(clip), strength=0.75, options={"lora": f"{lora}:1.5"}).video.frames
    pipe = loaded().pipe
    assert type(pipe).__name__ == "WanVideoToVideoPipeline" and "kinema_lora_0" in pipe.transformer.peft_config
    assert np.abs(with_lora.astype(int) - plain.astype(int)).max() > 3  # the LoRA acts on the edit
    run(folder, options={"text_encoder_device": "cpu"})
    cpu_text = run(folder, source_video=str(clip), strength=0.75, options={"text_encoder_device": "cpu"})
    assert loaded().pipe.text_encoder is None  # still kept off the switched pipeline
    assert np.abs(cpu_text.video.frames.astype(int) - plain.astype(int)).max() <= 1


def test_cache_hooks_on_the_edit_pipelines_that_mark_their_passes(tiny_checkpoint: Tiny, clip: Path) -> None:
    for cache in ("firstblock", "taylorseer"):
        options = {"cache": cache, "cache_threshold": 0.5}
        for name in ("cogvideox", "ltx"):
            cached = run(tiny_checkpoint(name), frames=9, source_video=str(clip), strength=0.75, options=options)
            assert loaded().pipe.transformer.is_cache_enabled and cached.video.frames.shape == (9, 32, 32, 3)
            assert cached.video.frames.std() > 0
        # WanVideoToVideoPipeline (diffusers 0.42) opens no cache_context: its first step would fail mid-run
        backend()._loaded = None
        with pytest.raises(InvalidRequest) as info:
            run(tiny_checkpoint("wan-t2v"), source_video=str(clip), strength=0.75, options=options)
        assert info.value.field == "options.cache" and "WanVideoToVideoPipeline" in str(info.value)
        assert backend()._loaded is None


def test_edit_with_int8_weights(tiny_checkpoint: Tiny, clip: Path) -> None:
    pytest.importorskip("torchao")
    folder = tiny_checkpoint("wan-t2v")
    plain = run(folder, source_video=str(clip), strength=0.75).video.frames.astype(np.float32)
    int8 = run(folder, source_video=str(clip), strength=0.75, options={"quantize": "int8"}).video.frames
    assert "Int8" in type(loaded().pipe.transformer.blocks[0].attn1.to_q.weight).__name__
    assert np.abs(int8.astype(np.float32) - plain).mean() < 2.0


def test_edit_with_compile(tiny_checkpoint: Tiny, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamo traces the blocks for real on the edit path (the eager backend skips only code generation)."""
    from diffusers.models.modeling_utils import ModelMixin

    original = ModelMixin.compile_repeated_blocks
    compiled: list[str] = []

    def eager(self: Any, *args: Any, **kwargs: Any) -> None:
        compiled.append(type(self).__name__)
        original(self, *args, backend="eager", **kwargs)

    monkeypatch.setattr(ModelMixin, "compile_repeated_blocks", eager)
    result = run(tiny_checkpoint("wan-t2v"), source_video=str(clip), strength=0.5, options={"compile": True})
    assert compiled == ["WanTransformer3DModel"] and result.video.frames.shape == (5, 32, 32, 3)


def test_edit_with_a_gguf_transformer_file(tiny_checkpoint: Tiny, clip: Path, tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    from tiny_checkpoints import write_wan_gguf

    folder = tiny_checkpoint("wan-t2v")
    path, _quantized = write_wan_gguf(folder, tmp_path / "tiny-wan-Q8_0.gguf")
    plain = run(folder, source_video=str(clip), strength=0.75).video.frames.astype(np.float32)
    gguf = run(folder, source_video=str(clip), strength=0.75, options={"transformer_file": str(path)})
    assert type(loaded().pipe).__name__ == "WanVideoToVideoPipeline"
    assert np.abs(gguf.video.frames.astype(np.float32) - plain).mean() < 3.0


def test_keyframes_and_references_with_the_other_options(
    tiny_checkpoint: Tiny, image_file: Path, last_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keyframe and reference pipelines open cache contexts: the cache hooks, int8 weights and compile apply."""
    pytest.importorskip("torchao")
    from diffusers.models.modeling_utils import ModelMixin

    original = ModelMixin.compile_repeated_blocks
    compiled: list[str] = []

    def eager(self: Any, *args: Any, **kwargs: Any) -> None:
        compiled.append(type(self).__name__)
        original(self, *args, backend="eager", **kwargs)

    monkeypatch.setattr(ModelMixin, "compile_repeated_blocks", eager)
    cache = {"cache": "firstblock", "cache_threshold": 0.5}
    ltx = run(tiny_checkpoint("ltx"), frames=9, image=str(image_file), last_image=str(last_file), options=cache)
    assert loaded().pipe.transformer.is_cache_enabled and ltx.video.frames.shape == (9, 32, 32, 3)
    flf2v = run(
        tiny_checkpoint("wan-flf2v"),
        image=str(image_file),
        last_image=str(last_file),
        options={"quantize": "int8", "compile": True, **cache},
    )
    assert "Int8" in type(loaded().pipe.transformer.blocks[0].attn1.to_q.weight).__name__
    assert loaded().pipe.transformer.is_cache_enabled and flf2v.video.frames.shape == (5, 32, 32, 3)
    vace = run(tiny_checkpoint("wan-vace"), references=[str(last_file)], options={"compile": True, **cache})
    assert loaded().pipe.transformer.is_cache_enabled and vace.video.frames.shape == (5, 32, 32, 3)
    assert compiled == ["WanTransformer3DModel", "WanVACETransformer3DModel"]


def test_magcache_calibrates_the_steps_an_edit_runs(tiny_checkpoint: Tiny, clip: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers.hooks.mag_cache")
    import json

    ratios = tmp_path / "edit.magcache.json"
    run(
        tiny_checkpoint("ltx"),
        steps=6,
        frames=9,
        source_video=str(clip),
        strength=0.5,
        options={"cache": "magcache", "cache_calibrate": True, "cache_ratios": str(ratios)},
    )
    saved = json.loads(ratios.read_text())
    assert saved["num_inference_steps"] == 3 and len(saved["mag_ratios"]) == 3  # int(6 x 0.5) steps ran


def test_split_sequence_is_refused_on_edit_and_keyframes(
    tiny_checkpoint: Tiny, clip: Path, image_file: Path, last_file: Path
) -> None:
    for model, fields in (
        (tiny_checkpoint("wan-t2v"), {"source_video": str(clip)}),
        (tiny_checkpoint("wan-flf2v"), {"image": str(image_file), "last_image": str(last_file)}),
    ):
        with pytest.raises(InvalidRequest) as info:
            kinema.plan(request(str(model), options={"ulysses": 2}, **fields), check_available=False)
        assert info.value.field == "options.ulysses" and "not tested" in str(info.value)


# -- 6. memory -------------------------------------------------------------------------------------------------------


def test_memory_estimate_of_the_edit_and_keyframe_paths() -> None:
    """The edit and keyframe pipelines hold the same components as the loaded one: the same estimate (the source's
    encode at the output size is within the activations and decode term)."""
    from kinema.backends.catalog import CATALOG
    from kinema.backends.diffusers import DiffusersBackend, locate, memory_estimate, validate_options

    opts = validate_options({"offload": "model"})
    for model, mode in (
        ("wan2.1-t2v-14b", "edit"),
        ("ltx-video", "edit"),
        ("cogvideox-5b", "edit"),
        ("ltx-video", "keyframes"),
        ("wan2.1-flf2v-14b-720p", "keyframes"),
    ):
        located = locate(model)
        cls = DiffusersBackend._pipeline_class(located, mode)
        dtypes = (
            {"default": torch.bfloat16, "vae": torch.float32}
            if located.family.name == "wan"
            else {"default": torch.bfloat16}
        )
        size = (*located.capabilities.default_size, located.capabilities.default_frames)
        with_mode = memory_estimate(located, opts, dtypes, size, cls)
        assert with_mode == memory_estimate(located, opts, dtypes, size, located.class_name)
        assert abs(with_mode.gpu_gb - CATALOG[model].memory("model").gpu_gb) < 0.05, model
    assert CATALOG["wan2.1-t2v-14b"].memory_table()["model"]["16bit"] == CATALOG["wan2.1-t2v-14b"].min_gpu_gb
