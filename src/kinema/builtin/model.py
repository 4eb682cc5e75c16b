"""The built-in model: a small video diffusion transformer (DiT) over spatio-temporal patches.

References:
  - Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT): adaLN-Zero blocks conditioned on the
    timestep.
  - Liu et al., "Flow Straight and Fast" / Esser et al., "Scaling Rectified Flow Transformers" (SD3): rectified-flow
    training, logit-normal timesteps, shifted sampling schedules.
  - Pixel-space video patches as in Latte / Wan's patch embedding, with cross-attention to text as in PixArt-alpha.
  - Ho et al., "Video Diffusion Models" / Ma et al., "Latte": attention along time only, beside the full attention.
  - Su et al., "RoFormer" (rotary position embedding), split over time, rows and columns as in Wan and HunyuanVideo.

The whole model is this file: a word-level text encoder trained jointly with the denoiser, and the denoiser itself.
Conditioning frames (for image-to-video and extension) enter as extra input channels with a mask, so one network
does text-to-video, image-to-video and extension.

v2 (``latent_factor`` > 1) is the same network in the latent of the video autoencoder (``autoencoder.py``): the
clip is encoded frame by frame to (C, F, H/f, W/f), the DiT denoises that, and the autoencoder's decoder draws the
pixels, so no patch edge reaches the output (Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion
Models"; Wan, LTX-Video and HunyuanVideo work the same way at scale). ``ref_frame`` shows every frame the first
known frame as extra channels, so a given image reaches the whole clip, not only the tokens next to it in time.

Shapes: B batch, F frames, H x W the model's space (pixels, or the latent: pixels / f), C channels there (3 colours,
or the latent's), L text tokens, N = (F/pt)(H/ph)(W/pw) patch tokens, D width.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from .autoencoder import VideoAutoencoder

__all__ = ["ModelConfig", "TextEncoder", "VideoDiT", "Tokenizer", "CONFIGS", "rope_angles", "apply_rope", "pool_text"]

PAD, UNK = 0, 1  # UNK keeps its embedding row so that older weights load; encode no longer emits it


@dataclass
class ModelConfig:
    frames: int = 16
    height: int = 64
    width: int = 64
    patch_t: int = 2
    patch_h: int = 8
    patch_w: int = 8
    dim: int = 192
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 3.0
    text_dim: int = 128
    text_layers: int = 2
    text_len: int = 32
    # "x": the network predicts the clean clip; "v": the flow velocity (noise - clean). With patches of 768 values
    # and tokens of 192, a token cannot carry per-pixel noise, so v-prediction leaves noise in the samples; the clean
    # clip is low-dimensional and fits (Li & He, "Back to Basics: Let Denoising Generative Models Denoise", 2025).
    prediction: str = "x"
    # Timestep shift t' = shift*t / (1 + (shift-1)*t), used for training's timesteps and sampling's schedule. A patch
    # of 768 strongly correlated values keeps a visible signal at noise levels where a single pixel has none, so
    # training must spend more of its time near pure noise, where layout is decided (SD3's resolution shift); with
    # too little, samples from pure noise become a mosaic that follows the noise.
    shift: float = 2.0
    # The schedule's shift at sampling time, where it differs from training's (None: ``shift``). Measured in pairs on
    # v2's shipped weights (trained at 3), sampling at 5 spends 16 of 20 steps at t >= 0.6 instead of 14, and raised
    # adherence on the evaluation's 200 prompts from 0.893 to 0.903 (se 0.004; camera 0.790 to 0.835), most where
    # the layout is decided (docs/builtin-v2.md, session 23). Wan 2.1's 1.3B text-to-video model samples at 5 too.
    sample_shift: float | None = None
    # With x-prediction, known frames (image-to-video, extension) pass through a residual path: the network
    # predicts clean frame minus known frame there, so it only has to learn to leave the given image alone.
    known_residual: bool = False
    # Each block also attends along time only (every token to the tokens at its own place in the other temporal
    # patches), as factorized video transformers do (VDM, Latte): a direct path for carrying content through time.
    # On the CPU configuration at 2,000 steps it cut the flicker between temporal patches (change per frame 0.051
    # against 0.067; real clips 0.047) but lowered adherence (0.325 against 0.397, 40 prompts) and cost a quarter more
    # per step, so "cpu" leaves it off (see the model card).
    temporal_attn: bool = False
    # Rotary positions (3D RoPE) in the self-attention, beside the learned absolute positions: attention scores then
    # depend on the offset between two tokens in time, rows and columns, so "the content one temporal patch earlier,
    # a few pixels to the left" (a pan, a moving subject) is the same relation everywhere in the clip. On the CPU
    # configuration (4,700 steps, same seed) it denoised better (by step 3,000 its clean-clip error at t=0.8 was below
    # that of the whole run without it: 0.047 against 0.050) but followed prompts worse (adherence 0.475 against
    # 0.549 on 200 held-out prompts; colour 0.50 against 0.82) for 3% more per step, so "cpu" leaves it off.
    rope: bool = False
    # The pooled text also gives every temporal patch its own term in the adaptive norms (one learned projection
    # per temporal patch), so "where things are at the start and at the end" (a subject moving left, a pan) is a
    # direct function of the prompt rather than something the blocks must build from the positions. With the
    # training's attribute read-out (TrainConfig.text_aux), the CPU configuration went from no dependence of its
    # prediction on direction words to tilts and zooms (camera 0.16, motion 0.17 against 0.095 and 0.054; overall
    # adherence the same, 0.550 against 0.549; see the model card).
    frame_text: bool = False
    # Share of the noise's variance that moves with the camera (warped noise, see sampling.camera_noise): training
    # films each clip's noise along the clip's camera path, and sampling along the path the prompt asks for, read
    # from the text by ``VideoDiT.camera_head`` (a linear read-out of the pooled text over ``cameras``). 0: off.
    warp_noise: float = 0.0
    cameras: list[str] = field(default_factory=list)
    # A text-dependent code for every (temporal patch, column) and (temporal patch, row), added to the tokens there:
    # "where things are, when" as a direct function of the prompt (a subject moving left: right columns early, left
    # ones late). The adaptive norms and frame_text are the same for every place in a temporal patch, so without it
    # placing a subject by the text is a three-way link (words, place, time) the blocks must grow. 0: off; else the
    # code's width.
    layout_text: int = 0
    # Values per position of the space the DiT works in: 3 colours (v1), or the autoencoder's latent channels (v2).
    channels: int = 3
    # Pixels per latent cell along each side: 1 in pixel space (v1); the autoencoder's factor in v2. ``height`` and
    # ``width`` stay the clip's pixel size either way, so everything outside the model sees pixels.
    latent_factor: int = 1
    # Every frame also gets the first known frame (zeros if none) as input channels: the given image then sits beside
    # every token at its own place, through the last frame (in v1 it reached only the first temporal patch's tokens).
    ref_frame: bool = False
    # With ``ref_frame``: the clean frames not given are predicted as the network's output plus a gate times the
    # first known frame, the gate one value per latent cell read from the tokens by a head that starts at zero. A
    # token of 192 values cannot carry the 512 latent values of the given image at its place, so without this path
    # the given image's detail could not reach later frames even with it beside every token (v2's first checkpoint:
    # the static background of i2v's second half at 22 dB against 20 for text alone). Copying it is then one gate
    # per cell; text-to-video (no known frame: the reference is zeros) is unchanged.
    ref_residual: bool = False
    # With ``ref_residual``: the gate mixes rather than adds. The frames not given are the network's output moved a
    # share m = sigmoid(gate) of the way to the first known frame, the head's bias starting at ``REF_MIX_START`` (m
    # about 0.02). The additive gate of session 20 barely opened (its bias ended at 0.004 to 0.022): copying through it
    # also asks the network to take its own guess of the background out of its output, two changes that only pay
    # together. A mix pays alone wherever the given frame is nearer the clean frame than the network's guess is, and
    # at m = 1 it is an exact copy. Clips with no known frame are left alone (the reference is zeros there).
    ref_mix: bool = False
    # With ``ref_residual``: one gate per latent value (each channel of each cell) rather than one per cell. A cell
    # that a snowflake or the subject crosses in one channel need not close the gate of its other channels, where the
    # background still stays (session 21's gate: one per cell, open least where the sample is decided).
    ref_gate_values: bool = False
    # With ``ref_mix``: the frame the gate copies moves along the camera path (at sampling the one the prompt asks
    # for, or ``cameras``; in training the one the clip was filmed with: ``sampling.moved_copy``), so a copied
    # background pans, tilts and zooms with the clip instead of holding still; what the move reveals keeps the
    # in-place copy. On v2's weights trained with the in-place copy the asked camera move showed in 30 of 32
    # image-to-video clips instead of 18 (docs/builtin-v2.md, session 24); training with it came in session 25.
    warp_reference: bool = False
    # Width of a small residual conv head after the tokens are put back in place (3x3, per frame; 0: none). Each
    # token's values come from its own linear read-out, so nothing ties two neighbouring tokens at their shared
    # border: the token grid shows in the output (v1's 8x8 squares; v2's pilot drew 16x16-pixel squares through its
    # decoder at 500 steps). A conv across the borders after the linear head (as U-ViT's, Bao et al. 2023) lets the
    # model smooth them; its last layer starts at zero, so the head starts as the plain linear one.
    out_conv: int = 0
    vocab: list[str] = field(default_factory=list)

    @property
    def sampling_shift(self) -> float:
        """The shift sampling uses by default: ``sample_shift``, else the training's ``shift``."""
        return self.shift if self.sample_shift is None else self.sample_shift

    @property
    def space(self) -> tuple[int, int, int]:
        """(F, H, W) of the space the DiT works in: pixels, or the latent."""
        return (self.frames, self.height // self.latent_factor, self.width // self.latent_factor)

    @property
    def token_pixels(self) -> tuple[int, int]:
        """(H, W) in pixels that one token covers: its patch, times the latent's downsampling."""
        return (self.patch_h * self.latent_factor, self.patch_w * self.latent_factor)

    @property
    def grid(self) -> tuple[int, int, int]:
        f, h, w = self.space
        return (f // self.patch_t, h // self.patch_h, w // self.patch_w)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# Named configurations: "tiny" is for tests (trains in seconds; every option on, so tests run them all), "cpu" is what
# ships, "full" is for a GPU.
CONFIGS: dict[str, dict[str, object]] = {
    "tiny": dict(
        dim=32,
        depth=2,
        heads=2,
        text_dim=32,
        text_layers=1,
        mlp_ratio=2.0,
        shift=3.0,
        known_residual=True,
        temporal_attn=True,
        rope=True,
        frame_text=True,
        warp_noise=0.7,
        layout_text=4,
    ),
    "cpu": dict(
        dim=192,
        depth=6,
        heads=6,
        text_dim=128,
        text_layers=2,
        patch_t=4,
        shift=3.0,
        known_residual=True,
        frame_text=True,
        warp_noise=0.7,
        layout_text=16,
    ),
    "full": dict(
        dim=384,
        depth=10,
        heads=6,
        text_dim=256,
        text_layers=3,
        patch_t=2,
        shift=3.0,
        known_residual=True,
        temporal_attn=True,
        frame_text=True,
        warp_noise=0.7,
        layout_text=16,
    ),
    # v2: the "cpu" network in the f4 autoencoder's latent (8 channels, 32x32 for 128x128 pixels); tokens of 4x4
    # latent cells by 4 frames, so the grid (4, 8, 8) and the cost per step are v1's
    "v2": dict(
        dim=192,
        depth=6,
        heads=6,
        text_dim=128,
        text_layers=2,
        patch_t=4,
        patch_h=4,
        patch_w=4,
        shift=3.0,
        sample_shift=5.0,
        known_residual=True,
        frame_text=True,
        warp_noise=0.7,
        layout_text=16,
        height=128,
        width=128,
        channels=8,
        latent_factor=4,
        ref_frame=True,
        ref_residual=True,
        ref_mix=True,
        ref_gate_values=True,  # a gate per latent value: a snowflake in one channel leaves the others' copy open
        warp_reference=True,
        out_conv=32,
    ),
    "tiny-v2": dict(
        dim=32,
        depth=2,
        heads=2,
        text_dim=32,
        text_layers=1,
        mlp_ratio=2.0,
        shift=3.0,
        known_residual=True,
        frame_text=True,
        warp_noise=0.7,
        layout_text=4,
        height=64,
        width=64,
        patch_h=4,
        patch_w=4,
        channels=4,
        latent_factor=8,
        ref_frame=True,
        ref_residual=True,
        out_conv=8,
    ),  # the "tiny" autoencoder
}


class Tokenizer:
    """Lowercase words. Words outside the vocabulary are left out of the encoding and reported (``unknown``).

    They are left out rather than encoded as <unk>: training captions use only the vocabulary, so the <unk> embedding
    is never trained, and a random vector in the text moved the clips (three unknown words inserted into each of 48
    held-out prompts: adherence 0.811 kept as <unk>, 0.832 left out, 0.828 without them). The caller warns about them.
    """

    def __init__(self, vocab: list[str], max_len: int) -> None:
        self.vocab = list(vocab)
        self.index = {w: i + 2 for i, w in enumerate(self.vocab)}  # 0 = pad, 1 = unk
        self.max_len = max_len

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z]+", text.lower())

    def unknown(self, text: str) -> list[str]:
        return sorted({w for w in self.words(text) if w not in self.index})

    def encode(self, texts: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(texts), self.max_len, dtype=torch.long)  # (B, L)
        for b, text in enumerate(texts):
            toks = [self.index[w] for w in self.words(text) if w in self.index][: self.max_len]
            if toks:
                ids[b, : len(toks)] = torch.tensor(toks)
        return ids


class TextEncoder(nn.Module):
    """Word embeddings + a few transformer layers. The empty prompt (all padding) is the unconditional input."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(cfg.vocab) + 2, cfg.text_dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.zeros(1, cfg.text_len + 1, cfg.text_dim))
        self.null = nn.Parameter(torch.zeros(1, 1, cfg.text_dim))  # always-present slot: CFG's "no text" token
        layer = nn.TransformerEncoderLayer(
            cfg.text_dim, max(1, cfg.text_dim // 32), cfg.text_dim * 2, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.text_dim)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = ids.shape[0]
        x = torch.cat([self.null.expand(b, -1, -1), self.embed(ids)], dim=1) + self.pos  # (B, 1+L, Dt)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=ids.device), ids != PAD], dim=1)  # (B, 1+L)
        x = self.layers(x, src_key_padding_mask=~mask)
        return self.norm(x), mask


def pool_text(ctx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the text tokens that are present (the null slot included). (B, 1+L, Dt), (B, 1+L) -> (B, Dt)."""
    m = mask.to(ctx.dtype)[..., None]
    return (ctx * m).sum(1) / m.sum(1)


#: The ref gate's starting bias with ``ref_mix``: the frames not given start 2% of the way to the given frame
#: (sigmoid(-4) = 0.018), near the network's own prediction yet where the sigmoid's slope is not flat.
REF_MIX_START = -4.0


def first_known_index(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, F, H, W) -> (B,) the index of each clip's first known frame (0 where none is), and (B,) bool: whether
    it has one."""
    known = mask[:, 0, :, 0, 0] > 0  # (B, F)
    has = known.any(1)
    return torch.where(has, known.float().argmax(1), 0), has


def first_known(cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first known frame of each clip, zeros where none is known: (B, C, F, H, W), (B, 1, F, H, W) -> (B, C, 1,
    H, W). Image-to-video gives frame 0, keyframes frame 0 and the last, extension the earlier clip's tail (its
    first frame is the one taken)."""
    first, has = first_known_index(mask)
    picked = cond[torch.arange(cond.shape[0]), :, first][:, :, None]  # (B, C, 1, H, W)
    return picked * has.to(cond.dtype)[:, None, None, None, None]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled to [0, 1000] as DiT does). (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN on tokens (B, N, D), with shift and scale (B, G, D): one per group of N/G consecutive tokens (G = 1: the
    whole clip; G = F': each temporal patch, whose tokens are contiguous), broadcast without a copy."""
    b, g, d = shift.shape
    return (x.view(b, g, -1, d) * (1 + scale[:, :, None]) + shift[:, :, None]).view(x.shape)


def gate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """adaLN-Zero's residual gate (B, G, D) on tokens (B, N, D), grouped as in :func:`modulate`."""
    b, n_groups, d = g.shape
    return (g[:, :, None] * x.view(b, n_groups, -1, d)).view(x.shape)


def rope_angles(grid: tuple[int, int, int], head_dim: int) -> torch.Tensor:
    """Rotation angles of 3D RoPE for every token of a (T', H', W') grid: (N, head_dim/2).

    The head's dimension pairs are split between time (a quarter) and rows and columns (the rest, equally); pairs
    left over are not rotated. Each axis uses wavelengths from 4 tokens to 4x its length, geometrically spaced: the
    grids are short (4 to 8 tokens), so the usual base of 10,000 would spend most pairs on rotations too slow to see.
    """
    pairs = head_dim // 2
    n_t = max(1, pairs // 4)
    n_s = (pairs - n_t) // 2
    angles = torch.zeros(*grid, pairs)
    start = 0
    for axis, (n, length) in enumerate(zip((n_t, n_s, n_s), grid, strict=True)):
        if n == 0:
            continue
        periods = 4.0 * float(max(length, 1)) ** (torch.arange(n, dtype=torch.float64) / max(n - 1, 1))
        pos = torch.arange(length, dtype=torch.float64)
        ang = pos[:, None] * (2 * math.pi / periods)[None]  # (length, n)
        view = [1, 1, 1, n]
        view[axis] = length
        angles[..., start : start + n] = ang.view(view).float()
        start += n
    return angles.reshape(-1, pairs)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of the last dimension. x (B, h, N, d); cos, sin (N, d/2)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)  # (B, h, N, d/2) each
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        ctx: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        b, n, d = x.shape
        ctx = x if ctx is None else ctx
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, h, N, d/h)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, h, M, d/h) each
        if rope is not None:  # self-attention only: queries and keys are the same tokens
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        attn_mask = mask[:, None, None, :] if mask is not None else None  # (B, 1, 1, M) True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, N, d/h)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """DiT block with adaLN-Zero: self-attention over all spatio-temporal tokens, (optionally) attention along time
    only, cross-attention to text, MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.grid = cfg.grid
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(d, cfg.heads)
        self.temporal = cfg.temporal_attn
        if self.temporal:
            self.norm_t = nn.LayerNorm(d, eps=1e-6)
            self.attn_t = Attention(d, cfg.heads)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.cross = Attention(d, cfg.heads, kv_dim=cfg.text_dim)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.ada = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        # c is (B, 1, D), or (B, F', D) with one conditioning vector per temporal patch
        s1, sc1, g1, s2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        x = x + gate(self.attn(modulate(self.norm1(x), s1, sc1), rope=rope), g1)
        if self.temporal:
            x = x + self.along_time(x)
        x = x + self.cross(self.norm2(x), text, text_mask)
        x = x + gate(self.mlp(modulate(self.norm3(x), s2, sc2)), g2)
        return x

    def along_time(self, x: torch.Tensor) -> torch.Tensor:
        """Attention among the tokens of one place across the temporal patches. (B, N, D) -> (B, N, D)."""
        b, n, d = x.shape
        gt, gh, gw = self.grid
        xt = self.norm_t(x).view(b, gt, gh * gw, d).transpose(1, 2).reshape(b * gh * gw, gt, d)  # (B*H'*W', F', D)
        return self.attn_t(xt).view(b, gh * gw, gt, d).transpose(1, 2).reshape(b, n, d)


class VideoDiT(nn.Module):
    """Predicts the clean clip (``cfg.prediction == "x"``) or the flow velocity noise - clean (``"v"``) of a noisy
    clip, given text and optional known frames.

    Inputs: ``x`` (B, C, F, H, W) noisy clip in [-1, 1]; ``t`` (B,) in [0, 1] (1 = pure noise); ``ids`` (B, L) text
    tokens; ``cond`` (B, C, F, H, W) known frames (zeros elsewhere) and ``cond_mask`` (B, 1, F, H, W) 1 where known.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # v2: the autoencoder whose latent this DiT works in, attached by the loader (training keeps it apart, so the
        # optimizer and the EMA see the DiT only); a checkpoint stores its weights under "autoencoder."
        self.autoencoder: VideoAutoencoder | None = None
        pt, ph, pw = cfg.patch_t, cfg.patch_h, cfg.patch_w
        c = cfg.channels
        in_ch = c + c + 1 + (c if cfg.ref_frame else 0)  # noisy clip, known frames, known mask[, first known frame]
        self.patch_dim_in = in_ch * pt * ph * pw
        self.patch_dim_out = c * pt * ph * pw
        self.patch = nn.Linear(self.patch_dim_in, cfg.dim)
        gt, gh, gw = cfg.grid
        # factorized learned positions: time + row + column
        self.pos_t = nn.Parameter(torch.randn(1, gt, 1, 1, cfg.dim) * 0.02)
        self.pos_h = nn.Parameter(torch.randn(1, 1, gh, 1, cfg.dim) * 0.02)
        self.pos_w = nn.Parameter(torch.randn(1, 1, 1, gw, cfg.dim) * 0.02)
        self.text = TextEncoder(cfg)
        self.t_mlp = nn.Sequential(nn.Linear(256, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.text_pool = nn.Linear(cfg.text_dim, cfg.dim)
        if cfg.frame_text:
            self.text_frames = nn.Linear(cfg.text_dim, gt * cfg.dim)
            nn.init.zeros_(self.text_frames.weight)
            nn.init.zeros_(self.text_frames.bias)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        if cfg.layout_text:
            r = cfg.layout_text
            self.layout_cols = nn.Linear(cfg.text_dim, gt * gw * r)
            self.layout_rows = nn.Linear(cfg.text_dim, gt * gh * r)
            self.layout_out = nn.Linear(r, cfg.dim)
            nn.init.zeros_(self.layout_out.weight)  # starts as no change, like adaLN-Zero
            nn.init.zeros_(self.layout_out.bias)
        if cfg.warp_noise > 0:
            if not cfg.cameras:
                raise ValueError("ModelConfig.cameras must name the camera moves when warp_noise > 0")
            self.camera_head = nn.Linear(cfg.text_dim, len(cfg.cameras))
        if cfg.rope:
            # derived from the grid, never trained: not part of the saved weights
            angles = rope_angles(cfg.grid, cfg.dim // cfg.heads)  # (N, d/h/2)
            self.register_buffer("rope_cos", angles.cos(), persistent=False)
            self.register_buffer("rope_sin", angles.sin(), persistent=False)
        if cfg.out_conv:
            c, w = cfg.channels, cfg.out_conv
            last = nn.Conv2d(w, c, 3, padding=1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)  # type: ignore[arg-type]  # a Conv2d made with bias=True has one
            self.out_conv = nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.SiLU(), last)
        self.norm_out = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.out = nn.Linear(cfg.dim, self.patch_dim_out)
        heads = [self.ada_out, self.out]
        if cfg.ref_residual:
            if not cfg.ref_frame:
                raise ValueError("ModelConfig.ref_residual needs ref_frame: it copies the frame ref_frame gives")
            per = cfg.channels if cfg.ref_gate_values else 1
            self.ref_gate = nn.Linear(cfg.dim, per * pt * ph * pw)  # one gate per latent cell (or value) of the token
            heads.append(self.ref_gate)
        for m in heads:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        if cfg.ref_mix:
            if not cfg.ref_residual:
                raise ValueError("ModelConfig.ref_mix needs ref_residual: it changes how the ref gate acts")
            nn.init.constant_(self.ref_gate.bias, REF_MIX_START)
        if cfg.ref_gate_values and not cfg.ref_residual:
            raise ValueError("ModelConfig.ref_gate_values needs ref_residual: it shapes the ref gate")
        # the last forward's gate logits (B, 1 or C, F, H, W), with a known frame; None before, or without a gate
        self.gate_logits: torch.Tensor | None = None

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, N, C*pt*ph*pw)."""
        b, c, f, h, w = x.shape
        pt, ph, pw = self.cfg.patch_t, self.cfg.patch_h, self.cfg.patch_w
        x = x.view(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, F', H', W', C, pt, ph, pw)
        return x.reshape(b, (f // pt) * (h // ph) * (w // pw), c * pt * ph * pw)

    def unpatchify(self, x: torch.Tensor, channels: int | None = None) -> torch.Tensor:
        """(B, N, C*pt*ph*pw) -> (B, C, F, H, W); ``channels`` C defaults to the model's (1: a value per cell)."""
        b, c = x.shape[0], self.cfg.channels if channels is None else channels
        pt, ph, pw = self.cfg.patch_t, self.cfg.patch_h, self.cfg.patch_w
        gt, gh, gw = self.cfg.grid
        x = x.view(b, gt, gh, gw, c, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, F', pt, H', ph, W', pw)
        return x.reshape(b, c, gt * pt, gh * ph, gw * pw)

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.text(ids)

    def camera_logits(self, text: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Scores of ``cfg.cameras`` for encoded text: (B, len(cameras)). Only with ``cfg.warp_noise > 0``."""
        return self.camera_head(pool_text(*text))

    def cameras(self, text: tuple[torch.Tensor, torch.Tensor]) -> list[str]:
        """The camera move each encoded text asks for (the read-out's most likely one)."""
        return [self.cfg.cameras[i] for i in self.camera_logits(text).argmax(-1).tolist()]

    def layout(self, pooled: torch.Tensor) -> torch.Tensor:
        """The text's code for every place and time (``cfg.layout_text``): pooled (B, Dt) -> (B, N, D)."""
        b, r = pooled.shape[0], self.cfg.layout_text
        gt, gh, gw = self.cfg.grid
        cols = self.layout_cols(pooled).view(b, gt, 1, gw, r)  # (B, F', 1, W', r): one per temporal patch and column
        rows = self.layout_rows(pooled).view(b, gt, gh, 1, r)  # (B, F', H', 1, r): one per temporal patch and row
        return self.layout_out(cols + rows).view(b, gt * gh * gw, -1)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: tuple[torch.Tensor, torch.Tensor],
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        copy_ref: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx, ctx_mask = text  # (B, 1+L, Dt), (B, 1+L)
        b = x.shape[0]
        inputs = [x, cond, cond_mask]
        # the first known frame, (B, C, 1, H, W), beside every frame
        ref = first_known(cond, cond_mask).expand_as(x) if self.cfg.ref_frame else None
        if ref is not None:
            inputs.append(ref)
        tokens = self.patch(self.patchify(torch.cat(inputs, dim=1)))  # (B, N, D)
        gt, gh, gw = self.cfg.grid
        pos = (self.pos_t + self.pos_h + self.pos_w).reshape(1, gt * gh * gw, -1)
        tokens = tokens + pos
        # pooled text joins the timestep in the adaptive norms, so global attributes (sky, weather) steer every block
        pooled = pool_text(ctx, ctx_mask)  # (B, Dt)
        if self.cfg.layout_text:
            tokens = tokens + self.layout(pooled)
        c = (self.t_mlp(timestep_embedding(t, 256)) + self.text_pool(pooled))[:, None]  # (B, 1, D): the whole clip
        if self.cfg.frame_text:
            c = c + self.text_frames(pooled).view(b, gt, -1)  # (B, F', D): one per temporal patch
        rope = (self.rope_cos, self.rope_sin) if self.cfg.rope else None
        for block in self.blocks:
            tokens = block(tokens, c, ctx, ctx_mask, rope)
        shift, scale = self.ada_out(F.silu(c)).chunk(2, dim=-1)
        final = modulate(self.norm_out(tokens), shift, scale)  # (B, N, D)
        out = self.out(final)  # (B, N, C*pt*ph*pw)
        y = self.unpatchify(out).view(b, self.cfg.channels, *x.shape[2:])
        if self.cfg.out_conv:  # across the token borders, frame by frame: (B*F, C, H, W)
            c, f, h, w = y.shape[1:]
            frames = y.transpose(1, 2).reshape(b * f, c, h, w)
            y = y + self.out_conv(frames).view(b, f, c, h, w).transpose(1, 2)
        if self.cfg.ref_residual and ref is not None:
            per = self.cfg.channels if self.cfg.ref_gate_values else 1
            g = self.unpatchify(self.ref_gate(final), channels=per)  # (B, 1 or C, F, H, W)
            self.gate_logits = g  # the training loss may supervise the gate (TrainConfig.gate_weight)
            if self.cfg.ref_mix:  # only clips with a known frame: in text-to-video the reference is zeros
                given = cond_mask.amax(dim=(1, 2, 3, 4), keepdim=True)  # (B, 1, 1, 1, 1)
                # ``copy_ref`` (B, C, F, H, W): what the gate copies into each frame, if not the first known frame
                # (``warp_reference``: that frame moved along the camera's path, sampling.moved_copy)
                source = ref if copy_ref is None else copy_ref
                y = y + torch.sigmoid(g) * (given - cond_mask) * (source - y)
            else:
                y = y + g * ref * (1 - cond_mask)
        if self.cfg.known_residual and self.cfg.prediction == "x":
            y = y + cond * cond_mask
        return y
