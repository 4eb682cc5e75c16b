"""The built-in model: a small text- and image-conditioned video diffusion model that ships inside the package.

- ``world.py``: the procedural, captioned world it is trained on
- ``model.py``: the diffusion transformer and its text encoder
- ``autoencoder.py``: v2's video autoencoder (the DiT of v2 works in its latent; its decoder draws the pixels)
- ``sampling.py``: Euler sampling with classifier-free guidance and known frames, in pixels (v1) or the latent (v2)
- ``train.py``: ``kinema train builtin`` (for v2, after ``train_autoencoder.py``'s stage)
- ``evaluate.py``: ``kinema eval builtin`` (prompt adherence measured by detectors)
- ``weights/``: the shipped weights (safetensors) and the model card

>>> from kinema.builtin import load_model
>>> model, tokenizer, info = load_model()                        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_GUIDANCE",
    "DEFAULT_GUIDANCE_INTERVAL",
    "DEFAULT_IMAGE_GUIDANCE",
    "DEFAULT_IMAGE_INTERVAL",
    "DEFAULT_MOTION_GUIDANCE",
    "DEFAULT_MOTION_INTERVAL",
    "WEIGHTS_DIR",
    "checkpoint_config",
    "checkpoint_sampling",
    "DEFAULT_WEIGHTS",
    "image_defaults",
    "is_checkpoint",
    "load_model",
    "motion_defaults",
    "sampling_defaults",
    "save_model",
    "weights_path",
]

#: Checkpoint formats: v1 (the DiT alone, in pixel space) and v2 (the DiT in a latent, with its autoencoder).
FORMATS = ("kinema-builtin-1", "kinema-builtin-2")
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "builtin.safetensors"
#: Classifier-free guidance by default, and the noise levels t it acts at (guidance in a limited interval,
#: Kynkaenniemi et al. 2024; elsewhere the conditional prediction is used alone). Chosen for the shipped weights on two
#: validation draws of 96 held-out prompts each (seeds 99 and 7, not the evaluation's 1234): scale 1.5 at t >= 0.8
#: only gave adherence 0.880 and 0.889, against 0.868 and 0.887 without guidance, 0.831 for 1.5 at every step, and
#: 0.861 for 1.5 at t in [0.3, 0.8]. Guidance at low noise undoes the camera move the warped noise carries (camera
#: 0.65 at 1.5 everywhere against 0.95 without); at high noise, where the layout is decided, it helps the subject's
#: motion (0.74 against 0.64 on seed 99). The first 9 of 20 steps then run twice, so a clip costs 1.37 times one
#: without guidance (bench/builtin.py). A negative prompt acts only at those steps. A checkpoint whose recipe measured
#: better ones carries its own in its header (``sampling_defaults``): v2's latent wants guidance over more of the
#: schedule (docs/builtin-v2.md).
DEFAULT_GUIDANCE = 1.5
DEFAULT_GUIDANCE_INTERVAL = (0.8, 1.0)
#: Motion guidance (``sampling.sample``'s ``motion_guidance``): off unless a checkpoint carries its own. At 2 over
#: t >= 0.95 (the first three of 20 steps) it raised the shipped weights' motion and lowered their camera by as much
#: on the evaluation's 200 prompts (docs/builtin-v2.md, session 22), so the shipped weights carry none.
DEFAULT_MOTION_GUIDANCE = 0.0
DEFAULT_MOTION_INTERVAL = (0.95, 1.0)
#: Image guidance (``sampling.sample``'s ``image_guidance``): off unless a checkpoint carries its own.
DEFAULT_IMAGE_GUIDANCE = 0.0
DEFAULT_IMAGE_INTERVAL = (0.0, 1.0)


def weights_path() -> Path:
    """The weights in use: ``KINEMA_BUILTIN_WEIGHTS`` if set, else the ones shipped in the package."""
    return Path(os.environ.get("KINEMA_BUILTIN_WEIGHTS") or DEFAULT_WEIGHTS)


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a built-in model checkpoint (reads only the safetensors header)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("format") in FORMATS
    except Exception:  # not a safetensors file at all
        return False


@functools.lru_cache(maxsize=16)
def _header(path: str, mtime: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, info) from a checkpoint's header."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{path} is not a Kinema built-in model checkpoint")
    return json.loads(meta["config"]), json.loads(meta.get("info", "{}"))


def _read_header(path: str | os.PathLike[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    p = Path(path) if path is not None else weights_path()
    return _header(str(p.resolve()), p.stat().st_mtime)


def checkpoint_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A checkpoint's model configuration (the shipped one by default), read from the file's header alone: what
    the backend needs to plan (the clip's size) without loading the weights."""
    return dict(_read_header(path)[0])


def _own(
    info: dict[str, Any] | None, key: str, default: float, interval_key: str, interval: tuple[float, float]
) -> tuple[float, tuple[float, float]]:
    """``info["sampling"][key]`` and ``[interval_key]`` (a recipe's measured defaults), else the package's."""
    own = (info or {}).get("sampling") or {}
    lo, hi = own.get(interval_key, interval)
    return float(own.get(key, default)), (float(lo), float(hi))


def sampling_defaults(info: dict[str, Any] | None) -> tuple[float, tuple[float, float]]:
    """The guidance scale and the interval of t it acts at that a checkpoint samples with when the caller gives none:
    its own (``info["sampling"]``, written by a training recipe that measured them; a v2 latent wants guidance over
    more of the schedule than v1) or the package's, ``DEFAULT_GUIDANCE`` at ``DEFAULT_GUIDANCE_INTERVAL``."""
    return _own(info, "guidance", DEFAULT_GUIDANCE, "guidance_interval", DEFAULT_GUIDANCE_INTERVAL)


def motion_defaults(info: dict[str, Any] | None) -> tuple[float, tuple[float, float]]:
    """The motion guidance and the interval of t it acts at that a checkpoint samples with when the caller gives
    none: its own (``info["sampling"]``) or the package's, ``DEFAULT_MOTION_GUIDANCE`` (off)."""
    return _own(info, "motion_guidance", DEFAULT_MOTION_GUIDANCE, "motion_interval", DEFAULT_MOTION_INTERVAL)


def image_defaults(info: dict[str, Any] | None) -> tuple[float, tuple[float, float]]:
    """The image guidance and the interval of t it acts at that a checkpoint samples image-to-video, extension and
    keyframes with when the caller gives none: its own (``info["sampling"]``) or the package's (off)."""
    return _own(info, "image_guidance", DEFAULT_IMAGE_GUIDANCE, "image_interval", DEFAULT_IMAGE_INTERVAL)


def checkpoint_sampling(path: str | os.PathLike[str] | None = None) -> tuple[float, tuple[float, float]]:
    """``sampling_defaults`` of a checkpoint (the one in use by default), from its header alone."""
    return sampling_defaults(_read_header(path)[1])


def save_model(
    model: Any, path: str | os.PathLike[str], info: dict[str, Any] | None = None, autoencoder: Any = None
) -> Path:
    """Write weights as fp16 safetensors; the config, vocabulary and ``info`` ride in the header's metadata.

    A v2 model (``cfg.latent_factor`` > 1) is written with its autoencoder (``autoencoder``, or the one attached to
    ``model``) under "autoencoder.", its latent statistics in fp32, as one file: the two only work together.
    """
    import torch
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ae = autoencoder if autoencoder is not None else getattr(model, "autoencoder", None)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("autoencoder.")}
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}
    meta = {"config": json.dumps(model.cfg.to_dict()), "info": json.dumps(info or {}), "format": FORMATS[0]}
    if model.cfg.latent_factor > 1:
        if ae is None:
            raise ValueError("a v2 model (latent_factor > 1) is saved with its autoencoder; pass autoencoder=")
        for k, v in ae.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                dtype = torch.float32 if k.startswith("norm.") else torch.float16
                tensors["autoencoder." + k] = v.detach().to(dtype).contiguous()
        meta |= {"format": FORMATS[1], "autoencoder": json.dumps(ae.cfg.to_dict())}
    tmp = p.with_name(p.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, p)
    return p


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from safetensors import safe_open

    from .model import ModelConfig, Tokenizer, VideoDiT

    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k).float() for k in fh.keys()}
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{path} is not a Kinema built-in model checkpoint")
    config = json.loads(meta["config"])
    config.setdefault("prediction", "v")  # checkpoints written before the field existed predicted velocity
    cfg = ModelConfig(**config)
    model = VideoDiT(cfg)
    ae_state = {k.removeprefix("autoencoder."): v for k, v in state.items() if k.startswith("autoencoder.")}
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("autoencoder.")})
    if meta.get("format") == FORMATS[1]:  # v2: the DiT's latent needs its autoencoder, stored beside it
        from .autoencoder import AEConfig, VideoAutoencoder

        ae = VideoAutoencoder(AEConfig(**json.loads(meta["autoencoder"])))
        ae.load_state_dict(ae_state, strict=False)  # num_batches_tracked is not stored
        missing = set(ae.state_dict()) - set(ae_state) - {"norm.num_batches_tracked"}
        if missing:
            raise ValueError(f"{path}: the autoencoder lacks {sorted(missing)}")
        model.autoencoder = ae
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = json.loads(meta.get("info", "{}"))
    with open(path, "rb") as fh:  # which weights made a clip: the recipe's model_revision
        info["sha256"] = hashlib.file_digest(fh, "sha256").hexdigest()
    _ = torch  # imported for its side effect of being ready before the model runs
    return model, Tokenizer(cfg.vocab, cfg.text_len), info


def load_model(path: str | os.PathLike[str] | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, info) from a checkpoint (the shipped one by default); cached per path."""
    from ..errors import ModelNotFound

    p = Path(path) if path is not None else weights_path()
    if not p.is_file():
        raise ModelNotFound(
            f"built-in model weights not found at {p}; reinstall kinema, or train them with "
            "'kinema train builtin --out DIR' and point KINEMA_BUILTIN_WEIGHTS at DIR/builtin.safetensors"
        )
    # one load at a time: the service's warm-up thread and a job claimed meanwhile would otherwise both miss the
    # cache and load the weights twice (lru_cache does not hold callers of a key still being computed)
    with _LOAD_LOCK:
        return _load(str(p.resolve()), p.stat().st_mtime)
