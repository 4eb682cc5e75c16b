"""Loading input media (images to animate, clips to extend) into uint8 arrays, and resizing them."""

from __future__ import annotations

import io
import os
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidRequest

__all__ = ["load_image", "load_video_frames", "resize_frames", "MAX_IMAGE_BYTES"]

MAX_IMAGE_BYTES = 50 * 1024 * 1024
#: a clip to edit given as a URL (source_video) is downloaded up to this size
MAX_VIDEO_BYTES = 500 * 1024 * 1024


def _download(url: str, field: str, limit: int) -> bytes:
    """The body at an http(s) URL, at most ``limit`` bytes, or InvalidRequest naming ``field``."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - the callers checked the scheme
            data: bytes = resp.read(limit + 1)
    except OSError as exc:
        raise InvalidRequest(field, f"could not download {url} ({exc})") from None
    if len(data) > limit:
        raise InvalidRequest(field, f"{url} is larger than {limit // 2**20} MiB")
    return data


def _decode_image_bytes(data: bytes, field: str) -> np.ndarray:
    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration, ValueError) as exc:
        raise InvalidRequest(
            field, f"could not be decoded as an image ({exc})", allowed="PNG, JPEG, WebP, BMP or GIF image data"
        ) from None


def load_image(source: Any, field: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 from a path, an http(s) URL, bytes, a PIL image or an array."""
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if type(source).__module__.startswith("PIL."):
        return np.asarray(source.convert("RGB"), dtype=np.uint8).copy()
    if isinstance(source, bytes | bytearray):
        return _decode_image_bytes(bytes(source), field)
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if text.startswith(("http://", "https://")):
            return _decode_image_bytes(_download(text, field, MAX_IMAGE_BYTES), field)
        path = Path(text)
        if not path.is_file():
            raise InvalidRequest(field, f"file not found: {path}", value=text)
        return _decode_image_bytes(path.read_bytes(), field)
    raise InvalidRequest(field, f"cannot read an image from {type(source).__name__}")


def load_video_frames(path: str | os.PathLike[str], field: str = "video") -> tuple[np.ndarray, float]:
    """(F, H, W, 3) uint8 frames and fps of a clip: a path, or (source_video) an http(s) URL, downloaded as images
    given as URLs are."""
    from ..video import Video

    text = os.fspath(path)
    if text.startswith(("http://", "https://")):
        import tempfile
        from urllib.parse import urlsplit

        data = _download(text, field, MAX_VIDEO_BYTES)
        suffix = Path(urlsplit(text).path).suffix or ".mp4"
        with tempfile.TemporaryDirectory(prefix="kinema-src-") as folder:
            local = Path(folder) / f"source{suffix}"
            local.write_bytes(data)
            return load_video_frames(local, field)
    try:
        clip = Video.open(path)
    except InvalidRequest as exc:
        raise InvalidRequest(field, exc.message.split(": ", 1)[-1], value=str(path)) from None
    return clip.frames, clip.fps


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize (F, H, W, 3) or (H, W, 3) uint8 to the given size with antialiased bilinear filtering."""
    import torch
    import torch.nn.functional as F

    single = frames.ndim == 3
    arr = frames[None] if single else frames
    if arr.shape[1] == height and arr.shape[2] == width:
        return frames
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()  # (F, 3, H, W)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    out = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out[0] if single else out
