"""A still that stands for a clip (a thumbnail) and a grid of evenly spaced frames (a contact sheet).

>>> import numpy as np
>>> from kinema import Video
>>> clip = Video(np.zeros((16, 32, 32, 3), np.uint8), fps=8)
>>> contact_sheet(clip, columns=4, count=8).shape  # 2 rows of 4 frames, with 2-pixel gaps
(70, 138, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidRequest
from ..video import Video

__all__ = ["pick_frame", "thumbnail", "contact_sheet", "save_image"]


def pick_frame(video: Video, time: float | None = None) -> int:
    """The index of the frame to show: the one at ``time`` seconds, or else the sharpest of the middle half
    (the most detail: an in-between motion-blurred or faded frame makes a poor thumbnail)."""
    if time is not None:
        if not 0 <= time <= video.duration:
            raise InvalidRequest("time", f"{time:g}s is outside the clip (0 to {video.duration:g}s)", value=time)
        return min(video.num_frames - 1, int(time * video.fps))
    lo, hi = video.num_frames // 4, max(video.num_frames // 4 + 1, (3 * video.num_frames) // 4)
    grey = video.frames[lo:hi].astype(np.float32).mean(axis=-1)
    # detail = variance of the horizontal and vertical differences (a cheap Laplacian-like measure)
    detail = np.diff(grey, axis=1).var(axis=(1, 2)) + np.diff(grey, axis=2).var(axis=(1, 2))
    return lo + int(np.argmax(detail))


def thumbnail(video: Video, time: float | None = None, width: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8: one frame of the clip (see :func:`pick_frame`), scaled to ``width`` if given."""
    frame = video.frames[pick_frame(video, time)]
    if width is not None:
        frame = _scale(frame, width)
    return frame


def _scale(frame: np.ndarray, width: int, floor: int = 8) -> np.ndarray:
    if not floor <= width <= 8192:
        raise InvalidRequest("width", f"must be between {floor} and 8192 pixels, got {width}", value=width)
    from .io import resize_frames

    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    return resize_frames(frame, width, height)


def contact_sheet(
    video: Video,
    *,
    columns: int = 4,
    count: int = 12,
    width: int | None = None,
    gap: int = 2,
    background: tuple[int, int, int] = (16, 16, 16),
) -> np.ndarray:
    """(H, W, 3) uint8: ``count`` evenly spaced frames (first to last) in rows of ``columns``, ``gap`` pixels apart.

    ``width`` is the whole sheet's width: the tiles are scaled so that the row of them and its gaps fill it.

    >>> import numpy as np
    >>> from kinema import Video
    >>> contact_sheet(Video(np.zeros((16, 32, 32, 3), np.uint8), fps=8), columns=4, count=8, width=800).shape[1]
    800
    """
    if not 1 <= columns <= 64:
        raise InvalidRequest("columns", f"must be between 1 and 64, got {columns}", value=columns)
    if not 1 <= count <= 1024:
        raise InvalidRequest("count", f"must be between 1 and 1024, got {count}", value=count)
    count = min(count, video.num_frames)
    cols = min(columns, count)
    idx = np.linspace(0, video.num_frames - 1, count).round().astype(int)
    tile_width: int | None = None
    if width is not None:
        if not 8 <= width <= 8192:
            raise InvalidRequest("width", f"must be between 8 and 8192 pixels, got {width}", value=width)
        tile_width = (width - (cols + 1) * gap) // cols
        if tile_width < 1:
            least = cols + (cols + 1) * gap
            raise InvalidRequest(
                "width",
                f"{width} pixels leave no room for {cols} frames per row",
                value=width,
                allowed=f"at least {least} with {cols} columns, or fewer --columns",
            )
    tiles = [video.frames[i] if tile_width is None else _scale(video.frames[i], tile_width, floor=1) for i in idx]
    th, tw = tiles[0].shape[:2]
    rows = -(-count // cols)
    # the integer tile width can leave a few pixels over: the last gap takes them, so the sheet is exactly `width`
    full = cols * tw + (cols + 1) * gap if width is None else width
    sheet = np.empty((rows * th + (rows + 1) * gap, full, 3), np.uint8)
    sheet[:] = np.asarray(background, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + th, x : x + tw] = tile
    return sheet


def save_image(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an (H, W, 3) uint8 image; PNG, JPEG or WebP by the extension (PyAV, no Pillow needed)."""
    import av

    p = Path(path)
    codecs = {
        ".png": ("png", "rgb24"),
        ".jpg": ("mjpeg", "yuvj444p"),
        ".jpeg": ("mjpeg", "yuvj444p"),
        ".webp": ("libwebp", "yuv420p"),
    }
    if p.suffix.lower() not in codecs:
        raise InvalidRequest(
            "output", f"unknown image extension {p.suffix!r}", value=str(p), allowed=", ".join(codecs)
        )
    codec, pix = codecs[p.suffix.lower()]
    frame = np.ascontiguousarray(image)
    if codec != "png" and (frame.shape[0] % 2 or frame.shape[1] % 2):
        frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp{p.suffix}")
    try:
        with av.open(str(tmp), "w", format="image2", options={"update": "1"}) as container:
            stream: Any = container.add_stream(codec, rate=1)
            stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], pix
            if codec == "mjpeg":
                stream.options = {"qscale": "2"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix)):
                container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
