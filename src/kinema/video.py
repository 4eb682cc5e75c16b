"""Video: frames + fps + metadata, read and written with PyAV.

Formats, picked by the path's extension (or ``format=``):

- ``.mp4``: H.264 (libx264), yuv420p, ``faststart`` so browsers can play it while it downloads. yuv420p needs even
  sizes, so an odd width or height is padded by repeating the last column or row; the true size is stored in the
  ``kinema_size`` tag and :meth:`Video.open` crops the padding away again.
- ``.webm``: VP9, yuv420p (same padding rule).
- ``.gif``: 256-colour palette computed from the clip (ffmpeg's palettegen/paletteuse, via the bundled binary).
- a folder (no extension) or ``format="png"``: numbered lossless PNG frames plus ``recipe.json``.

The recipe goes into the container's metadata (``kinema`` holds the JSON, ``comment`` a readable line) and into a
sidecar JSON next to the file (``out.mp4`` -> ``out.mp4.json``), so ``kinema info`` can show it and a re-run can
reproduce it.

>>> import numpy as np
>>> from kinema import Video
>>> clip = Video(np.zeros((8, 32, 32, 3), np.uint8), fps=8, metadata={"prompt": "black"})
>>> path = clip.save("/tmp/kinema-doctest.mp4")
>>> Video.open(path).metadata["prompt"]
'black'
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidRequest

__all__ = [
    "Video",
    "sidecar_path",
    "read_metadata",
    "probe",
    "FORMAT_BY_SUFFIX",
    "output_format",
    "write_text_atomic",
    "write_json_atomic",
]

FORMAT_BY_SUFFIX = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4", ".webm": "webm", ".gif": "gif", ".png": "png"}


def output_format(path: str | os.PathLike[str] | None, requested: str | None = None, field: str = "output") -> str:
    """The format a clip saved at ``path`` gets: from its suffix (no suffix: a folder of PNG frames), else
    ``requested``, else mp4. An unknown suffix, or one that disagrees with ``requested``, is refused naming the
    field. The one place this is decided (the planner, ``Video.save``, the result cache)."""
    if path is None:
        return requested or "mp4"
    p = Path(path)
    by_suffix = FORMAT_BY_SUFFIX.get(p.suffix.lower()) or ("png" if p.suffix == "" else None)
    if by_suffix is None:
        raise InvalidRequest(
            field,
            f"unknown video extension {p.suffix!r}",
            value=str(p),
            allowed=", ".join(sorted(FORMAT_BY_SUFFIX)) + ", or a folder for PNG frames",
        )
    if requested and requested != by_suffix:
        raise InvalidRequest(
            "format", f"{requested!r} disagrees with the output file {p.name!r}", value=requested, allowed=by_suffix
        )
    return by_suffix


_METADATA_KEY = "kinema"
_SIZE_KEY = "kinema_size"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the recipe JSON of an output lives: next to it, with ``.json`` appended (a folder holds recipe.json)."""
    p = Path(path)
    if p.is_dir() or p.suffix == "":
        return p / "recipe.json"
    return p.with_name(p.name + ".json")


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _even(n: int) -> int:
    return n + (n % 2)


class Video:
    """A clip in memory: ``frames`` is a uint8 array of shape (frames, height, width, 3)."""

    def __init__(self, frames: np.ndarray, fps: float = 8.0, metadata: dict[str, Any] | None = None) -> None:
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise InvalidRequest("frames", f"must have shape (frames, height, width, 3), got {arr.shape}")
        if arr.dtype != np.uint8:
            raise InvalidRequest("frames", f"must be uint8, got {arr.dtype}")
        if arr.shape[0] < 1:
            raise InvalidRequest("frames", "must hold at least one frame")
        if not (fps > 0 and np.isfinite(fps)):
            raise InvalidRequest("fps", f"must be a positive number, got {fps}")
        self.frames = arr
        self.fps = float(fps)
        self.metadata: dict[str, Any] = dict(metadata or {})

    # -- shape ----------------------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Seconds: frames divided by fps."""
        return self.num_frames / self.fps

    def __repr__(self) -> str:
        return f"Video(frames={self.num_frames}, size={self.width}x{self.height}, fps={self.fps:g})"

    def __len__(self) -> int:
        return self.num_frames

    # -- writing ----------------------------------------------------------------------------------------------------
    def save(
        self, path: str | os.PathLike[str], format: str | None = None, *, crf: int = 18, sidecar: bool = True
    ) -> Path:
        """Write the clip (and its recipe) to ``path``; the format comes from the extension unless given.

        The file is written under a temporary name and renamed into place, so a reader never sees half a video.
        Returns the path written.
        """
        p = Path(path)
        fmt = format or output_format(p, field="path")
        if fmt not in ("mp4", "webm", "gif", "png"):
            raise InvalidRequest("format", f"{fmt!r} is not supported", value=fmt, allowed="mp4, webm, gif, png")
        if fmt == "png":
            if p.suffix.lower() == ".png":
                p = p.with_suffix("")
            self._save_png(p)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp{p.suffix}")
            try:
                if fmt == "gif":
                    self._save_gif(tmp)
                else:
                    self._save_av(tmp, fmt, crf)
                os.replace(tmp, p)
            finally:
                tmp.unlink(missing_ok=True)
        if sidecar or fmt == "png":  # a frame folder keeps its fps in its recipe.json, so it always gets one
            self.write_sidecar(p)
        return p

    def write_sidecar(self, path: str | os.PathLike[str]) -> Path:
        """(Re)write the recipe JSON next to a saved clip (inside it, for a folder of PNG frames)."""
        p = Path(path)
        meta = {**self.metadata, "_fps": self.fps} if p.is_dir() else self.metadata
        side = sidecar_path(p)
        write_text_atomic(side, json.dumps(meta, indent=2, sort_keys=True, default=str))
        return side

    def _padded(self) -> np.ndarray:
        f, h, w, _ = self.frames.shape
        if h % 2 == 0 and w % 2 == 0:
            return self.frames
        # repeat the last row/column: invisible at the edge, and cropped off again by Video.open
        return np.pad(self.frames, ((0, 0), (0, _even(h) - h), (0, _even(w) - w), (0, 0)), mode="edge")

    def _save_av(self, path: Path, fmt: str, crf: int) -> None:
        import av

        frames = self._padded()
        options = {"movflags": "faststart+use_metadata_tags"} if fmt == "mp4" else {}
        with av.open(str(path), "w", format="mp4" if fmt == "mp4" else "webm", options=options) as container:
            codec = "libx264" if fmt == "mp4" else "libvpx-vp9"
            stream = container.add_stream(codec, rate=_fps_fraction(self.fps))
            assert isinstance(stream, av.VideoStream)
            stream.width = frames.shape[2]
            stream.height = frames.shape[1]
            stream.pix_fmt = "yuv420p"
            # let the encoder use every core, as the ffmpeg CLI does by default (PyAV defaults to one thread)
            stream.codec_context.thread_count = 0
            stream.codec_context.thread_type = "AUTO"
            if fmt == "mp4":
                # macroblock-tree rate control made x264's output differ from run to run on an AVX-512 CPU (the
                # same frames decoded up to 32 levels apart; asm=0 or no-mbtree made it byte-identical), and a
                # recipe must reproduce its file
                stream.options = {"crf": str(crf), "preset": "medium", "x264-params": "no-mbtree=1"}
            else:
                stream.options = {"crf": str(min(63, crf + 14)), "b": "0", "deadline": "good", "cpu-used": "4"}
            container.metadata[_METADATA_KEY] = json.dumps(self.metadata, sort_keys=True, default=str)
            container.metadata["comment"] = _infotext(self.metadata)
            container.metadata[_SIZE_KEY] = f"{self.width}x{self.height}"
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    def _save_gif(self, path: Path) -> None:
        from .media.ffmpeg import ffmpeg_exe

        fps = f"{self.fps:g}"
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{self.width}x{self.height}",
            "-r",
            fps,
            "-i",
            "-",
            "-filter_complex",
            "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=sierra2_4a",
            "-loop",
            "0",
            "-f",
            "gif",
            str(path),
        ]
        proc = subprocess.run(cmd, input=np.ascontiguousarray(self.frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not write the GIF: {proc.stderr.decode(errors='replace').strip()}")

    def _save_png(self, folder: Path) -> None:
        import av

        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(self.frames):
            target = folder / f"{i:05d}.png"
            tmp = folder / f".{i:05d}.png.tmp"
            with av.open(str(tmp), "w", format="image2", options={"update": "1"}) as container:
                stream = container.add_stream("png", rate=1)
                stream.width, stream.height, stream.pix_fmt = self.width, self.height, "rgb24"
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            os.replace(tmp, target)

    # -- reading ----------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Video:
        """Read a clip and its recipe back (from the file's tags, else from the sidecar JSON)."""
        p = Path(path)
        if p.is_dir():
            return cls._open_png(p)
        if not p.is_file():
            raise InvalidRequest("path", f"file not found: {p}", value=str(p))
        import av

        try:
            container = av.open(str(p))
        except av.error.FFmpegError as exc:
            raise InvalidRequest("path", f"{p} is not a readable video ({exc})", value=str(p)) from None
        with container:
            if not container.streams.video:
                raise InvalidRequest("path", f"{p} has no video stream", value=str(p))
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(8)
            tags = dict(container.metadata)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        if not frames:
            raise InvalidRequest("path", f"{p} holds no decodable frames", value=str(p))
        arr = np.stack(frames)
        size = tags.get(_SIZE_KEY)
        if size:
            w, h = (int(v) for v in size.split("x"))
            arr = arr[:, :h, :w]
        metadata = _parse_metadata(tags.get(_METADATA_KEY))
        if metadata is None:
            metadata = read_sidecar(p) or {}
        return cls(np.ascontiguousarray(arr), fps=float(rate), metadata=metadata)

    @classmethod
    def _open_png(cls, folder: Path) -> Video:
        import av

        files = sorted(folder.glob("*.png"))
        if not files:
            raise InvalidRequest("path", f"folder {folder} holds no PNG frames", value=str(folder))
        frames = []
        for f in files:
            with av.open(str(f)) as container:
                frames.append(next(container.decode(video=0)).to_ndarray(format="rgb24"))
        meta = read_sidecar(folder) or {}
        fps = float(meta.pop("_fps", 8.0))
        return cls(np.stack(frames), fps=fps, metadata=meta)


def _parse_metadata(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    return _parse_metadata(side.read_text(encoding="utf-8"))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The recipe stored with a video, without decoding its frames (tags first, then the sidecar)."""
    p = Path(path)
    if not p.exists():
        raise InvalidRequest("path", f"file not found: {p}", value=str(p))
    if p.is_dir():
        folder_meta = read_sidecar(p) or {}
        folder_meta.pop("_fps", None)
        return folder_meta
    import av

    meta: dict[str, Any] | None
    try:
        with av.open(str(p)) as container:
            meta = _parse_metadata(dict(container.metadata).get(_METADATA_KEY))
    except av.error.FFmpegError as exc:
        raise InvalidRequest("path", f"{p} is not a readable video ({exc})", value=str(p)) from None
    if meta is None:
        meta = read_sidecar(p)
    if meta is None:
        raise InvalidRequest("path", f"{p} carries no Kinema recipe (no 'kinema' tag and no sidecar JSON)")
    return meta


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The clip as it is on disk: width, height, num_frames, fps, duration and whether it has sound.

    Decoded, not read from the recipe: post-processing (upscale, retime, trim, a join) changes the file, and the
    recipe keeps what was generated. A PNG folder's frame rate is its sidecar's.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.png"))
        if not files:
            raise InvalidRequest("path", f"folder {p} holds no PNG frames", value=str(p))
        import av

        with av.open(str(files[0])) as container:
            first = next(container.decode(video=0))
        fps = float((read_sidecar(p) or {}).get("_fps", 8.0))
        width, height, frames, sound = first.width, first.height, len(files), False
    else:
        if not p.is_file():
            raise InvalidRequest("path", f"file not found: {p}", value=str(p))
        import av

        from .media.ffmpeg import media_info

        try:
            info = media_info(p)
            with av.open(str(p)) as container:
                size = dict(container.metadata).get(_SIZE_KEY)
        except av.error.FFmpegError as exc:
            raise InvalidRequest("path", f"{p} is not a readable video ({exc})", value=str(p)) from None
        video = info["video"]
        if not video:
            raise InvalidRequest("path", f"{p} has no video stream", value=str(p))
        width, height, frames, fps = video["width"], video["height"], video["frames"], video["fps"]
        if size:  # odd sizes are padded to even for the encoder; the tag holds the real one (as Video.open crops)
            width, height = (int(v) for v in str(size).split("x"))
        sound = info["audio"] is not None
    return {
        "width": width,
        "height": height,
        "num_frames": frames,
        "fps": fps,
        "duration": round(frames / fps, 6) if fps else 0.0,
        "audio": sound,
    }


def _infotext(meta: dict[str, Any]) -> str:
    """A one-line human summary in the A1111 'parameters' style, for players that show the comment tag."""
    parts = [str(meta.get("prompt", ""))]
    if meta.get("negative_prompt"):
        parts.append(f"Negative prompt: {meta['negative_prompt']}")
    keys = ("seed", "backend", "model", "num_inference_steps", "guidance_scale", "num_frames", "fps")
    parts.append(", ".join(f"{k}: {meta[k]}" for k in keys if meta.get(k) is not None))
    parts.append(f"Kinema {meta.get('kinema_version', '')}".strip())
    return "\n".join(p for p in parts if p)


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, not while other threads create files
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name and rename it into place, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a recipe is as readable as the video next to it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str))
