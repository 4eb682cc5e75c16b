"""The built-in model: shapes, training, sampling, checkpoints."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kinema.builtin import load_model, save_model
from kinema.builtin.model import CONFIGS, ModelConfig, Tokenizer, VideoDiT, apply_rope, rope_angles
from kinema.builtin.sampling import camera_noise, edit_timesteps, sample, timesteps, to_uint8
from kinema.builtin.train import _loss
from kinema.builtin.world import CAMERAS
from kinema.errors import InvalidRequest


def _tiny(**kw: object) -> VideoDiT:
    torch.manual_seed(0)
    vocab = ["red", "ball", "left", "right", "camera", "pans", "zooms", "in"]
    model = VideoDiT(ModelConfig(vocab=vocab, cameras=list(CAMERAS), **{**CONFIGS["tiny"], **kw}))  # type: ignore
    # DiT zero-initialises the output; give the untrained model a non-zero head so its output depends on its input
    with torch.no_grad():
        for layer in (model.out, model.ada_out):
            layer.weight.normal_(std=0.02)
    return model


def test_patchify_round_trip_and_output_shape() -> None:
    m = _tiny()
    x = torch.randn(2, 3, 16, 64, 64)
    assert m.patchify(x).shape == (2, m.cfg.num_tokens, 3 * m.cfg.patch_t * 64)
    out_tokens = m.patchify(x)[..., : m.patch_dim_out]
    assert out_tokens.shape[-1] == 3 * 2 * 8 * 8
    assert torch.equal(m.unpatchify(m.patchify(x)), x)
    ids = Tokenizer(m.cfg.vocab, m.cfg.text_len).encode(["red ball", ""])
    v = m(x, torch.rand(2), m.encode_text(ids), torch.zeros_like(x), torch.zeros(2, 1, 16, 64, 64))
    assert v.shape == x.shape


def test_attention_along_time_mixes_only_one_place() -> None:
    block = _tiny().blocks[0]
    gt, gh, gw = block.grid
    x = torch.randn(1, gt * gh * gw, block.attn_t.q.in_features)
    place = 5  # one (row, column) of the patch grid
    y = x.clone()
    y[0, place] += 1.0  # the token at that place in the first temporal patch
    changed = (block.along_time(y) - block.along_time(x)).abs().sum(-1)[0].view(gt, gh * gw)  # (F', H'*W')
    assert (changed[:, place] > 0).all()  # every temporal patch at that place sees it
    others = torch.ones(gh * gw, dtype=torch.bool)
    others[place] = False
    assert torch.equal(changed[:, others], torch.zeros_like(changed[:, others]))  # no other place does


def test_rope_scores_depend_only_on_the_offset_between_tokens() -> None:
    grid, head_dim = (4, 8, 8), 32
    angles = rope_angles(grid, head_dim)  # (N, d/2)
    assert angles.shape == (4 * 8 * 8, head_dim // 2)
    q, k = torch.randn(head_dim), torch.randn(head_dim)
    rot_q = apply_rope(q.expand(1, 1, angles.shape[0], -1), angles.cos(), angles.sin())[0, 0].view(*grid, -1)
    rot_k = apply_rope(k.expand(1, 1, angles.shape[0], -1), angles.cos(), angles.sin())[0, 0].view(*grid, -1)

    def score(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
        return float(rot_q[a] @ rot_k[b])

    # the same offset (one temporal patch later, two columns to the left) scores the same anywhere in the clip
    assert score((0, 3, 5), (1, 3, 3)) == pytest.approx(score((2, 6, 2), (3, 6, 0)), abs=1e-4)
    # another offset scores differently, on each axis
    base = score((0, 3, 5), (1, 3, 3))
    for other in ((2, 3, 3), (1, 4, 3), (1, 3, 4)):
        assert abs(score((0, 3, 5), other) - base) > 1e-3
    assert torch.allclose(rot_q.norm(dim=-1), q.norm().expand(grid), atol=1e-5)  # a rotation keeps lengths


def test_per_frame_text_conditioning_reaches_only_its_own_temporal_patch() -> None:
    m = _tiny(depth=0)  # no blocks: the conditioning acts on the output's adaptive norm alone
    d = m.cfg.dim
    x = torch.randn(1, 3, 16, 64, 64)
    args = (
        torch.rand(1),
        m.encode_text(torch.zeros(1, m.cfg.text_len, dtype=torch.long)),
        torch.zeros_like(x),
        torch.zeros(1, 1, 16, 64, 64),
    )
    with torch.no_grad():
        before = m(x, *args)
        m.text_frames.bias[1 * d : 2 * d] += 1.0  # the term for temporal patch 1 only
        changed = (m(x, *args) - before).abs().flatten(3).sum((0, 1, 3))  # per frame
    pt = m.cfg.patch_t
    inside = torch.zeros(16, dtype=torch.bool)
    inside[pt : 2 * pt] = True
    assert (changed[inside] > 0).all() and torch.equal(changed[~inside], torch.zeros_like(changed[~inside]))


def test_layout_text_gives_each_time_and_column_its_own_text_dependent_code() -> None:
    m = _tiny()
    assert torch.equal(m.layout(torch.randn(2, m.cfg.text_dim)), torch.zeros(2, m.cfg.num_tokens, m.cfg.dim))  # zero
    torch.manual_seed(1)
    with torch.no_grad():
        m.layout_out.weight.normal_()
        m.layout_rows.weight.zero_()
        m.layout_rows.bias.zero_()
    pooled = torch.randn(2, m.cfg.text_dim)
    code = m.layout(pooled).view(2, *m.cfg.grid, -1)  # (B, F', H', W', D)
    assert torch.allclose(code, code[:, :, :1].expand_as(code))  # rows off: the same down every column
    assert not torch.allclose(code[:, :, :, 0], code[:, :, :, 1])  # columns differ
    assert not torch.allclose(code[:, 0], code[:, 1])  # temporal patches differ
    assert not torch.allclose(code[0], code[1])  # and it depends on the text


def test_attribute_probe_reads_only_what_the_caption_states() -> None:
    from kinema.builtin import world
    from kinema.builtin.train import _AttributeProbe

    probe = _AttributeProbe(8)
    with_subject = world.Scene("night", "moon", "city", "rain", "pan_left", "ball", "red", "small", "left")
    landscape = world.Scene("day", "sun", "ocean", "clear", "static")
    labels = probe.labels([with_subject, landscape, with_subject], np.array([False, False, True]))
    assert labels["motion"].tolist() == [world.MOTIONS.index("left"), -100, -100]  # no subject; caption dropped
    assert labels["camera"].tolist() == [world.CAMERAS.index("pan_left"), world.CAMERAS.index("static"), -100]
    pooled = torch.randn(3, 8, requires_grad=True)
    loss = probe.loss(pooled, labels)
    loss.backward()
    assert loss > 0 and pooled.grad is not None
    assert torch.equal(pooled.grad[2], torch.zeros(8))  # the dropped caption is not pulled anywhere


def _strip_config_keys(src: Path, dst: Path, *keys: str) -> None:
    """Rewrite a checkpoint as one written before ``keys`` existed in ModelConfig."""
    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    config = json.loads(meta["config"])
    for key in keys:
        del config[key]
    save_file(tensors, str(dst), metadata={**meta, "config": json.dumps(config)})


def test_checkpoints_without_newer_options_still_load(tmp_path: Path) -> None:
    old = _tiny(temporal_attn=False, rope=False, frame_text=False, warp_noise=0.0, layout_text=0).half().float()
    names = ("attn_t", "rope", "text_frames", "camera_head", "layout")  # RoPE's tables are derived, never saved
    assert not any(s in k for k in old.state_dict() for s in names)
    save_model(old, tmp_path / "new.safetensors")
    _strip_config_keys(
        tmp_path / "new.safetensors",
        tmp_path / "old.safetensors",
        "temporal_attn",
        "rope",
        "frame_text",
        "warp_noise",
        "cameras",
        "layout_text",
    )
    loaded, _, _ = load_model(tmp_path / "old.safetensors")
    assert loaded.cfg.temporal_attn is False and loaded.cfg.rope is False and loaded.cfg.frame_text is False
    assert loaded.cfg.warp_noise == 0.0 and loaded.cfg.layout_text == 0
    x = torch.randn(1, 3, 16, 64, 64)
    args = (
        torch.rand(1),
        loaded.encode_text(torch.zeros(1, loaded.cfg.text_len, dtype=torch.long)),
        torch.zeros_like(x),
        torch.zeros(1, 1, 16, 64, 64),
    )
    with torch.no_grad():
        assert torch.equal(loaded(x, *args), old(x, *args))  # the same network, computed the same way


def test_known_pixels_weigh_known_weight_times_in_the_loss() -> None:
    target = torch.zeros(1, 3, 2, 4, 4)
    mask = torch.zeros(1, 1, 2, 4, 4)
    mask[:, :, 0] = 1.0  # frame 0 known
    err_known, err_free = target.clone(), target.clone()
    err_known[:, :, 0, 0, 0] = 1.0  # the same error, once on a known pixel and once on a free one
    err_free[:, :, 1, 0, 0] = 1.0
    known, free = _loss(err_known, target, mask, 4.0), _loss(err_free, target, mask, 4.0)
    assert torch.isclose(known, 4 * free) and free > 0
    assert torch.isclose(_loss(err_known, target, mask, 1.0), free)  # weight 1: plain mean squared error


def test_motion_weight_counts_only_the_error_that_changes_over_time() -> None:
    target = torch.zeros(1, 3, 4, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, 4)
    still = target.clone()
    still[:, :, :, 1, 1] = 0.5  # the same wrong pixel in every frame: a subject in the wrong place, not moving
    moving = target.clone()
    moving[:, :, :2, 1, 1], moving[:, :, 2:, 1, 1] = 0.5, -0.5  # as large, but it changes halfway through
    for err in (still, moving):
        assert torch.isclose(_loss(err, target, mask, 4.0, 0.0), _loss(err, target, mask, 4.0))  # 0: plain loss
    assert torch.isclose(_loss(still, target, mask, 4.0, 3.0), _loss(still, target, mask, 4.0))  # nothing moves
    # all of the moving error varies over time, so it counts 1 + 3 times
    assert torch.isclose(_loss(moving, target, mask, 4.0, 3.0), 4 * _loss(moving, target, mask, 4.0))


def test_loss_gradient_matches_autograd_of_its_definition() -> None:
    torch.manual_seed(0)
    pred = torch.randn(2, 3, 4, 8, 8, requires_grad=True)
    target = torch.randn(2, 3, 4, 8, 8)
    known = torch.zeros(2, 1, 4, 1, 1)
    known[0, :, 0] = 1.0
    extra = 4.0 * (torch.rand(2, 1, 1, 8, 8) < 0.2)  # a subject's path

    free = 1 - known  # the motion term is over the frames not given
    for given_weight in (0.0, 2.0):
        err = pred - target  # the definition, term by term
        moving = (err - (err * free).sum(2, keepdim=True) / free.sum(2, keepdim=True)) * free
        # example 0 has frame 0 given, so its other frames count 1 + given_weight times; example 1 has none
        w = (1 + 3.0 * known + given_weight * known.amax(2, keepdim=True) * free) * (1 + extra)
        reference = (err.pow(2) * w).mean() + 2.0 * (moving.pow(2) * (1 + extra)).mean()
        (expected,) = torch.autograd.grad(reference, pred)

        loss = _loss(pred, target, known, 4.0, 2.0, extra, given_weight)
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.isclose(loss, reference)
        assert torch.allclose(grad, expected, atol=1e-7)


def test_given_weight_counts_the_free_frames_of_a_conditioned_example_more() -> None:
    target = torch.zeros(2, 3, 4, 4, 4)
    known = torch.zeros(2, 1, 4, 1, 1)
    known[0, :, 0] = 1.0  # example 0: image-to-video; example 1: text-to-video
    err = target.clone()
    err[:, :, 2, 1, 1] = 0.5  # the same error in a free frame of each
    per_example = [_loss(err[i : i + 1], target[i : i + 1], known[i : i + 1], 4.0, 0.0, 0.0, 2.0) for i in (0, 1)]
    assert per_example[1] > 0 and torch.isclose(per_example[0], 3 * per_example[1])
    known_err = target[:1].clone()
    known_err[:, :, 0, 1, 1] = 0.5  # a known pixel keeps its known weight
    assert torch.isclose(
        _loss(known_err, target[:1], known[:1], 4.0, 0.0, 0.0, 2.0), _loss(known_err, target[:1], known[:1], 4.0)
    )


def test_tokenizer_reports_unknown_words_and_leaves_them_out() -> None:
    tok = Tokenizer(["red", "ball"], 8)
    assert tok.unknown("A RED ball, zorp!") == ["a", "zorp"]
    ids = tok.encode(["red zorp ball", "zorp"])
    assert ids[0, :2].tolist() == [2, 3] and ids[0, 2:].eq(0).all()  # as if the prompt were "red ball"
    assert ids[1].eq(0).all()  # nothing known: the unconditional input


def test_timesteps_run_from_noise_to_clean() -> None:
    ts = timesteps(10, shift=2.0)
    assert ts[0] == 1.0 and ts[-1] == 0.0 and bool((ts[:-1] > ts[1:]).all())


def test_thirty_training_steps_reduce_the_loss(tmp_path: Path) -> None:
    from kinema.builtin.train import TRAIN_PRESETS, TrainConfig, train

    history: list[dict[str, float]] = []
    summary = train(TrainConfig(**TRAIN_PRESETS["tiny"]), tmp_path, on_log=history.append)
    assert summary["steps_run"] == 30
    first = np.mean([h["loss"] for h in history[:2]])
    last = np.mean([h["loss"] for h in history[-2:]])
    assert last < first * 0.97, (first, last)
    aux = [h["text_aux"] for h in history]  # the tiny preset trains the attribute probe too
    assert aux[-1] < aux[0], aux
    model, tok, info = load_model(tmp_path / "builtin.safetensors")
    assert info["steps_run"] == 30 and model.cfg.dim == CONFIGS["tiny"]["dim"]


def test_training_is_reproducible(tmp_path: Path) -> None:
    from kinema.builtin.train import TRAIN_PRESETS, TrainConfig, train

    cfg = {**TRAIN_PRESETS["tiny"], "steps": 4}
    a = train(TrainConfig(**cfg), tmp_path / "a")
    b = train(TrainConfig(**cfg), tmp_path / "b")
    assert a["final_loss"] == b["final_loss"]
    ma, _, _ = load_model(tmp_path / "a" / "builtin.safetensors")
    mb, _, _ = load_model(tmp_path / "b" / "builtin.safetensors")
    for (ka, va), (_, vb) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka


def test_stop_after_replays_a_run_that_ended_early(tmp_path: Path) -> None:
    from kinema.builtin.train import TRAIN_PRESETS, TrainConfig, train

    cfg = {**TRAIN_PRESETS["tiny"], "steps": 6, "warmup": 1, "log_every": 1, "checkpoint_every": 3}
    saved = tmp_path / "step3.safetensors"

    def keep_step_3(entry: dict[str, object]) -> None:  # logged before step 4's update: the step-3 checkpoint is there
        if entry["step"] == 4:
            shutil.copy(tmp_path / "whole" / "builtin.safetensors", saved)

    train(TrainConfig(**cfg), tmp_path / "whole", on_log=keep_step_3)
    short = train(TrainConfig(**{**cfg, "stop_after": 3}), tmp_path / "short")
    train(TrainConfig(**{**cfg, "steps": 3}), tmp_path / "three")
    assert short["steps_run"] == 3
    odd = train(TrainConfig(**{**cfg, "log_every": 2, "stop_after": 4}), tmp_path / "odd")  # logs 1, 3 and 4
    log = json.loads((tmp_path / "odd" / "train_log.json").read_text())["history"]
    assert [h["step"] for h in log] == [1, 3, 4] and odd["final_loss"] == log[-1]["loss"]
    ma, _, _ = load_model(saved)
    mb, _, _ = load_model(tmp_path / "short" / "builtin.safetensors")
    mc, _, _ = load_model(tmp_path / "three" / "builtin.safetensors")
    assert all(torch.equal(va, vb) for va, vb in zip(ma.state_dict().values(), mb.state_dict().values(), strict=True))
    assert not all(torch.equal(a, c) for a, c in zip(mb.state_dict().values(), mc.state_dict().values(), strict=True))


def test_sampling_is_deterministic_per_seed_and_keeps_known_frames() -> None:
    m = _tiny().eval()
    tok = Tokenizer(m.cfg.vocab, m.cfg.text_len)
    a = sample(m, tok, ["red ball left"], steps=3, seed=5)
    b = sample(m, tok, ["red ball left"], steps=3, seed=5)
    c = sample(m, tok, ["red ball left"], steps=3, seed=6)
    assert isinstance(a, np.ndarray) and a.shape == (1, 16, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    known = np.random.default_rng(0).integers(0, 255, (1, 4, 64, 64, 3), dtype=np.uint8)
    out, raw = sample(m, tok, ["red ball"], steps=2, seed=1, known=known, num_known=4, return_raw=True)
    assert np.array_equal(out[:, :4], known) and not np.array_equal(raw[:, :4], known)


def test_camera_noise_is_standard_normal_and_moves_with_the_camera() -> None:
    shape = (3, 3, 16, 64, 64)
    plain = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(camera_noise(["pan_left"] * 3, shape, torch.Generator().manual_seed(1), 0.0), plain)
    still, pan, zoom = camera_noise(["static", "pan_left", "zoom_in"], shape, torch.Generator().manual_seed(1), 1.0)
    assert abs(float(pan.std()) - 1) < 0.02 and abs(float(pan.mean())) < 0.02
    assert all(torch.equal(still[:, k], still[:, 0]) for k in range(16))  # a still camera: one field throughout
    # pan_left turns the view left, so what is seen slides right: 16 pixels over the clip (world.PAN of 64)
    assert torch.equal(pan[:, 15, :, 16:], pan[:, 0, :, :-16]) and not torch.equal(pan[:, 15], pan[:, 0])
    # zooming in magnifies the centre: by 1.5 at the end, so neighbouring pixels share values there
    centre_end, centre_start = zoom[:, 15, 24:40, 24:40], zoom[:, 0, 24:40, 24:40]
    assert len(centre_end.unique()) < 0.8 * len(centre_start.unique())
    half = camera_noise(["static"] * 3, shape, torch.Generator().manual_seed(1), 0.5)
    assert abs(float(half.std()) - 1) < 0.02
    assert 0.4 < float(torch.corrcoef(torch.stack([half[:, :, 0].flatten(), half[:, :, 9].flatten()]))[0, 1]) < 0.6


def test_sampling_films_the_noise_along_the_camera_the_text_asks_for() -> None:
    m = _tiny().eval()
    tok = Tokenizer(m.cfg.vocab, m.cfg.text_len)
    with torch.no_grad():  # a read-out that answers "pan_left" for "pans" and "zoom_in" for "zooms"
        m.camera_head.weight.zero_()
        m.camera_head.bias.zero_()
    prompts = ["camera pans left", "camera zooms in"]
    text = m.encode_text(tok.encode(prompts))
    pooled_pan, pooled_zoom = (text[0] * text[1][..., None]).sum(1) / text[1].sum(1, keepdim=True)
    direction = (pooled_pan - pooled_zoom) / (pooled_pan - pooled_zoom).norm() ** 2
    with torch.no_grad():
        m.camera_head.weight[CAMERAS.index("pan_left")] = direction
        m.camera_head.weight[CAMERAS.index("zoom_in")] = -direction
        m.camera_head.bias[CAMERAS.index("pan_left")] = -float(direction @ (pooled_pan + pooled_zoom) / 2)
        m.camera_head.bias[CAMERAS.index("zoom_in")] = float(direction @ (pooled_pan + pooled_zoom) / 2)
    assert m.cameras(text) == ["pan_left", "zoom_in"]
    read = sample(m, tok, prompts, steps=2, seed=3)
    told = sample(m, tok, prompts, steps=2, seed=3, cameras=["pan_left", "zoom_in"])
    other = sample(m, tok, prompts, steps=2, seed=3, cameras=["zoom_in", "pan_left"])
    assert np.array_equal(read, told) and not np.array_equal(read, other)
    with pytest.raises(ValueError, match="cameras: 1 given for 2 prompts"):
        sample(m, tok, prompts, steps=1, cameras=["static"])
    with pytest.raises(ValueError, match="cameras: unknown camera 'sideways' .allowed: static, pan_left"):
        sample(m, tok, prompts[:1], steps=1, cameras=["sideways"])
    with pytest.raises(ValueError, match="noise_share: 1.5 is outside 0..1"):
        sample(m, tok, prompts[:1], steps=1, noise_share=1.5)


def test_the_camera_read_out_is_trained_and_learns_static_for_no_caption() -> None:
    from kinema.builtin import world
    from kinema.builtin.train import _AttributeProbe

    head = torch.nn.Linear(8, len(CAMERAS))
    probe = _AttributeProbe(8, head)
    assert not any(p is head.weight for p in probe.parameters())  # the model owns it (one optimizer entry)
    scene = world.Scene("night", "moon", "city", "rain", "pan_left", "ball", "red", "small", "left")
    labels = probe.labels([scene, scene], np.array([False, True]))
    assert labels["camera"].tolist() == [CAMERAS.index("pan_left"), CAMERAS.index("static")]
    assert labels["motion"].tolist() == [world.MOTIONS.index("left"), -100]
    probe.loss(torch.randn(2, 8), labels).backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_warped_noise_needs_the_attribute_loss(tmp_path: Path) -> None:
    from kinema.builtin.train import TRAIN_PRESETS, TrainConfig, train

    with pytest.raises(ValueError, match="text_aux: 0.0 is out of range .allowed: > 0 for the model 'tiny'"):
        train(TrainConfig(**{**TRAIN_PRESETS["tiny"], "text_aux": 0.0}), tmp_path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stop_after": 0}, "stop_after"),
        ({"stop_after": 31}, "stop_after"),
        ({"model": "huge"}, "model"),
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"min_lr": 1.0}, "min_lr"),
        ({"ema": 1.0}, "ema"),
        ({"p_image": 0.7, "p_extend": 0.5}, "p_extend"),
        ({"p_uncond": -0.1}, "p_uncond"),
        ({"time_limit": 0.0}, "time_limit"),
        ({"known_weight": 0.0}, "known_weight"),
        ({"threads": 0}, "threads"),
        ({"max_clips": 10}, "max_clips"),
        ({"motion_weight": -1.0}, "motion_weight"),
        ({"train_only": ("",)}, "train_only"),
        ({"train_only": ("ref_gate.",), "i2v_only": True}, "i2v_only"),
    ],
)
def test_train_config_names_the_field_that_is_out_of_range(change: dict[str, object], field: str) -> None:
    from kinema import InvalidRequest
    from kinema.builtin.train import TRAIN_PRESETS, TrainConfig

    TrainConfig(**TRAIN_PRESETS["tiny"])  # the preset itself is valid
    with pytest.raises(InvalidRequest, match=f"^{field}: ") as caught:
        TrainConfig(**{**TRAIN_PRESETS["tiny"], **change})  # type: ignore[arg-type]
    assert caught.value.field == field and caught.value.allowed


class _TextSign(VideoDiT):
    """Predicts a clean clip of 0.5 everywhere for a caption and -0.5 for the empty prompt."""

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: tuple[torch.Tensor, torch.Tensor],
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
    ) -> torch.Tensor:
        return self.prediction(text, cond_mask).view(-1, 1, 1, 1, 1).expand_as(x)

    def prediction(self, text: tuple[torch.Tensor, torch.Tensor], cond_mask: torch.Tensor) -> torch.Tensor:
        """The clean value predicted for each clip, (B,)."""
        has_caption = text[1].sum(dim=1) > 1  # (B,): more than the always-on first token
        return torch.where(has_caption, 0.5, -0.5)


def test_guidance_leaves_given_pixels_to_the_conditional_prediction() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab=["red", "ball"], cameras=list(CAMERAS), **CONFIGS["tiny"])  # type: ignore[arg-type]
    m = _TextSign(cfg).eval()
    tok = Tokenizer(m.cfg.vocab, m.cfg.text_len)
    known = np.zeros((1, 1, 64, 64, 3), dtype=np.uint8)
    everywhere = (0.0, 1.0)
    _, raw = sample(
        m,
        tok,
        ["red ball"],
        steps=2,
        guidance=2.5,
        guidance_interval=everywhere,
        known=known,
        num_known=1,
        return_raw=True,
    )
    guided = -0.5 + 2.5 * (0.5 - -0.5)  # the last step lands on the prediction
    as_pixels = to_uint8(torch.tensor([[0.5, guided]]).view(1, 1, 2, 1, 1))[0, :, 0, 0, 0]  # (2,)
    assert (raw[:, 0] == as_pixels[0]).all() and (raw[:, 1:] == as_pixels[1]).all()


class _Recorder(_TextSign):
    """_TextSign that notes the noise level and batch size of every call (a guided step runs a doubled batch)."""

    calls: list[tuple[float, int]]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: tuple[torch.Tensor, torch.Tensor],
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
    ) -> torch.Tensor:
        self.calls.append((round(float(t[0]), 4), x.shape[0]))
        return super().forward(x, t, text, cond, cond_mask)


def test_guidance_acts_only_inside_its_interval() -> None:
    cfg = ModelConfig(vocab=["red", "ball"], cameras=list(CAMERAS), **CONFIGS["tiny"])  # type: ignore[arg-type]
    m = _Recorder(cfg).eval()
    tok = Tokenizer(m.cfg.vocab, m.cfg.text_len)
    ts = [round(float(t), 4) for t in timesteps(4, m.cfg.shift)[:-1]]  # 1.0, 0.9, 0.75, 0.5
    m.calls = []
    out = sample(m, tok, ["red ball"], steps=4, guidance=2.5, guidance_interval=(0.8, 1.0))
    assert m.calls == [(t, 2 if t >= 0.8 else 1) for t in ts]
    # the last step (t = 0.5, outside) lands on the conditional prediction alone: 0.5, not 2.0 clamped to 1
    assert (out == to_uint8(torch.tensor(0.5).view(1, 1, 1, 1, 1))[0, 0, 0, 0, 0]).all()
    m.calls = []
    sample(m, tok, ["red ball"], steps=4, guidance=2.5, guidance_interval=(0.0, 1.0))
    assert [n for _, n in m.calls] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="guidance_interval"):
        sample(m, tok, ["red ball"], steps=4, guidance=2.5, guidance_interval=(0.9, 0.8))


def test_sampling_runs_at_the_checkpoints_sampling_shift_and_older_ones_at_their_training_shift() -> None:
    """v2's weights trained at shift 3 sample at 5 (``sample_shift``); a header without the field (every checkpoint
    written before it) samples at its training shift, as before; ``shift=`` overrides both."""
    tiny = dict(CONFIGS["tiny"])
    for sample_shift, expected in ((None, 3.0), (5.0, 5.0)):
        cfg = ModelConfig(vocab=["red"], cameras=list(CAMERAS), **tiny, sample_shift=sample_shift)  # type: ignore[arg-type]
        assert cfg.sampling_shift == expected
        m = _Recorder(cfg).eval()
        tok = Tokenizer(m.cfg.vocab, m.cfg.text_len)
        for given, used in ((None, expected), (2.0, 2.0)):
            m.calls = []
            sample(m, tok, ["red"], steps=4, guidance=1.0, shift=given)
            assert [t for t, _ in m.calls] == [round(float(t), 4) for t in timesteps(4, used)[:-1]]
        # an edit keeps the training shift's schedule: its steps all lie below ``strength``, where 5 has fewer
        init = np.zeros((1, cfg.frames, cfg.height, cfg.width, 3), np.uint8)
        m.calls = []
        sample(m, tok, ["red"], steps=8, guidance=1.0, init=init, strength=0.5)
        assert [t for t, _ in m.calls] == [round(float(t), 4) for t in edit_timesteps(8, 0.5, 3.0)[:-1]]
    # at 5 more of the steps sit where the layout is decided: 16 of 20 at t >= 0.6 against 14 at 3
    assert [int((timesteps(20, s)[:-1] >= 0.6).sum()) for s in (3.0, 5.0)] == [14, 16]
    old = {k: v for k, v in ModelConfig(**tiny).to_dict().items() if k != "sample_shift"}  # type: ignore[arg-type]
    assert ModelConfig(**old).sampling_shift == 3.0
    assert CONFIGS["v2"]["sample_shift"] == 5.0 and CONFIGS["v2"]["shift"] == 3.0  # the recipe writes what ships


class _MotionSign(_Recorder):
    """Predicts 0.3 for a caption, 0.1 for one with the word "still", 0.0 for the empty prompt; its "text encoder"
    hands the token ids through, so the prediction can read them."""

    still: int

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ids[..., None].float(), (ids > 0).float()

    def prediction(self, text: tuple[torch.Tensor, torch.Tensor], cond_mask: torch.Tensor) -> torch.Tensor:
        ids = text[0][..., 0]
        return torch.where((ids == self.still).any(1), 0.1, 0.3) * (text[1].sum(1) > 0)


def test_motion_guidance_pushes_only_along_the_subjects_motion() -> None:
    """motion_guidance m adds m x (prompt - the prompt with its subject still) at guided steps, in a third pass; a
    prompt whose subject does not move (or that has none) is guided as without it; m < 0 is refused by name."""
    vocab = ["red", "ball", "bouncing", "sitting", "still"]
    cfg = ModelConfig(vocab=vocab, cameras=list(CAMERAS), **CONFIGS["tiny"])  # type: ignore[arg-type]
    m = _MotionSign(cfg).eval()
    tok = Tokenizer(m.cfg.vocab, m.cfg.text_len)
    m.still = int(tok.encode(["still"])[0, 0])
    prompts = ["red ball bouncing", "red ball"]
    m.calls = []
    everywhere = (0.0, 1.0)
    both = dict(steps=2, guidance=1.5, guidance_interval=everywhere, motion_guidance=1.0, noise_share=0.0)
    both["motion_interval"] = everywhere
    out = sample(m, tok, prompts, **both)  # type: ignore[arg-type]
    assert [n for _, n in m.calls] == [6, 6]  # conditional, unconditional and still, for both prompts
    plain = 1.5 * 0.3  # guidance alone: 0 + 1.5 x (0.3 - 0)
    expected = to_uint8(torch.tensor([plain + 1.0 * (0.3 - 0.1), plain]).view(2, 1, 1, 1, 1))[:, 0, 0, 0, 0]
    assert (out[0] == expected[0]).all() and (out[1] == expected[1]).all()
    m.calls = []
    alone = sample(m, tok, ["red ball"], **both)  # type: ignore[arg-type]
    assert [n for _, n in m.calls] == [2, 2]  # nothing to move: no third pass
    assert (alone == expected[1]).all()
    # by default only the noisiest steps (t >= 0.95: the first of 2 here), each pass only where it is needed
    m.calls = []
    sample(m, tok, prompts, **{**both, "motion_interval": (0.95, 1.0), "guidance_interval": (0.0, 0.9)})
    assert [n for _, n in m.calls] == [4, 4]  # t = 1: conditional and still; t = 0.75: conditional and unconditional
    m.calls = []
    sample(m, tok, prompts, **{**both, "motion_interval": (0.95, 1.0), "guidance": 1.0})
    assert [n for _, n in m.calls] == [4, 2]
    with pytest.raises(InvalidRequest) as exc:
        sample(m, tok, prompts, steps=2, motion_guidance=-1.0)
    assert exc.value.field == "motion_guidance"
    with pytest.raises(InvalidRequest) as exc:
        sample(m, tok, prompts, steps=2, motion_guidance=1.0, motion_interval=(0.9, 0.1))
    assert exc.value.field == "motion_interval"


class _ImageSign(_Recorder):
    """Predicts 0.3 for a clip with known frames and 0.1 for one without, whatever the text."""

    def prediction(self, text: tuple[torch.Tensor, torch.Tensor], cond_mask: torch.Tensor) -> torch.Tensor:
        return torch.where(cond_mask.flatten(1).amax(1) > 0, 0.3, 0.1)  # (B,)


def test_image_guidance_pushes_along_what_the_known_frames_add() -> None:
    """image_guidance w adds w x (prediction - prediction with the known frames hidden) at the steps in its interval,
    in one more pass, whatever the camera; the known frames themselves keep the conditional prediction; text-to-video
    is left alone."""
    cfg = ModelConfig(vocab=["red", "ball"], cameras=list(CAMERAS), **CONFIGS["tiny"])  # type: ignore[arg-type]
    m = _ImageSign(cfg).eval()
    tok = Tokenizer(m.cfg.vocab, m.cfg.text_len)
    known = np.zeros((1, 1, 64, 64, 3), dtype=np.uint8)
    common = dict(steps=2, known=known, num_known=1, return_raw=True, noise_share=0.0, cameras=["static"])
    for guidance, batch in ((1.0, 2), (2.0, 3)):  # without and with text guidance (the text does not matter here)
        m.calls = []
        _, raw = sample(
            m, tok, ["red ball"], guidance=guidance, guidance_interval=(0, 1), image_guidance=1.0, **common
        )  # type: ignore[arg-type]
        assert [n for _, n in m.calls] == [batch, batch]
        pixels = to_uint8(torch.tensor([0.3, 0.3 + 1.0 * (0.3 - 0.1)]).view(1, 1, 2, 1, 1))[0, :, 0, 0, 0]
        assert (raw[:, 0] == pixels[0]).all() and (raw[:, 1:] == pixels[1]).all()
    m.calls = []
    _, off = sample(m, tok, ["red ball"], guidance=1.0, **common)  # type: ignore[arg-type]
    assert [n for _, n in m.calls] == [1, 1] and (off[:, 1:] == pixels[0]).all()  # 0 (the default) is off
    m.calls = []
    sample(
        m,
        tok,
        ["red ball"],
        steps=2,
        guidance=1.0,
        image_guidance=1.0,
        image_interval=(0.9, 1.0),
        known=known,
        num_known=1,
        cameras=["static"],
    )
    assert [n for _, n in m.calls] == [2, 1]  # t = 1 in the interval, t = 0.75 not
    m.calls = []
    sample(m, tok, ["red ball"], steps=2, guidance=1.0, image_guidance=1.0)
    assert [n for _, n in m.calls] == [1, 1]  # no known frames: nothing to guide by
    m.calls = []
    _, moving = sample(m, tok, ["red ball"], guidance=1.0, image_guidance=1.0, **{**common, "cameras": ["pan_left"]})  # type: ignore[arg-type]
    assert [n for _, n in m.calls] == [2, 2] and (moving[:, 1:] == pixels[1]).all()  # a moving camera too
    with pytest.raises(InvalidRequest) as exc:
        sample(m, tok, ["red ball"], steps=2, image_guidance=float("nan"))
    assert exc.value.field == "image_guidance"
    with pytest.raises(InvalidRequest) as exc:
        sample(m, tok, ["red ball"], steps=2, image_guidance=1.0, image_interval=(0.5, 0.2))
    assert exc.value.field == "image_interval"


def test_checkpoint_round_trip_is_fp16_and_faithful(tmp_path: Path) -> None:
    m = _tiny().eval()
    path = save_model(m, tmp_path / "w.safetensors", {"hello": 1})
    loaded, tok, info = load_model(path)
    # the file's hash joins the header's info: the recipe's model_revision tells two checkpoints apart by it
    assert info == {"hello": 1, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    assert tok.vocab == m.cfg.vocab
    for (k, v), (_, w) in zip(m.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.allclose(v, w, atol=1e-3, rtol=1e-3), k


def test_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    from kinema import ModelNotFound

    with pytest.raises(ModelNotFound, match="kinema train builtin"):
        load_model(tmp_path / "nope.safetensors")


def test_shipped_weights_are_small_enough() -> None:
    from kinema.builtin import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("no shipped weights in this checkout")
    assert DEFAULT_WEIGHTS.stat().st_size <= 20 * 1024 * 1024


def test_concurrent_first_loads_read_the_weights_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's warm-up thread and a job claimed meanwhile must not load the built-in model twice."""
    import threading

    import kinema.builtin as builtin

    builtin._load.cache_clear()
    calls: list[int] = []
    original = builtin._load.__wrapped__

    def slow(path: str, mtime: float) -> Any:
        calls.append(1)
        time.sleep(0.3)
        return original(path, mtime)

    monkeypatch.setattr(builtin, "_load", functools.lru_cache(maxsize=4)(slow))
    threads = [threading.Thread(target=builtin.load_model) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
