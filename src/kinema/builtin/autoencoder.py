"""The built-in model v2's video autoencoder: 128x128 frames <-> a 16x16 latent with a few channels per frame.

Stage 1 of issue 24 (a latent video model without the patch grid). The diffusion transformer of v2 works in this
latent; the decoder here draws the pixels, so what reaches the output is smooth convolution, never a patch.

Design, and why (docs/builtin-v2.md has the measurements):
  - Per frame (2D): each frame is encoded alone and the latent keeps all 16 frames. Image-to-video then gets the
    given image's latent exactly (frame 0 encodes the same whatever follows it), and time is left to the DiT, which
    can patch 2 or 4 latent frames into one token. Temporal compression (Wan / LTX causal VAEs) is possible later.
  - 8x spatial: 128x128x3 -> 16x16xC (C=16 by default, 12x fewer values than pixels). The encoder first folds 2x2
    pixels into channels (pixel-unshuffle: lossless and cheap), then halves the size twice with strided convs.
    The factor is 2 ** len(widths): two widths give 4x (32x32xC), the ``f4`` preset.
  - The decoder upsamples by nearest neighbour + 3x3 conv three times and ends in two 3x3 convs at full size:
    every output pixel mixes a neighbourhood, so the 8x8 cells of the latent leave no edges.
  - The latent is unit-scaled by construction: a BatchNorm without affine parameters at the encoder's output, whose
    running mean and variance become the per-channel shift and scale (the DiT wants a well-scaled latent, like SD's
    scaling factor but measured per channel). Training adds Gaussian noise (``latent_noise``) to the normalized
    latent before decoding, so the decoder also draws good pixels from a latent that is slightly off, as a DiT's
    samples are, and the encoder cannot hide detail in tiny values.
  - Residual blocks without normalization (two 3x3 convs, the second zero-initialised, as in Fixup): norms are the
    slowest part of a small conv net on a CPU, and decoding must be cheap (the whole v2 clip has a 2 s budget).

Shapes: B batch, F frames, H x W pixels (128 x 128), C latent channels, f = ``AEConfig.factor`` (8 by default, 4 for
``f4``), h x w = H/f x W/f latent size; "H/8" below is H/f for another factor.
Model space is [-1, 1] like ``sampling.to_model_space``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["AEConfig", "AE_CONFIGS", "VideoAutoencoder", "save_autoencoder", "load_autoencoder", "FORMAT"]

FORMAT = "kinema-builtin-ae-1"


@dataclass
class AEConfig:
    latent: int = 16  # C, latent channels per 8x8 pixels of a frame
    # widths at 1/2, 1/4 and 1/8 of the frame's size (the encoder's first conv sees 2x2-folded pixels at 1/2)
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 2])  # residual blocks per width, encoder and decoder
    out_width: int = 16  # channels of the decoder's last conv at full size
    latent_noise: float = 0.05  # std of the noise added to the normalized latent while training

    @property
    def factor(self) -> int:
        """Spatial compression: 2 (the fold) times 2 per further width."""
        return 2 ** len(self.widths)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AE_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(latent=4, widths=[8, 8, 16], blocks=[1, 0, 1], out_width=8),  # tests: seconds on a CPU
    "cpu": dict(),  # the pilot: 8x, 16x16x16 per 128x128 frame (docs/builtin-v2.md)
    # candidates of the second run (docs/builtin-v2.md, "Closing the gap"), each with twice the pilot's latent values
    "c32": dict(latent=32),  # 8x, 16x16x32: more channels on the same grid
    "f4": dict(latent=8, widths=[48, 96], blocks=[1, 2]),  # 4x, 32x32x8: finer grid, bottom level at 32x32
}


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))); the second conv starts at zero, so every block starts as the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]  # a Conv2d made with bias=True has one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    """(N, 3, H, W) -> (N, C, H/8, W/8), not yet normalized."""

    def __init__(self, cfg: AEConfig) -> None:
        super().__init__()
        w = cfg.widths
        self.stem = nn.Conv2d(3 * 4, w[0], 3, padding=1)  # on 2x2-folded pixels, at H/2
        layers: list[nn.Module] = []
        for i, width in enumerate(w):
            if i:  # halve the size and widen
                layers.append(nn.Conv2d(w[i - 1], width, 3, stride=2, padding=1))
            layers.extend(ResBlock(width) for _ in range(cfg.blocks[i]))
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(w[-1], cfg.latent, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(F.pixel_unshuffle(x, 2))  # (N, w0, H/2, W/2)
        x = self.body(x)  # (N, w[-1], H/8, W/8)
        return self.out(F.silu(x))  # (N, C, H/8, W/8)


class Decoder(nn.Module):
    """(N, C, H/8, W/8) -> (N, 3, H, W): nearest-neighbour 2x + 3x3 conv at every step up, two convs at full size."""

    def __init__(self, cfg: AEConfig) -> None:
        super().__init__()
        w = cfg.widths[::-1]  # widest first
        self.stem = nn.Conv2d(cfg.latent, w[0], 3, padding=1)
        ups = [*w[1:], cfg.out_width]
        blocks = cfg.blocks[::-1]
        self.stages = nn.ModuleList()
        for i, width in enumerate(w):
            self.stages.append(nn.Sequential(*(ResBlock(width) for _ in range(blocks[i]))))
        self.ups = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(w, ups, strict=True))
        self.out = nn.Conv2d(cfg.out_width, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z)  # (N, w[-1], h, w)
        for stage, up in zip(self.stages, self.ups, strict=True):
            x = stage(x)
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # twice the size, the next width
        return self.out(F.silu(x))  # (N, 3, H, W)


class VideoAutoencoder(nn.Module):
    """encode: (B, 3, F, H, W) in [-1, 1] -> (B, C, F, H/8, W/8), per channel about mean 0, std 1; decode inverts."""

    def __init__(self, cfg: AEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # running mean / variance of the encoder's output: the latent's per-channel shift and scale
        self.norm = nn.BatchNorm2d(cfg.latent, affine=False, momentum=0.01)

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, C, H/8, W/8) normalized (batch statistics in training mode, running ones in eval)."""
        return self.norm(self.encoder(x))

    def decode_frames(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H/8, W/8) -> (N, 3, H, W)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (N, 3, H, W) -> (reconstruction, latent). ``noise`` (like the latent) is scaled by
        ``latent_noise`` and added before decoding; training passes it, evaluation does not."""
        z = self.encode_frames(x)
        zn = z if noise is None else z + self.cfg.latent_noise * noise
        return self.decode_frames(zn), z

    @staticmethod
    def _frames(x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (B*F, c, h, w)

    @staticmethod
    def _clip(x: torch.Tensor, b: int) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(b, n // b, c, h, w).permute(0, 2, 1, 3, 4)  # (B, c, F, h, w)

    def encode(self, x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """(B, 3, F, H, W) -> (B, C, F, H/8, W/8); ``chunk`` frames at a time, to bound memory."""
        frames = self._frames(x)
        z = torch.cat([self.encode_frames(frames[i : i + chunk]) for i in range(0, len(frames), chunk)])
        return self._clip(z, x.shape[0])

    def decode(self, z: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """(B, C, F, h, w) -> (B, 3, F, 8h, 8w), not clamped."""
        frames = self._frames(z)
        x = torch.cat([self.decode_frames(frames[i : i + chunk]) for i in range(0, len(frames), chunk)])
        return self._clip(x, z.shape[0])


def save_autoencoder(
    model: VideoAutoencoder, path: str | os.PathLike[str], info: dict[str, Any] | None = None
) -> Path:
    """fp16 safetensors (the latent's running statistics in fp32); config and ``info`` in the header."""
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to(torch.float32 if k.startswith("norm.") else torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    meta = {"config": json.dumps(model.cfg.to_dict()), "info": json.dumps(info or {}), "format": FORMAT}
    tmp = p.with_name(p.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, p)
    return p


def load_autoencoder(path: str | os.PathLike[str]) -> tuple[VideoAutoencoder, dict[str, Any]]:
    """(model in eval mode, info) from ``save_autoencoder``'s file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k).float() for k in fh.keys()}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a Kinema built-in autoencoder")
    model = VideoAutoencoder(AEConfig(**json.loads(meta["config"])))
    model.load_state_dict(state, strict=False)  # num_batches_tracked is not stored
    missing = set(model.state_dict()) - set(state) - {"norm.num_batches_tracked"}
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}")
    model.eval().requires_grad_(False)
    return model, json.loads(meta.get("info", "{}"))
