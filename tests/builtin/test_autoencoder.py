"""The v2 video autoencoder: shapes, per-frame encoding, training, determinism, weights on disk, resumption."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from kinema.builtin import world
from kinema.builtin.autoencoder import AE_CONFIGS, AEConfig, VideoAutoencoder, load_autoencoder, save_autoencoder
from kinema.builtin.train_autoencoder import (
    AE_TRAIN_PRESETS,
    AETrainConfig,
    _loss,
    _sun_masks,
    psnr,
    train_autoencoder,
)
from kinema.errors import InvalidRequest


def _tiny() -> VideoAutoencoder:
    torch.manual_seed(0)
    model = VideoAutoencoder(AEConfig(**AE_CONFIGS["tiny"]))
    with torch.no_grad():  # the zero-initialised residual convs would hide bugs in the blocks
        for p in model.parameters():
            if p.ndim == 4 and not p.any():
                p.normal_(std=0.05)
    return model.eval()


def _cfg(**kw: object) -> AETrainConfig:
    return AETrainConfig(**{**AE_TRAIN_PRESETS["tiny"], **kw})


def test_shapes_and_compression() -> None:
    m = _tiny()
    x = torch.rand(2, 3, 5, 32, 48) * 2 - 1  # (B, 3, F, H, W); width and height need only be multiples of 8
    z = m.encode(x, chunk=3)
    assert m.cfg.factor == 8
    assert z.shape == (2, m.cfg.latent, 5, 4, 6)
    assert m.decode(z, chunk=4).shape == x.shape
    assert AEConfig().factor == 8 and AEConfig().latent == 16  # the default: 128x128 -> 16x16x16 per frame


@pytest.mark.parametrize("name", ["c32", "f4"])
def test_larger_latent_configs_round_trip(name: str, tmp_path: Path) -> None:
    """The second run's candidates: twice the pilot's latent values, as more channels (c32) or a finer grid (f4);
    shapes, the export and the loading all follow the config."""
    cfg = AEConfig(**AE_CONFIGS[name])
    factor, latent = {"c32": (8, 32), "f4": (4, 8)}[name]
    assert (cfg.factor, cfg.latent) == (factor, latent)
    assert latent * (128 // factor) ** 2 == 2 * 16 * 16 * 16  # per 128x128 frame, twice the pilot's 16x16x16
    torch.manual_seed(0)
    m = VideoAutoencoder(cfg).eval()
    x = torch.rand(1, 3, 2, 32, 48) * 2 - 1
    z = m.encode(x)
    assert z.shape == (1, latent, 2, 32 // factor, 48 // factor)
    assert m.decode(z).shape == x.shape
    loaded, _ = load_autoencoder(save_autoencoder(m, tmp_path / "ae.safetensors"))
    assert loaded.cfg == cfg and loaded.cfg != AEConfig()
    with torch.no_grad():
        assert torch.allclose(loaded.decode(loaded.encode(x)), m.decode(z), atol=2e-2)  # fp16 weights


PILOT = Path("/work/scratch/v2/pilot/autoencoder.safetensors")


def test_the_pilot_config_still_loads(tmp_path: Path) -> None:
    """The pilot's weights file (if this machine has it, else one exported with the default config) loads as the
    default config with all its tensors: the presets added since did not change the default."""
    path = PILOT
    if not path.is_file():
        path = save_autoencoder(VideoAutoencoder(AEConfig(**AE_CONFIGS["cpu"])), tmp_path / "ae.safetensors")
    model, _ = load_autoencoder(path)
    assert model.cfg == AEConfig() == AEConfig(**AE_CONFIGS["cpu"])
    assert sum(p.numel() for p in model.parameters()) == 1_595_539  # the pilot's count (docs/builtin-v2.md)
    with torch.no_grad():
        z = model.encode(torch.zeros(1, 3, 1, 128, 128))
    assert z.shape == (1, 16, 1, 16, 16)


def test_frames_are_encoded_alone() -> None:
    """Image-to-video needs frame 0's latent to be the given image's, whatever the other frames hold."""
    m = _tiny()
    x = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    y = x.clone()
    y[:, :, 1:] = -x[:, :, 1:]
    za, zb = m.encode(x), m.encode(y)
    assert torch.allclose(za[:, :, 0], zb[:, :, 0], atol=1e-6)
    assert not torch.allclose(za[:, :, 1], zb[:, :, 1], atol=1e-3)
    # batching and chunking do not change a frame's latent (eval mode: the running statistics, not the batch's)
    assert torch.allclose(m.encode(x, chunk=1), za, atol=1e-5)


def test_latent_noise_only_in_training_call() -> None:
    m = _tiny()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    clean, z = m(x)
    noisy, _ = m(x, torch.randn_like(z))
    assert not torch.allclose(clean, noisy)
    assert torch.allclose(clean, m.decode_frames(m.encode_frames(x)))


def test_loss_sees_edges() -> None:
    x = torch.rand(1, 3, 8, 8)
    assert _loss(x, x, 0.5).item() == 0.0
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    # the same pixel error counts more with the gradient term: blur loses edges
    assert _loss(blurred, x, 0.5) > _loss(blurred, x, 0.0) > 0
    assert psnr(x, x) > 100 > psnr(blurred, x) > 0
    # the squared-error term adds the mean squared error, times its weight; it weighs large errors more than L1
    mse = (blurred - x).square().mean()
    assert torch.allclose(_loss(blurred, x, 0.5, 4.0), _loss(blurred, x, 0.5) + 4.0 * mse)
    one_big, many_small = x.clone(), x + 0.01
    one_big.view(-1)[0] += 0.01 * x.numel()  # the same L1 error, in one pixel
    assert torch.allclose(_loss(one_big, x, 0.0), _loss(many_small, x, 0.0), atol=1e-5)
    assert _loss(one_big, x, 0.0, 1.0) > _loss(many_small, x, 0.0, 1.0) + 0.01  # 0.0192 against 0.0001


def test_training_learns_a_round_trip(tmp_path: Path) -> None:
    """A few dozen steps of the tiny preset (on whole frames) must beat the untrained network on clips it never
    saw, by a margin."""
    from kinema.builtin.sampling import to_model_space

    result = train_autoencoder(_cfg(steps=60, warmup=5, lr=5e-3, batch_size=8, crop=0), tmp_path)
    assert result["steps_run"] == 60
    trained, info = load_autoencoder(tmp_path / "autoencoder.safetensors")
    assert info["steps_run"] == 60
    clips, _, _ = world.make_dataset(2, seed=99, split="heldout", num_frames=2, height=32, width=32)
    x = to_model_space(clips)
    untrained = VideoAutoencoder(trained.cfg).eval()
    with torch.no_grad():
        before, after = psnr(untrained.decode(untrained.encode(x)), x), psnr(trained.decode(trained.encode(x)), x)
    assert after > before + 3 and after > 14, (before, after)  # measured: 11.5 -> 15.4 dB


def test_training_is_deterministic(tmp_path: Path) -> None:
    a = train_autoencoder(_cfg(steps=6), tmp_path / "a")
    b = train_autoencoder(_cfg(steps=6), tmp_path / "b")
    c = train_autoencoder(_cfg(steps=6, seed=1), tmp_path / "c")
    ma, mb, mc = (load_autoencoder(r["path"])[0].state_dict() for r in (a, b, c))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert not all(torch.equal(ma[k], mc[k]) for k in ma)


def test_resume_continues_the_same_run(tmp_path: Path) -> None:
    """Stopped halfway and started again on its folder, a run ends with the weights of one never stopped."""
    whole = train_autoencoder(_cfg(), tmp_path / "whole")
    half = train_autoencoder(_cfg(stop_after=6), tmp_path / "split")
    assert half["steps_run"] == 6 and (tmp_path / "split" / "ae_state.pt").is_file()
    rest = train_autoencoder(_cfg(), tmp_path / "split")
    assert rest["steps_run"] == whole["steps_run"] == 12
    sw, sr = (load_autoencoder(r["path"])[0].state_dict() for r in (whole, rest))
    assert all(torch.equal(sw[k], sr[k]) for k in sw)
    # init starts a new run from exported weights: it does not begin from scratch
    init = train_autoencoder(_cfg(steps=1, warmup=1, lr=1e-9, min_lr=0.0, init=whole["path"]), tmp_path / "init")
    si = load_autoencoder(init["path"])[0].state_dict()
    assert torch.allclose(si["decoder.out.weight"], sw["decoder.out.weight"], atol=1e-3)


def test_save_load_round_trip(tmp_path: Path) -> None:
    m = _tiny()
    with torch.no_grad():  # latent statistics that are not the defaults, to see that they travel (in fp32)
        mean, var = m.norm.running_mean, m.norm.running_var
        assert mean is not None and var is not None  # a BatchNorm that tracks its statistics
        mean.copy_(torch.arange(4.0) * 0.123456789)
        var.copy_(torch.arange(1.0, 5.0) * 1.23456789)
    path = save_autoencoder(m, tmp_path / "ae.safetensors", {"note": "x"})
    loaded, info = load_autoencoder(path)
    assert info == {"note": "x"} and loaded.cfg == m.cfg and not loaded.training
    assert loaded.norm.running_var is not None and torch.equal(loaded.norm.running_var, var)
    x = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.decode(loaded.encode(x)), m.decode(m.encode(x)), atol=2e-2)  # fp16 weights
    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="not a Kinema built-in autoencoder"):
        load_autoencoder(tmp_path / "other.safetensors")


def test_config_is_checked() -> None:
    with pytest.raises(InvalidRequest):
        _cfg(crop=12)  # not a multiple of the latent's cell
    with pytest.raises(InvalidRequest):
        _cfg(stop_after=13)
    with pytest.raises(InvalidRequest):
        AETrainConfig(ae="nope")
    with pytest.raises(InvalidRequest):
        _cfg(l2_weight=-1.0)
    assert AETrainConfig(ae="f4", crop=12).crop == 12  # f4's latent cells are 4 pixels wide
    with pytest.raises(InvalidRequest):
        AETrainConfig(ae="f4", crop=10)

    assert replace(_cfg(), crop=0).crop == 0


def test_sun_mask_finds_the_disc() -> None:
    rng = np.random.default_rng(0)
    scene = world.Scene(
        **{
            **world.sample_scene(rng).to_dict(),
            "celestial": "sun",
            "time": "day",  # type: ignore
            "weather": "clear",
            "camera": "static",
        }
    )
    clips = world.render_batch([scene], seed=3, num_frames=1, height=128, width=128)
    mask = _sun_masks(clips, [scene])
    r = 0.075 * 128  # the disc's radius in pixels
    assert np.pi * r * r * 0.8 < mask.sum() < np.pi * (r + 3) ** 2 * 1.3
    night = replace(scene, celestial="moon", time="night")
    assert not _sun_masks(clips, [night]).any()


def test_freeze_encoder_trains_the_decoder_only(tmp_path: Path) -> None:
    """A decoder fine-tune keeps the latent: the encoder's weights and the latent's statistics are the init's."""
    base = train_autoencoder(_cfg(steps=6), tmp_path / "base")
    tuned = train_autoencoder(_cfg(steps=6, init=base["path"], freeze_encoder=True, lr=1e-2), tmp_path / "tuned")
    a, b = (load_autoencoder(r["path"])[0].state_dict() for r in (base, tuned))
    enc = [k for k in a if k.startswith(("encoder.", "norm."))]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    with pytest.raises(InvalidRequest) as exc:
        _cfg(freeze_encoder=True)
    assert exc.value.field == "freeze_encoder"
