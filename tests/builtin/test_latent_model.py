"""The built-in model v2: the DiT in the autoencoder's latent, its checkpoint, sampling, training stages and CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kinema.builtin import FORMATS, is_checkpoint, load_model, save_model, world
from kinema.builtin.autoencoder import AE_CONFIGS, AEConfig, VideoAutoencoder, save_autoencoder
from kinema.builtin.model import CONFIGS, ModelConfig, Tokenizer, VideoDiT, first_known
from kinema.builtin.sampling import LatentSpace, sample, space_of
from kinema.builtin.train import TRAIN_PRESETS, TrainConfig, train
from kinema.cli import app
from kinema.errors import InvalidRequest


def _config(name: str) -> ModelConfig:
    return ModelConfig(vocab=world.vocabulary(), cameras=list(world.CAMERAS), **CONFIGS[name])  # type: ignore[arg-type]


def _tiny_v1(path: Path) -> Path:
    """A tiny checkpoint in v1's format (pixels, no autoencoder), saved to ``path``."""
    torch.manual_seed(0)
    return save_model(VideoDiT(_config("tiny")), path)


def _tiny_pair() -> tuple[VideoDiT, VideoAutoencoder]:
    torch.manual_seed(0)
    model = VideoDiT(_config("tiny-v2"))
    with torch.no_grad():  # adaLN-Zero and the zero output head would make every prediction 0
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.05)
    ae = VideoAutoencoder(AEConfig(**AE_CONFIGS["tiny"])).eval()
    return model.eval(), ae


def test_v2_works_in_the_latent_with_v1s_token_count() -> None:
    v1, v2 = _config("cpu"), _config("v2")
    assert (v2.height, v2.width) == (128, 128)  # pixels outside the model
    assert v2.space == (16, 32, 32)  # the f4 latent inside
    ae = AEConfig(**AE_CONFIGS["f4"])
    assert (ae.factor, ae.latent) == (v2.latent_factor, v2.channels)
    assert v2.grid == v1.grid and v2.num_tokens == v1.num_tokens == 256  # the same cost per step as v1
    dit = VideoDiT(v2)
    assert dit.patch_dim_out == 8 * 4 * 4 * 4  # a token draws 4x4 latent cells by 4 frames
    assert dit.patch_dim_in == (8 + 8 + 1 + 8) * 64  # noisy latent, known latent, mask, first known frame
    x = torch.randn(1, 8, 16, 32, 32)
    text = dit.encode_text(torch.zeros(1, v2.text_len, dtype=torch.long))
    out = dit(x, torch.tensor([0.5]), text, torch.zeros_like(x), torch.zeros(1, 1, 16, 32, 32))
    assert out.shape == x.shape


def test_first_known_takes_the_earliest_given_frame_or_zeros() -> None:
    cond = torch.arange(2 * 1 * 4).float().view(2, 1, 4, 1, 1).expand(2, 1, 4, 2, 2).clone()
    mask = torch.zeros(2, 1, 4, 2, 2)
    mask[0, :, 2:] = 1  # clip 0: frames 2 and 3 given -> frame 2
    got = first_known(cond * mask, mask)
    assert got.shape == (2, 1, 1, 2, 2)
    assert torch.all(got[0] == 2.0) and torch.all(got[1] == 0.0)  # clip 1: nothing given -> zeros


def _last_patch_inputs(ref_frame: bool) -> list[torch.Tensor]:
    """The patch embedding's input rows of the last temporal patch's tokens, for two given first frames."""
    torch.manual_seed(0)
    flags = {"ref_frame": ref_frame, "ref_residual": ref_frame}
    model = VideoDiT(ModelConfig(**{**_config("tiny-v2").to_dict(), **flags}))  # type: ignore[arg-type]
    cfg = model.cfg
    f, h, w = cfg.space
    x = torch.randn(1, cfg.channels, f, h, w)
    mask = torch.zeros(1, 1, f, h, w)
    mask[:, :, 0] = 1
    text = model.encode_text(torch.zeros(1, cfg.text_len, dtype=torch.long))
    seen: list[torch.Tensor] = []
    model.patch.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    for value in (0.0, 1.0):
        model(x, torch.tensor([0.9]), text, torch.full_like(x, value) * mask, mask)
    gt, gh, gw = cfg.grid
    return [rows[:, (gt - 1) * gh * gw :] for rows in seen]


def test_the_given_image_reaches_every_frame_through_ref_frame() -> None:
    """With ref_frame, the given image is part of the input of the last temporal patch's tokens (not only reached
    through attention); without it, those tokens' inputs do not depend on it."""
    with_ref = _last_patch_inputs(True)
    assert (with_ref[0] - with_ref[1]).abs().max() > 0
    without = _last_patch_inputs(False)
    assert torch.equal(without[0], without[1])


def _ref_residual_case(model: VideoDiT, given: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prediction, known frames, mask) for a random noisy latent, with frame 0 given or nothing given."""
    cfg = model.cfg
    f, h, w = cfg.space
    x = torch.randn(1, cfg.channels, f, h, w)
    mask = torch.zeros(1, 1, f, h, w)
    if given:
        mask[:, :, 0] = 1
    cond = torch.randn_like(x) * mask
    text = model.encode_text(torch.zeros(1, cfg.text_len, dtype=torch.long))
    with torch.no_grad():
        return model(x, torch.tensor([0.9]), text, cond, mask), cond, mask


def test_ref_residual_copies_the_given_frame_where_its_gate_opens() -> None:
    """A fresh model predicts zeros for free frames (its heads start at zero); with the gate's bias at 1 the
    prediction of every free frame is the given frame itself, and of the given frame the given frame (the known
    residual, not twice). Text-to-video has no reference, so the gate changes nothing there."""
    torch.manual_seed(0)
    model = VideoDiT(_config("tiny-v2")).eval()
    # one gate per latent cell (tiny-v2: 2x4x4 cells a token)
    assert model.cfg.ref_residual and model.ref_gate.out_features == 2 * 4 * 4
    closed, _, _ = _ref_residual_case(model, given=True)
    assert torch.equal(closed[:, :, 1:], torch.zeros_like(closed[:, :, 1:]))
    with torch.no_grad():
        model.ref_gate.bias.fill_(1.0)
    torch.manual_seed(1)
    opened, cond, _ = _ref_residual_case(model, given=True)
    expected = cond[:, :, :1].expand_as(opened)
    assert torch.allclose(opened, expected)  # frame 0 once, and every later frame the given image
    torch.manual_seed(1)
    t2v, _, _ = _ref_residual_case(model, given=False)
    assert torch.equal(t2v, torch.zeros_like(t2v))
    with pytest.raises(ValueError, match="ref_frame"):
        VideoDiT(ModelConfig(**{**_config("tiny-v2").to_dict(), "ref_frame": False}))  # type: ignore[arg-type]


def test_a_checkpoint_without_the_ref_gate_fine_tunes_with_it_unchanged(tmp_path: Path) -> None:
    """Switching ref_residual on for a fine-tune starts the gate at zero: the model predicts what the checkpoint did
    before."""
    from kinema.builtin.train import _init_from

    base, ae = _tiny_pair()
    off = ModelConfig(**{**base.cfg.to_dict(), "ref_residual": False})  # type: ignore[arg-type]
    before = VideoDiT(off).eval()
    before.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("ref_gate.")})
    path = save_model(before, tmp_path / "before.safetensors", {}, autoencoder=ae)
    stored, _, _ = load_model(path)
    after = VideoDiT(base.cfg).eval()
    assert _init_from(after, str(path)) == ["ref_gate.weight", "ref_gate.bias"]
    for given in (True, False):
        torch.manual_seed(3)
        a = _ref_residual_case(stored.eval(), given)[0]
        torch.manual_seed(3)
        b = _ref_residual_case(after, given)[0]
        assert torch.equal(a, b)


def test_ref_mix_moves_free_frames_towards_the_given_frame_by_its_gate(tmp_path: Path) -> None:
    """With ref_mix, a fresh gate moves the free frames sigmoid(-4) (2%) of the way from the network's output to the
    given frame, a gate fully open copies it exactly, the given frame stays the given frame, and text-to-video is
    untouched whatever the gate. A checkpoint whose gate added starts the mixing gate fresh (not at its bias of about
    0, which would be half-way)."""
    from kinema.builtin.model import REF_MIX_START
    from kinema.builtin.train import _init_from

    torch.manual_seed(0)
    plain = VideoDiT(_config("tiny-v2")).eval()
    with torch.no_grad():  # a network whose own output is not zero, so the mix shows
        plain.out.bias.normal_()
    mixing = VideoDiT(ModelConfig(**{**plain.cfg.to_dict(), "ref_mix": True})).eval()  # type: ignore[arg-type]
    trunk = {k: v for k, v in plain.state_dict().items() if not k.startswith("ref_gate.")}
    mixing.load_state_dict(trunk, strict=False)
    assert torch.all(mixing.ref_gate.bias == REF_MIX_START)
    torch.manual_seed(1)
    net, cond, _ = _ref_residual_case(plain, given=True)  # plain's gate is zero: its output alone
    torch.manual_seed(1)
    mixed, _, _ = _ref_residual_case(mixing, given=True)
    m = torch.sigmoid(torch.tensor(REF_MIX_START))
    ref = cond[:, :, :1]
    assert torch.allclose(mixed[:, :, 1:], net[:, :, 1:] + m * (ref - net[:, :, 1:]), atol=1e-6)
    assert torch.allclose(mixed[:, :, :1], net[:, :, :1])  # the given frame: the known residual, no mix
    with torch.no_grad():
        mixing.ref_gate.bias.fill_(30.0)
    torch.manual_seed(1)
    copied, _, _ = _ref_residual_case(mixing, given=True)
    assert torch.allclose(copied[:, :, 1:], ref.expand_as(copied[:, :, 1:]), atol=1e-5)
    for model in (plain, mixing):  # no known frame: the mix must not pull the clip towards the zero reference
        torch.manual_seed(2)
        t2v = _ref_residual_case(model, given=False)[0]
        torch.manual_seed(2)
        assert torch.equal(t2v, _ref_residual_case(plain, given=False)[0])
    with pytest.raises(ValueError, match="ref_residual"):
        VideoDiT(ModelConfig(**{**plain.cfg.to_dict(), "ref_residual": False, "ref_mix": True}))  # type: ignore[arg-type]
    _, ae = _tiny_pair()
    path = save_model(plain, tmp_path / "adding.safetensors", {}, autoencoder=ae)
    fresh = VideoDiT(mixing.cfg)
    assert _init_from(fresh, str(path)) == ["ref_gate.weight", "ref_gate.bias"]
    assert torch.all(fresh.ref_gate.bias == REF_MIX_START) and torch.all(fresh.ref_gate.weight == 0)


def test_camera_warp_moves_the_first_frame_as_the_world_films_it() -> None:
    """camera_warp(frame 0, camera) is what that camera sees later: on a world clip of a sun over mountains it matches
    the real frame 15 far better than frame 0 held still does (measured 30.6 against 19.1 dB for a pan, 30.4 against
    17.6 for a zoom in), frame 0 comes back exactly, a still camera changes nothing, and what the move reveals is
    marked unseen (a pan left reveals the left edge)."""
    from kinema.builtin.evaluate import psnr
    from kinema.builtin.sampling import camera_warp, to_model_space, to_uint8

    for camera in ("pan_left", "tilt_up", "zoom_in", "static"):
        scene = world.Scene("day", "sun", "mountains", "clear", camera)
        clip = world.render(scene, np.random.default_rng(0), height=128, width=128)
        moved, seen = camera_warp(to_model_space(clip[None, :1])[:, :, 0], [camera], 16)
        frames = to_uint8(moved)[0]
        assert np.array_equal(frames[0], clip[0]) and seen.shape == (1, 1, 16, 128, 128)
        if camera == "static":
            assert np.array_equal(frames[15], clip[0]) and bool(seen.all())
        else:
            assert psnr(frames[15], clip[15]) > psnr(clip[0], clip[15]) + 8
    pan_seen = camera_warp(torch.zeros(1, 1, 32, 32), ["pan_left"], 16)[1][0, 0, 15]  # (H, W)
    assert not pan_seen[:, 0].any() and pan_seen[:, -1].all()


def test_sampling_copies_the_given_frame_along_the_camera_path(tmp_path: Path) -> None:
    """With ref_mix and warp_reference (the shipped v2's), the gate copies the first known frame moved along each
    clip's camera path: a still camera gives the in-place copy's clip exactly, a pan another one; warp_reference=False
    (options.warp_reference false) is the in-place copy of training; a non-boolean option is refused by name."""
    import kinema

    model, ae = _tiny_pair()
    cfg = ModelConfig(**{**model.cfg.to_dict(), "ref_mix": True, "warp_reference": True})  # type: ignore[arg-type]
    warping = VideoDiT(cfg).eval()
    warping.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        warping.ref_gate.bias.fill_(2.0)  # a gate mostly open, so the copy shows
    warping.autoencoder = ae
    tok = Tokenizer(cfg.vocab, cfg.text_len)
    known = world.render(
        world.Scene("day", "sun", "hills", "clear", "static"), np.random.default_rng(1), height=64, width=64
    )[None, :1]
    run = dict(steps=2, seed=3, known=known, num_known=1)

    def clip(camera: str, warp: bool | None) -> np.ndarray:
        out = sample(warping, tok, ["hills"], cameras=[camera], warp_reference=warp, **run)  # type: ignore[arg-type]
        assert isinstance(out, np.ndarray)
        return out

    assert np.array_equal(clip("static", None), clip("static", False))  # nothing moves: the same copy
    assert np.array_equal(clip("pan_left", None), clip("pan_left", True))  # the configuration's default: warped
    assert not np.array_equal(clip("pan_left", None), clip("pan_left", False))
    path = save_model(warping, tmp_path / "warp.safetensors", {}, autoencoder=ae)
    image = tmp_path / "start.png"
    Image.fromarray(known[0, 0]).save(image)
    common: dict[str, Any] = dict(model=str(path), num_inference_steps=2, seed=3, image=str(image))
    pan = {"camera": "pan_left"}
    on = kinema.generate("hills", **common, options=pan)
    off = kinema.generate("hills", **common, options={**pan, "warp_reference": False})
    assert not np.array_equal(on.video.frames, off.video.frames) and off.recipe["options"]["warp_reference"] is False
    with pytest.raises(InvalidRequest) as exc:
        kinema.generate("hills", **common, options={"warp_reference": "yes"})
    assert exc.value.field == "options.warp_reference"


def test_a_gate_per_value_starts_from_a_gate_per_cell_unchanged(tmp_path: Path) -> None:
    """ref_gate_values: one gate per latent value (channels x cells). From a checkpoint with a gate per cell, every
    channel starts with its cell's gate, so the fine-tune starts from exactly what the checkpoint predicted; each
    channel's gate then acts on its own channel only."""
    from kinema.builtin.train import _init_from

    torch.manual_seed(0)
    cell_cfg = ModelConfig(**{**_config("tiny-v2").to_dict(), "ref_mix": True})  # type: ignore[arg-type]
    cell = VideoDiT(cell_cfg).eval()
    with torch.no_grad():  # a trained-looking gate and network output, so a wrong tiling would show
        cell.out.bias.normal_()
        cell.ref_gate.weight.normal_(std=0.5)
        cell.ref_gate.bias.normal_()
    value_cfg = ModelConfig(**{**cell_cfg.to_dict(), "ref_gate_values": True})  # type: ignore[arg-type]
    value = VideoDiT(value_cfg).eval()
    assert value.ref_gate.out_features == value_cfg.channels * cell.ref_gate.out_features
    _, ae = _tiny_pair()
    path = save_model(cell, tmp_path / "cell.safetensors", {}, autoencoder=ae)
    stored = load_model(path)[0].eval()  # as saved (the file may round the weights)
    assert _init_from(value, str(path)) == []
    for given in (True, False):
        torch.manual_seed(4)
        a = _ref_residual_case(stored, given)[0]
        torch.manual_seed(4)
        b = _ref_residual_case(value, given)[0]
        assert torch.allclose(a, b, atol=1e-6)
    assert value.gate_logits is not None and value.gate_logits.shape[1] == value_cfg.channels
    with torch.no_grad():  # shut channel 0's gates, open the others': only channel 0 keeps the network's output
        bias = value.ref_gate.bias.view(value_cfg.channels, -1)
        bias[0].fill_(-30.0)
        bias[1:].fill_(30.0)
    torch.manual_seed(1)
    mixed, cond, _ = _ref_residual_case(value, given=True)
    ref = cond[:, :, :1].expand_as(mixed)
    assert torch.allclose(mixed[:, 1:, 1:], ref[:, 1:, 1:], atol=1e-5)
    assert not torch.allclose(mixed[:, :1, 1:], ref[:, :1, 1:], atol=1e-2)
    with pytest.raises(ValueError, match="ref_residual"):
        VideoDiT(ModelConfig(**{**value_cfg.to_dict(), "ref_residual": False, "ref_mix": False}))  # type: ignore[arg-type]


def test_the_gate_loss_asks_where_the_clip_stays_as_the_given_frame() -> None:
    """_gate_loss: over the free frames of examples with a known frame, the gate should be open exactly where the real
    clip stays within GATE_STILL of the first known frame. Logits that say so give a loss near 0, the opposite a large
    one; a text-to-video example and the known frames do not count; a gate per cell asks for all its channels."""
    from kinema.builtin.train import GATE_STILL, _gate_loss

    def _gate_loss_first(
        logits: torch.Tensor, x0: torch.Tensor, cond: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        return _gate_loss(logits, x0, first_known(cond, known), known)  # the in-place copy

    torch.manual_seed(0)
    x0 = torch.randn(2, 2, 4, 3, 3)
    x0[:, :, 1:, :2] = x0[:, :, :1, :2] + GATE_STILL / 2  # rows 0-1 stay (within the tolerance), row 2 changes
    x0[:, :, 1:, 2] = x0[:, :, :1, 2] + 1.0
    x0[:, 1, 1:, 1] += 1.0  # ...except row 1 of channel 1
    known = torch.zeros(2, 1, 4, 1, 1)
    known[0, :, 0] = 1.0  # example 0: image-to-video; example 1: text-to-video
    cond = x0 * known
    still = torch.zeros(2, 2, 4, 3, 3, dtype=torch.bool)
    still[:, 0, :, :2] = True
    still[:, 1, :, :1] = True
    right = torch.where(still, 20.0, -20.0)
    assert _gate_loss_first(right, x0, cond, known).item() < 1e-6
    assert _gate_loss_first(-right, x0, cond, known).item() > 10
    other = right.clone()
    other[1] = -other[1]  # the text-to-video example's gate says anything: no change
    other[0, :, 0] = -other[0, :, 0]  # nor does the known frame's
    assert _gate_loss_first(other, x0, cond, known).item() < 1e-6
    per_cell = torch.where(still.all(dim=1, keepdim=True), 20.0, -20.0)  # only row 0 stays in both channels
    assert _gate_loss_first(per_cell, x0, cond, known).item() < 1e-6
    assert _gate_loss_first(torch.zeros(2, 2, 4, 3, 3), x0, cond, torch.zeros_like(known)).item() == 0.0
    # against a copy moved with the camera, the gate should be open where the clip stays as that copy (the whole free
    # part of a clip that is its first frame panned), shut where it stays as the frame held in place but not as moved
    panned = x0.clone()
    panned[:, :, 1:] = torch.roll(x0[:, :, :1], 1, dims=4).expand(-1, -1, 3, -1, -1)
    moved = panned.clone()
    moved[:, :, 0] = x0[:, :, 0]
    assert _gate_loss(torch.full_like(x0, 20.0), panned, moved, known).item() < 1e-6
    assert _gate_loss(torch.full_like(x0, 20.0), panned, first_known(x0 * known, known), known).item() > 1


def test_v2_checkpoint_holds_the_autoencoder_and_loads_as_one(tmp_path: Path) -> None:
    model, ae = _tiny_pair()
    path = save_model(model, tmp_path / "v2.safetensors", {"note": "x"}, autoencoder=ae)
    assert is_checkpoint(path)
    loaded, tokenizer, info = load_model(path)
    assert info == {"note": "x", "sha256": info["sha256"]} and loaded.autoencoder is not None  # sha256: the file's
    assert isinstance(space_of(loaded), LatentSpace)
    assert loaded.autoencoder.norm.running_var.dtype == torch.float32
    for k, v in ae.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.allclose(loaded.autoencoder.state_dict()[k], v.half().float() if "norm" not in k else v)
    # the DiT's own tensors are the model's (no autoencoder keys mixed into it)
    assert set(loaded.state_dict()) - {k for k in loaded.state_dict() if k.startswith("autoencoder.")} == set(
        model.state_dict()
    )
    # saved again, it round-trips (the attached autoencoder is written without being passed)
    again = save_model(loaded, tmp_path / "again.safetensors")
    assert load_model(again)[0].autoencoder is not None
    with pytest.raises(ValueError, match="autoencoder"):
        save_model(VideoDiT(_config("tiny-v2")), tmp_path / "bare.safetensors")


def test_a_v1_checkpoint_still_loads_in_pixel_space(tmp_path: Path) -> None:
    """v1's format (pixels, no autoencoder) loads beside the shipped v2; ``--model PATH`` reaches it."""
    model, _, _ = load_model(_tiny_v1(tmp_path / "v1.safetensors"))
    assert model.cfg.latent_factor == 1 and model.autoencoder is None and model.cfg.channels == 3
    assert FORMATS[0] == "kinema-builtin-1"
    shipped, _, _ = load_model()  # v2 (or its stand-in): a latent model with its autoencoder attached
    assert shipped.cfg.latent_factor > 1 and shipped.autoencoder is not None


def test_sampling_a_v2_model_gives_pixels_and_keeps_given_frames(tmp_path: Path) -> None:
    model, ae = _tiny_pair()
    loaded, tok, _ = load_model(save_model(model, tmp_path / "v2.safetensors", autoencoder=ae))
    image = np.random.default_rng(0).integers(0, 255, (1, 1, 64, 64, 3), dtype=np.uint8)
    out, raw = sample(loaded, tok, ["a red ball bouncing"], steps=3, known=image, num_known=1, return_raw=True)
    assert out.shape == raw.shape == (1, 16, 64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0, 0], image[0, 0])  # the given frame is handed back as given
    again = sample(loaded, tok, ["a red ball bouncing"], steps=3, known=image, num_known=1)
    assert np.array_equal(out, again)  # deterministic per seed
    # an edit at strength 0 hands the source back as it is, not the autoencoder's round trip of it
    src = np.random.default_rng(1).integers(0, 255, (1, 16, 64, 64, 3), dtype=np.uint8)
    same = sample(loaded, tok, ["night"], steps=4, init=src, strength=0.0)
    assert np.array_equal(same, src)
    assert not np.array_equal(src, LatentSpace(loaded.autoencoder).decode(LatentSpace(loaded.autoencoder).encode(src)))
    # frames of another size are refused by name, not with a broadcasting error deep in the sampler
    with pytest.raises(ValueError, match="known: frames of 32x32, expected 64x64"):
        sample(loaded, tok, ["x"], steps=1, known=image[:, :, :32, :32], num_known=1)


def test_a_v2_model_without_its_autoencoder_is_refused() -> None:
    model = VideoDiT(_config("tiny-v2"))
    with pytest.raises(ValueError, match="autoencoder"):
        space_of(model)


def _ae_file(tmp_path: Path) -> Path:
    _, ae = _tiny_pair()
    return save_autoencoder(ae, tmp_path / "ae.safetensors")


def test_latent_training_needs_a_matching_autoencoder(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as exc:
        TrainConfig(**TRAIN_PRESETS["tiny-v2"])  # type: ignore[arg-type]
    assert exc.value.field == "autoencoder"
    with pytest.raises(InvalidRequest):
        TrainConfig(**{**TRAIN_PRESETS["tiny"], "autoencoder": "x.safetensors"})  # type: ignore[arg-type]
    wrong = VideoAutoencoder(AEConfig(**{**AE_CONFIGS["tiny"], "latent": 3}))
    path = save_autoencoder(wrong, tmp_path / "wrong.safetensors")
    cfg = TrainConfig(**{**TRAIN_PRESETS["tiny-v2"], "autoencoder": str(path)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 channels"):
        train(cfg, tmp_path / "run")


def test_latent_training_resumes_the_same_run(tmp_path: Path) -> None:
    ae = str(_ae_file(tmp_path))
    base = {
        **TRAIN_PRESETS["tiny-v2"],
        "autoencoder": ae,
        "steps": 8,
        "checkpoint_every": 4,
        "initial_clips": 16,
        "clips_per_refresh": 4,
        "refresh_every": 3,
        "max_clips": 40,
    }
    whole = train(TrainConfig(**base), tmp_path / "whole")  # type: ignore[arg-type]
    half = train(TrainConfig(**{**base, "stop_after": 4}), tmp_path / "split")  # type: ignore[arg-type]
    assert half["steps_run"] == 4 and (tmp_path / "split" / "dit_state.pt").is_file()
    rest = train(TrainConfig(**base), tmp_path / "split")  # type: ignore[arg-type]
    assert rest["steps_run"] == whole["steps_run"] == 8
    a, _, _ = load_model(whole["path"])
    b, _, _ = load_model(rest["path"])
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and any(k.startswith("autoencoder.") for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_head_lr_moves_the_new_heads_faster(tmp_path: Path) -> None:
    """head_lr scales the learning rate of the heads a fine-tune starts fresh (the ref gate) and of nothing else: with
    it at 100 the gate's bias travels about 100 times as far in the same steps (Adam moves a weight about lr a step),
    and a run without it is the run of before (the other groups' rates unchanged)."""
    ae = str(_ae_file(tmp_path))
    base = {**TRAIN_PRESETS["tiny-v2"], "autoencoder": ae, "steps": 3, "initial_clips": 8, "warmup": 1, "ema": 0.0}
    moved = {}
    for scale in (1.0, 100.0):
        run = train(TrainConfig(**{**base, "head_lr": scale}), tmp_path / f"x{scale:g}")  # type: ignore[arg-type]
        model, _, _ = load_model(run["path"])
        moved[scale] = model.ref_gate.bias.abs().mean().item()
    assert moved[1.0] > 0 and moved[100.0] > 30 * moved[1.0]
    with pytest.raises(InvalidRequest) as exc:
        TrainConfig(**{**base, "head_lr": 0.0})  # type: ignore[arg-type]
    assert exc.value.field == "head_lr"


def test_gate_weight_trains_the_gate_towards_where_the_clip_stays(tmp_path: Path) -> None:
    """gate_weight: the run logs the gate's loss, and a few steps lower it (the gate's head learns from it); a model
    without a mixing gate refuses it, naming the field."""
    from kinema.builtin import train as training

    ae = str(_ae_file(tmp_path))
    mixing = {**CONFIGS["tiny-v2"], "ref_mix": True, "ref_gate_values": True}
    base = {**TRAIN_PRESETS["tiny-v2"], "autoencoder": ae, "steps": 12, "initial_clips": 8, "warmup": 1}
    base |= {"p_image": 0.7, "p_extend": 0.2, "p_keyframes": 0.0, "log_every": 1, "head_lr": 20.0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(training.CONFIGS, "tiny-v2", mixing)
        train(TrainConfig(**{**base, "gate_weight": 1.0}), tmp_path / "gate")  # type: ignore[arg-type]
    history = json.loads((tmp_path / "gate" / "train_log.json").read_text())["history"]
    gate = [e["gate"] for e in history]
    assert len(gate) == 12 and np.mean(gate[-3:]) < np.mean(gate[:3])
    with pytest.raises(InvalidRequest) as exc:
        TrainConfig(**{**base, "gate_weight": 1.0})  # type: ignore[arg-type]  # tiny-v2's own gate adds
    assert exc.value.field == "gate_weight"


def test_moved_copy_moves_the_first_known_frame_from_where_it_is_known() -> None:
    """sampling.moved_copy, the gate's copy with warp_reference (training and sampling alike): frame 0 given, the copy
    is camera_warp of it (what the move reveals in place); the last frame given alone (keyframes), the copy moves from
    the last frame's view, so it is that frame exactly there and not at frame 0; a still camera copies in place; a clip
    with no known frame copies zeros."""
    from kinema.builtin.sampling import camera_warp, moved_copy

    torch.manual_seed(0)
    x0 = torch.randn(3, 2, 6, 8, 8)
    mask = torch.zeros(3, 1, 6, 8, 8)
    mask[0, :, 0] = 1.0  # image-to-video
    mask[1, :, -1] = 1.0  # the last frame only
    copy = moved_copy(x0 * mask, mask, ["pan_left", "pan_left", "static"])
    moved, seen = camera_warp(x0[:1, :, 0], ["pan_left"], 6)
    assert torch.equal(copy[0], torch.where(seen[0].bool(), moved[0], x0[0, :, :1].expand(-1, 6, -1, -1)))
    assert torch.equal(copy[1, :, -1], x0[1, :, -1]) and not torch.equal(copy[1, :, 0], x0[1, :, -1])
    assert torch.equal(copy[2], torch.zeros_like(copy[2]))
    still = moved_copy(x0 * mask, mask, ["static"] * 3)
    assert torch.equal(still[0], x0[0, :, :1].expand(-1, 6, -1, -1))


def test_training_gives_the_gate_the_copy_sampling_gives_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model with ref_mix and warp_reference trains with the gate's copy moved along each example's camera path
    (sampling.moved_copy of the batch's known frames and the scenes' cameras), and the gate loss compares the real
    clip with that copy; without warp_reference the model copies in place (no copy_ref)."""
    from kinema.builtin import sampling
    from kinema.builtin import train as training

    ae = str(_ae_file(tmp_path))
    base = {**TRAIN_PRESETS["tiny-v2"], "autoencoder": ae, "steps": 2, "initial_clips": 8, "warmup": 1}
    base |= {"p_image": 0.7, "p_extend": 0.2, "p_keyframes": 0.0, "gate_weight": 1.0}
    given: list[torch.Tensor | None] = []
    built: list[tuple[torch.Tensor, list[str]]] = []
    forward = VideoDiT.forward

    def spy(self: VideoDiT, *args: Any, copy_ref: torch.Tensor | None = None) -> torch.Tensor:
        given.append(copy_ref)
        return forward(self, *args, copy_ref=copy_ref)

    def build(cond: torch.Tensor, mask: torch.Tensor, cameras: list[str]) -> torch.Tensor:
        built.append((sampling.moved_copy(cond, mask, cameras), cameras))
        return built[-1][0]

    monkeypatch.setattr(VideoDiT, "forward", spy)
    monkeypatch.setattr(training, "moved_copy", build)
    for warp in (True, False):
        mixing = {**CONFIGS["tiny-v2"], "ref_mix": True, "warp_reference": warp}
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(training.CONFIGS, "tiny-v2", mixing)
            train(TrainConfig(**base), tmp_path / f"warp-{warp}")  # type: ignore[arg-type]
    assert len(built) == 2 and len(given) == 4 and given[2] is None and given[3] is None
    for (copy, cameras), got in zip(built, given[:2], strict=True):
        assert got is copy and len(cameras) == copy.shape[0] and set(cameras) <= set(world.CAMERAS)


def test_train_only_changes_the_named_parameters_and_nothing_else(tmp_path: Path) -> None:
    """train_only ("ref_gate.",) from a checkpoint: the written weights differ from it in the gate alone (every other
    tensor bit for bit, so text-to-video is unchanged); a prefix that names no parameter is refused by name. i2v_only
    changes the gate and the patch embedding's columns for the known frames, mask and reference, never the noisy
    clip's columns: text-to-video samples the same clip to the bit, image-to-video another."""
    from kinema.builtin import train as training

    ae = str(_ae_file(tmp_path))
    mixing = {**CONFIGS["tiny-v2"], "ref_mix": True, "ref_gate_values": True}
    base = {**TRAIN_PRESETS["tiny-v2"], "autoencoder": ae, "steps": 3, "initial_clips": 8, "warmup": 1}
    base |= {"p_image": 0.7, "p_extend": 0.2, "p_keyframes": 0.0, "gate_weight": 1.0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(training.CONFIGS, "tiny-v2", mixing)
        train(TrainConfig(**base), tmp_path / "start")  # type: ignore[arg-type]
        init = str(tmp_path / "start" / "builtin.safetensors")
        train(TrainConfig(**{**base, "init": init, "train_only": ["ref_gate."]}), tmp_path / "gate")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest) as exc:
            train(TrainConfig(**{**base, "init": init, "train_only": ("gate.",)}), tmp_path / "none")  # type: ignore[arg-type]
        train(TrainConfig(**{**base, "init": init, "i2v_only": True}), tmp_path / "i2v")  # type: ignore[arg-type]
    assert exc.value.field == "train_only" and "ref_gate." in str(exc.value.allowed)
    start, tok, _ = load_model(init)
    before = start.state_dict()
    after = load_model(str(tmp_path / "gate" / "builtin.safetensors"))[0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("ref_gate.") for k in changed)
    tuned = load_model(str(tmp_path / "i2v" / "builtin.safetensors"))[0]
    after = tuned.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "patch.weight" in changed and changed <= {"patch.weight"} | {k for k in before if k.startswith("ref_gate.")}
    noisy = start.cfg.channels * start.cfg.patch_t * start.cfg.patch_h * start.cfg.patch_w
    assert torch.equal(before["patch.weight"][:, :noisy], after["patch.weight"][:, :noisy])
    run = dict(steps=2, seed=3)
    assert np.array_equal(sample(start, tok, ["hills"], **run), sample(tuned, tok, ["hills"], **run))  # type: ignore[arg-type]
    image = world.render(
        world.Scene("day", "sun", "hills", "clear", "static"),
        np.random.default_rng(0),
        height=start.cfg.height,
        width=start.cfg.width,
    )[None, :1]
    given = dict(known=image, num_known=1, **run)
    assert not np.array_equal(sample(start, tok, ["hills"], **given), sample(tuned, tok, ["hills"], **given))  # type: ignore[arg-type]


def test_keyframe_examples_know_the_last_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """p_keyframes: examples with the last frame known (and half of them the first), seen by the model's input."""
    seen: list[torch.Tensor] = []
    forward = VideoDiT.forward

    def spy(
        self: VideoDiT,
        x: torch.Tensor,
        t: torch.Tensor,
        text: object,
        cond: torch.Tensor,
        mask: torch.Tensor,
        **kwargs: Any,
    ) -> torch.Tensor:
        seen.append(mask[:, 0, :, 0, 0].clone())
        return forward(self, x, t, text, cond, mask, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(VideoDiT, "forward", spy)
    cfg = TrainConfig(
        **{
            **TRAIN_PRESETS["tiny"],
            "steps": 6,
            "batch_size": 16,
            "p_image": 0.0,
            "p_extend": 0.0,  # type: ignore[arg-type]
            "p_keyframes": 1.0,
            "initial_clips": 8,
        }
    )
    train(cfg, tmp_path / "kf")
    masks = torch.cat(seen)  # (N, F)
    assert torch.all(masks[:, -1] == 1) and torch.all(masks[:, 1:-1] == 0)
    first = masks[:, 0]
    assert 0 < first.mean() < 1  # both kinds occur


def test_cli_trains_all_stages_and_generates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    out = tmp_path / "v2"
    res = runner.invoke(app, ["train", "builtin", "--config", "tiny-v2", "--out", str(out), "--steps", "4"])
    assert res.exit_code == 0, res.output
    assert (out / "autoencoder" / "autoencoder.safetensors").is_file() and (out / "builtin.safetensors").is_file()
    assert (out / "decoder" / "autoencoder.safetensors").is_file() and "decoder" in res.output
    _, _, info = load_model(out / "builtin.safetensors")
    assert info["decoder_stage"]["preset"] == "tiny-decoder" and info["steps_run"] == 4
    monkeypatch.setenv("KINEMA_BUILTIN_WEIGHTS", str(out / "builtin.safetensors"))
    res = runner.invoke(app, ["generate", "a red ball bouncing", "-o", str(tmp_path / "c.mp4"), "--steps", "2"])
    assert res.exit_code == 0, res.output
    from kinema.media.io import load_video_frames

    frames, _ = load_video_frames(tmp_path / "c.mp4")
    assert frames.shape[1:3] == (64, 64)  # the tiny v2's pixel size, drawn by its decoder
    # the DiT stage alone, from the autoencoder of the first run
    res = runner.invoke(
        app,
        [
            "train",
            "builtin",
            "--config",
            "tiny-v2",
            "--out",
            str(tmp_path / "dit"),
            "--stage",
            "dit",
            "--autoencoder",
            str(out / "autoencoder" / "autoencoder.safetensors"),
            "--steps",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output


def test_the_decoder_stage_changes_only_the_decoder(tmp_path: Path) -> None:
    """The decoder stage rewrites the checkpoint with a new decoder; the DiT, the encoder and the latent's
    statistics stay bit for bit (the DiT's latent is unchanged); an encoder that changed is refused."""
    from safetensors.torch import load_file

    from kinema.builtin.autoencoder import load_autoencoder, save_autoencoder
    from kinema.builtin.train import finetune_decoder

    runner = CliRunner()
    out = tmp_path / "v2"
    res = runner.invoke(app, ["train", "builtin", "--config", "tiny-v2", "--out", str(out), "--stage", "autoencoder"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["train", "builtin", "--config", "tiny-v2", "--out", str(out), "--stage", "dit", "--steps", "2"]
    )
    assert res.exit_code == 0, res.output
    checkpoint = out / "builtin.safetensors"
    before = load_file(str(checkpoint))
    res = runner.invoke(app, ["train", "builtin", "--config", "tiny-v2", "--out", str(out), "--stage", "decoder"])
    assert res.exit_code == 0, res.output
    after = load_file(str(checkpoint))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("autoencoder.decoder.") for k in changed), sorted(changed)
    # a run started from another encoder (here: a tampered start in its folder) would pair the DiT with another
    # latent: refused, and the checkpoint is left as it was
    ae, _ = load_autoencoder(out / "decoder" / "init.safetensors")
    with torch.no_grad():
        next(ae.encoder.parameters()).add_(0.1)
    tampered = tmp_path / "tampered"
    save_autoencoder(ae, tampered / "init.safetensors")
    with pytest.raises(ValueError, match="encoder"):
        finetune_decoder(checkpoint, "tiny-decoder", tampered, overrides={"steps": 1})
    assert all(torch.equal(v, after[k]) for k, v in load_file(str(checkpoint)).items())


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--config", "cpu", "--stage", "decoder"], "stage"),
        (["--config", "tiny-v2", "--stage", "decoder"], "stage"),  # no DiT checkpoint in OUT yet
        (["--config", "cpu", "--stage", "dit"], "stage"),
        (["--config", "cpu", "--autoencoder", "x"], "autoencoder"),
        (["--config", "tiny-v2", "--stage", "nope"], "stage"),
        (["--config", "tiny-v2", "--stage", "dit", "--autoencoder", "/nonexistent/ae.safetensors"], "autoencoder"),
        (["--config", "tiny-v2", "--autoencoder", "x"], "autoencoder"),
        (["--config", "tiny", "--train-only", "nope."], "train_only"),  # refused before any clip is rendered
    ],
)
def test_cli_training_errors_name_the_option(args: list[str], field: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "builtin", "--out", str(tmp_path), *args])
    assert res.exit_code != 0
    assert field in res.output and "Traceback" not in res.output


def test_the_backend_plans_and_records_a_v2_checkpoints_own_size(tmp_path: Path) -> None:
    """The clip size comes from the checkpoint's header: a 128x128 v2 plans, makes and records 128x128."""
    import kinema

    torch.manual_seed(0)
    cfg = ModelConfig(**{**_config("tiny-v2").to_dict(), "height": 128, "width": 128})  # type: ignore[arg-type]
    _, ae = _tiny_pair()
    path = save_model(VideoDiT(cfg), tmp_path / "v2-128.safetensors", autoencoder=ae)
    assert kinema.plan(kinema.VideoRequest(prompt="a red ball", model=str(path))).params.width == 128
    result = kinema.generate("a red ball", model=str(path), num_inference_steps=2)
    assert result.video.frames.shape[1:3] == (128, 128)
    assert (result.recipe["width"], result.recipe["height"]) == (128, 128)
    with pytest.raises(InvalidRequest) as exc:
        kinema.generate("a red ball", model=str(path), width=64, height=64, num_inference_steps=2)
    assert exc.value.field in ("width", "size") and "128" in str(exc.value)
    # a v1 checkpoint plans its own size too
    v1 = _tiny_v1(tmp_path / "v1.safetensors")
    assert kinema.plan(kinema.VideoRequest(prompt="a red ball", model=str(v1))).params.width == _config("tiny").width


def test_the_conv_head_starts_as_the_linear_one_and_reaches_across_token_borders() -> None:
    """out_conv: zero-initialised, the output is the plain head's; trained, a token's output depends on its
    neighbour's values at their shared border (a plain linear head never does)."""
    torch.manual_seed(0)
    with_conv = VideoDiT(_config("tiny-v2"))
    plain = VideoDiT(ModelConfig(**{**_config("tiny-v2").to_dict(), "out_conv": 0}))  # type: ignore[arg-type]
    plain.load_state_dict({k: v for k, v in with_conv.state_dict().items() if not k.startswith("out_conv.")})
    cfg = with_conv.cfg
    x = torch.randn(1, cfg.channels, *cfg.space)
    text = with_conv.encode_text(torch.zeros(1, cfg.text_len, dtype=torch.long))
    args = (x, torch.tensor([0.5]), text, torch.zeros_like(x), torch.zeros(1, 1, *cfg.space))
    assert torch.equal(with_conv(*args), plain(*args))
    with torch.no_grad():
        for p in with_conv.out_conv.parameters():
            p.normal_(std=0.1)
    y = with_conv.out_conv(torch.zeros(1, cfg.channels, 8, 8))
    probe = torch.zeros(1, cfg.channels, 8, 8)
    probe[:, :, :, 4] = 1.0  # the first column of the second token (tokens are 4 cells wide)
    changed = (with_conv.out_conv(probe) - y).abs().sum(dim=(0, 1, 2))  # (8,): per column
    assert changed[3] > 0  # the last column of the first token feels it: the head reaches across the border


def test_a_checkpoint_samples_with_its_own_motion_guidance(tmp_path: Path) -> None:
    """A recipe's motion guidance (info["sampling"]) is what the backend samples with unless options.motion_guidance
    says otherwise (recorded, so the recipe reproduces it; out of range refused by name), what the evaluation uses and
    reports, and what a training preset writes; without it motion guidance is off."""
    import kinema
    from kinema.builtin import DEFAULT_MOTION_INTERVAL, motion_defaults
    from kinema.builtin.evaluate import evaluate

    model, ae = _tiny_pair()
    own = {"sampling": {"guidance": 1.5, "guidance_interval": [0.6, 1.0], "motion_guidance": 2.0}}
    own["sampling"]["motion_interval"] = [0.5, 1.0]
    path = save_model(model, tmp_path / "own.safetensors", own, autoencoder=ae)
    assert motion_defaults({}) == (0.0, DEFAULT_MOTION_INTERVAL)
    loaded, tok, info = load_model(path)
    assert motion_defaults(info) == (2.0, (0.5, 1.0))
    prompt = "a red ball bouncing"
    common = dict(steps=3, seed=5, guidance=1.5, guidance_interval=(0.6, 1.0), motion_interval=(0.5, 1.0))
    expected = sample(loaded, tok, [prompt], motion_guidance=2.0, **common)  # type: ignore[arg-type]
    off = sample(loaded, tok, [prompt], motion_guidance=0.0, **common)  # type: ignore[arg-type]
    assert not np.array_equal(expected, off)  # motion guidance changes this clip, so the checks below can fail
    result = kinema.generate(prompt, model=str(path), num_inference_steps=3, seed=5)
    assert np.array_equal(result.video.frames, expected[0])
    chosen = kinema.generate(prompt, model=str(path), num_inference_steps=3, seed=5, options={"motion_guidance": 0})
    assert np.array_equal(chosen.video.frames, off[0]) and chosen.recipe["options"] == {"motion_guidance": 0}
    again = kinema.run(kinema.engine.request_from_recipe(chosen.recipe))
    assert np.array_equal(again.video.frames, chosen.video.frames)
    for bad in (-1, 11, "2", True):
        with pytest.raises(InvalidRequest) as exc:
            kinema.generate(prompt, model=str(path), num_inference_steps=3, options={"motion_guidance": bad})
        assert exc.value.field == "options.motion_guidance"
    report = evaluate(n=1, n_i2v=1, weights=path, steps=2)
    assert (report["motion_guidance"], report["motion_interval"]) == (2.0, [0.5, 1.0])
    assert evaluate(n=1, n_i2v=1, weights=path, steps=2, motion_guidance=0.0)["motion_guidance"] == 0.0
    with pytest.raises(InvalidRequest, match="motion_guidance"):
        evaluate(n=1, weights=path, motion_guidance=-1.0)
    cfg = {**TRAIN_PRESETS["tiny-v2"], "autoencoder": str(_ae_file(tmp_path)), "steps": 2, "motion_guidance": 3.0}
    trained = train(TrainConfig(**cfg), tmp_path / "run")  # type: ignore[arg-type]
    assert motion_defaults(load_model(trained["path"])[2]) == (3.0, DEFAULT_MOTION_INTERVAL)
    with pytest.raises(InvalidRequest) as exc:
        TrainConfig(**{**cfg, "motion_interval": (0.9, 0.5)})  # type: ignore[arg-type]
    assert exc.value.field == "motion_interval"


def test_a_checkpoint_samples_given_frames_with_its_own_image_guidance(tmp_path: Path) -> None:
    """A recipe's image guidance (info["sampling"]) is what the backend samples image-to-video with unless
    options.image_guidance says otherwise (recorded; out of range refused by name), what the evaluation uses and
    reports, and what a training preset writes; without it image guidance is off."""
    import kinema
    from kinema.builtin import DEFAULT_IMAGE_INTERVAL, image_defaults
    from kinema.builtin.evaluate import evaluate

    model, ae = _tiny_pair()
    own = {"sampling": {"image_guidance": 2.0, "image_interval": [0.5, 1.0]}}
    path = save_model(model, tmp_path / "own.safetensors", own, autoencoder=ae)
    assert image_defaults({}) == (0.0, DEFAULT_IMAGE_INTERVAL)
    assert image_defaults(load_model(path)[2]) == (2.0, (0.5, 1.0))
    image = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    prompt = "a red ball bouncing"
    common: dict[str, Any] = dict(model=str(path), num_inference_steps=3, seed=5, image=str(image))
    still = {"camera": "static"}  # the camera from the options, not from a random read-out
    default = kinema.generate(prompt, **common, options=still)
    same = kinema.generate(prompt, **common, options={**still, "image_guidance": 2.0})
    off = kinema.generate(prompt, **common, options={**still, "image_guidance": 0})
    assert np.array_equal(default.video.frames, same.video.frames)
    assert not np.array_equal(default.video.frames, off.video.frames)  # it changes this clip
    assert off.recipe["options"] == {"camera": "static", "image_guidance": 0}
    again = kinema.run(kinema.engine.request_from_recipe(off.recipe, image=str(image)))  # --from, the image again
    assert np.array_equal(again.video.frames, off.video.frames)
    t2v = {k: v for k, v in common.items() if k != "image"}  # no given frames: nothing for it to act on
    assert np.array_equal(
        kinema.generate(prompt, **t2v, options=still).video.frames,
        kinema.generate(prompt, **t2v, options={**still, "image_guidance": 0}).video.frames,
    )
    for bad in (-1, 11, "2", True):
        with pytest.raises(InvalidRequest) as exc:
            kinema.generate(prompt, **common, options={"image_guidance": bad})
        assert exc.value.field == "options.image_guidance"
    report = evaluate(n=1, n_i2v=1, weights=path, steps=2)
    assert (report["image_guidance"], report["image_interval"]) == (2.0, [0.5, 1.0])
    assert set(report["i2v_adherence"]) >= {"overall", "camera"} and 0 <= report["i2v_temporal"] <= 1
    assert evaluate(n=1, n_i2v=1, weights=path, steps=2, image_guidance=0.0)["image_guidance"] == 0.0
    with pytest.raises(InvalidRequest, match="image_guidance"):
        evaluate(n=1, weights=path, image_guidance=-1.0)
    cfg = {**TRAIN_PRESETS["tiny-v2"], "autoencoder": str(_ae_file(tmp_path)), "steps": 2, "image_guidance": 1.0}
    trained = train(TrainConfig(**cfg), tmp_path / "run")
    assert image_defaults(load_model(trained["path"])[2]) == (1.0, DEFAULT_IMAGE_INTERVAL)
    with pytest.raises(InvalidRequest) as exc:
        TrainConfig(**{**cfg, "image_interval": (0.9, 0.5)})
    assert exc.value.field == "image_interval"


def test_a_checkpoint_samples_with_its_own_guidance_defaults(tmp_path: Path) -> None:
    """A recipe's measured guidance (info["sampling"]) is what the backend plans, records and samples with, what
    the evaluation uses, and what a training preset writes; checkpoints without it keep the package's defaults."""
    import kinema
    from kinema.builtin import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL, checkpoint_sampling, sampling_defaults
    from kinema.builtin.evaluate import evaluate

    model, ae = _tiny_pair()
    own = {"sampling": {"guidance": 2.5, "guidance_interval": [0.5, 1.0]}}
    path = save_model(model, tmp_path / "own.safetensors", own, autoencoder=ae)
    assert checkpoint_sampling(path) == (2.5, (0.5, 1.0))
    assert sampling_defaults({}) == (DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL)
    plan = kinema.plan(kinema.VideoRequest(prompt="a red ball", model=str(path)))
    assert plan.params.guidance_scale == 2.5
    result = kinema.generate("a red ball", model=str(path), num_inference_steps=3, seed=5)
    assert result.recipe["guidance_scale"] == 2.5
    loaded, tok, _ = load_model(path)
    expected = sample(loaded, tok, ["a red ball"], steps=3, seed=5, guidance=2.5, guidance_interval=(0.5, 1.0))
    package = sample(loaded, tok, ["a red ball"], steps=3, seed=5, guidance=2.5)
    assert not np.array_equal(expected, package)  # the interval matters at these steps, so the check can fail
    assert np.array_equal(result.video.frames, expected[0])
    report = evaluate(n=1, n_i2v=1, weights=path, steps=2)
    assert (report["guidance"], report["guidance_interval"]) == (2.5, [0.5, 1.0])
    # the training preset writes its sampling defaults into the checkpoint it makes
    cfg = {
        **TRAIN_PRESETS["tiny-v2"],
        "autoencoder": str(_ae_file(tmp_path)),
        "steps": 2,
        "guidance": 2.0,
        "guidance_interval": [0.7, 1.0],
    }
    trained = train(TrainConfig(**cfg), tmp_path / "run")  # type: ignore[arg-type]
    assert checkpoint_sampling(trained["path"]) == (2.0, (0.7, 1.0))
    # weights trained with known later frames (p_keyframes > 0) are not warned about; ones without it are
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 40, 40)).save(tmp_path / "key.png")
    keys = [{"time": 1.0, "image": str(tmp_path / "key.png")}]
    untrained_note = "keyframes: the built-in weights were trained with known frames at the start only"
    for weights, warned in ((trained["path"], False), (path, True)):
        clip = kinema.generate("a red ball", model=str(weights), keyframes=keys, num_inference_steps=2, seed=1)
        assert any(w.startswith(untrained_note) for w in clip.warnings) is warned
    with pytest.raises(InvalidRequest) as exc:
        TrainConfig(**{**cfg, "guidance_interval": (0.9, 0.5)})  # type: ignore[arg-type]
    assert exc.value.field == "guidance_interval"
    for bad in ([0.5], [0.5, 0.8, 1.0], ["0.5", "1"]):  # a JSON config's wrong shapes: refused, naming the field
        with pytest.raises(InvalidRequest, match="guidance_interval"):
            TrainConfig(**{**cfg, "guidance_interval": bad})  # type: ignore[arg-type]
    v2 = TrainConfig(**{**TRAIN_PRESETS["v2"], "autoencoder": "ae.safetensors"})  # type: ignore[arg-type]
    assert (v2.guidance, v2.guidance_interval) == (1.5, (0.6, 1.0))


def _pixel_twin(tmp_path: Path) -> tuple[Path, VideoDiT]:
    """A pixel model with tiny-v2's trunk (the same token grid: 32x32-pixel patches over 64x64 frames), saved."""
    cfg = _config("tiny-v2")
    pixel = ModelConfig(
        **{
            **cfg.to_dict(),
            "channels": 3,
            "latent_factor": 1,
            "patch_h": 32,
            "patch_w": 32,
            "ref_frame": False,
            "ref_residual": False,
            "out_conv": 0,
        }
    )  # type: ignore[arg-type]
    assert pixel.grid == cfg.grid
    torch.manual_seed(1)
    model = VideoDiT(pixel)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    return save_model(model, tmp_path / "pixel.safetensors", {}), model


def test_a_latent_model_starts_from_a_pixel_model_with_the_same_trunk(tmp_path: Path) -> None:
    from kinema.builtin.train import NEW_HEADS, SPACE_BOUND, _init_from

    path, pixel = _pixel_twin(tmp_path)
    stored, _, _ = load_model(path)  # the values as stored (fp16)
    torch.manual_seed(2)
    latent = VideoDiT(_config("tiny-v2"))
    before = {k: v.clone() for k, v in latent.state_dict().items()}
    fresh = _init_from(latent, str(path))
    assert fresh and all(k.startswith(SPACE_BOUND + NEW_HEADS) for k in fresh)
    assert {"patch.weight", "out.weight", "out_conv.0.weight", "ref_gate.weight"} <= set(fresh)
    src, now = stored.state_dict(), latent.state_dict()
    for k, v in now.items():  # the trunk is the pixel model's; the parts tied to the space stay as they were made
        assert torch.equal(v, before[k] if k in fresh else src[k]), k
    assert sum(now[k].numel() for k in now if k not in fresh) > 0.5 * sum(v.numel() for v in now.values())

    # through training: the run records which weights it started from and what of them it could not use
    ae = str(_ae_file(tmp_path))
    cfg = TrainConfig(
        **{**TRAIN_PRESETS["tiny-v2"], "autoencoder": ae, "init": str(path), "steps": 1, "initial_clips": 8}
    )  # type: ignore[arg-type]
    info = train(cfg, tmp_path / "run")
    assert info["init"]["fresh"] == fresh and len(info["init"]["sha256"]) == 64

    # a checkpoint whose trunk differs is refused, not half-loaded
    other = save_model(VideoDiT(_config("tiny")), tmp_path / "other.safetensors", {})
    with pytest.raises(ValueError, match="does not fit"):
        _init_from(VideoDiT(_config("tiny-v2")), str(other))


def test_cli_init_tells_a_start_across_spaces_and_refuses_a_non_checkpoint(tmp_path: Path) -> None:
    from kinema.cli.builtin import _same_space

    v1 = _tiny_v1(tmp_path / "v1.safetensors")
    assert _same_space(v1, "cpu") and not _same_space(v1, "v2")  # pixels
    model, ae = _tiny_pair()
    v2 = save_model(model, tmp_path / "v2.safetensors", autoencoder=ae)
    assert _same_space(v2, "tiny-v2") and not _same_space(v2, "cpu")  # a latent
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    res = CliRunner().invoke(
        app,
        [
            "train",
            "builtin",
            "--out",
            str(tmp_path / "o"),
            "--config",
            "tiny",
            "--init",
            str(tmp_path / "junk.safetensors"),
        ],
    )
    assert res.exit_code != 0 and "init" in res.output and "Traceback" not in res.output
