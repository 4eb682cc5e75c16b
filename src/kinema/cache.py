"""A content-addressed result cache: the same request with a fixed seed returns the earlier output instead of
generating (and paying) again.

The key is the sha256 of the full recipe as asked: every :class:`~kinema.VideoRequest` field (prompt, seed, size,
frames, steps, backend, model, options, post-processing...), the backend's name when the default was used, the output
format, and the *content* of input files (an image or clip given by path is hashed, so editing the file misses).
A request without a seed (random) never hits and is never stored: asking again means asking for a new video.

Entries live under ``<dir>/<key[:2]>/<key>/`` (the video, its sidecar recipe and ``entry.json``); they are written
to a temporary folder and renamed into place, so a crash never leaves half an entry.

>>> import kinema, tempfile
>>> from kinema.cache import ResultCache
>>> cache = ResultCache(tempfile.mkdtemp())
>>> first = kinema.generate("a red ball bouncing on green grass", seed=1, num_inference_steps=2, cache=cache)
>>> kinema.generate("a red ball bouncing on green grass", seed=1, num_inference_steps=2,
...                 cache=cache).recipe["cache"]["hit"]
True
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidRequest
from .result import Result
from .video import output_format

if TYPE_CHECKING:
    from .request import VideoRequest

__all__ = ["ResultCache", "default_cache_dir", "request_key"]

_KEY_VERSION = 1
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$KINEMA_CACHE_DIR``, else ``$XDG_CACHE_HOME/kinema/results`` (``~/.cache/kinema/results``)."""
    env = os.environ.get("KINEMA_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kinema" / "results"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def request_key(request: VideoRequest, fmt: str | None = None) -> str | None:
    """The cache key of a request (hex sha256), or None when its seed is random (such a request never hits)."""
    if request.seed is None:
        return None
    from .backends import DEFAULT_BACKEND

    recipe = request.recipe()
    recipe["backend"] = request.backend or DEFAULT_BACKEND
    recipe["format"] = fmt or request.format or "mp4"
    for name in ("image", "video"):
        value = getattr(request, name)
        if isinstance(value, str) and not value.startswith(("http://", "https://")) and Path(value).is_file():
            recipe[name] = _file_digest(Path(value))  # content, not the path: a changed file must miss
    # post-processing steps that read files (a soundtrack, an upscaler model) are keyed by content too
    steps = recipe.get("postprocess") or []
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict):
            for k in ("path", "model"):
                if isinstance(step.get(k), str) and Path(step[k]).is_file():
                    step[k] = _file_digest(Path(step[k]))
    text = json.dumps({"v": _KEY_VERSION, "recipe": recipe}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    """Generated outputs, keyed by their recipe. ``get`` before generating, ``put`` after; the engine does both
    when given ``cache=`` (see :func:`kinema.engine.run`)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory) if directory is not None else default_cache_dir()

    @classmethod
    def of(cls, cache: ResultCache | str | os.PathLike[str] | None) -> ResultCache:
        return cache if isinstance(cache, ResultCache) else cls(cache)

    def __repr__(self) -> str:
        return f"ResultCache({str(self.dir)!r})"

    def _entry(self, key: str) -> Path:
        return self.dir / key[:2] / key

    def key(self, request: VideoRequest, output: str | os.PathLike[str] | None = None) -> str | None:
        return request_key(request, output_format(output, request.format))

    def get(self, request: VideoRequest, output: str | os.PathLike[str] | None = None) -> Result | None:
        """The earlier result of this request, or None. With ``output`` the cached file is copied there (with its
        sidecar recipe) and the result's path is ``output``."""
        from .video import Video, sidecar_path

        t0 = time.perf_counter()
        key = self.key(request, output)
        if key is None:
            return None
        entry = self._entry(key)
        meta_path = entry / "entry.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            stored = entry / meta["file"]
            if not stored.exists():
                return None
            path = stored
            if output is not None:
                path = _copy_output(stored, Path(output))
            video = Video.open(stored)
        except (OSError, KeyError, ValueError, InvalidRequest):
            return None  # a damaged entry is a miss; the next put replaces it
        os.utime(meta_path)  # last use, for prune()
        recipe = dict(meta["recipe"])
        recipe["cache"] = {"hit": True, "key": key, "cost_when_generated": meta.get("cost")}
        video.metadata = recipe
        if output is not None and path.is_file():
            sidecar_path(path).write_text(json.dumps(recipe, indent=2, sort_keys=True, default=str), encoding="utf-8")
        timings = {"cache": time.perf_counter() - t0}
        timings["total"] = timings["cache"]
        return Result(
            path=path,
            video=video,
            recipe=recipe,
            timings=timings,
            seed=int(meta["seed"]),
            cost=None,
            provider_task_id=meta.get("provider_task_id"),
            warnings=[f"served from the result cache ({key[:12]}); nothing was generated"],
        )

    def put(self, request: VideoRequest, result: Result) -> Path | None:
        """Store a result; returns the entry folder, or None for a random-seed request (never cached)."""
        fmt = result.recipe.get("format") or output_format(result.path, request.format)
        key = request_key(request, fmt)
        if key is None:
            return None
        entry = self._entry(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=entry.parent))
        try:
            name = "video" if fmt == "png" else f"video.{fmt}"
            target = tmp / name
            if result.path is not None and Path(result.path).exists():
                _copy_output(Path(result.path), target)
            else:
                result.video.save(target, format=fmt)
            meta = {
                "key": key,
                "file": name,
                "seed": result.seed,
                "cost": result.cost,
                "provider_task_id": result.provider_task_id,
                "recipe": result.recipe,
                "stored_at": time.time(),
            }
            (tmp / "entry.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), "utf-8")
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not entry.exists():
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return entry

    def entries(self) -> list[Path]:
        return sorted(p.parent for p in self.dir.glob("*/*/entry.json"))

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.dir.rglob("*") if f.is_file()) if self.dir.exists() else 0

    def prune(self, max_bytes: int) -> int:
        """Remove the least recently used entries until the cache holds at most ``max_bytes``; returns how many."""
        entries = [
            (e, (e / "entry.json").stat().st_mtime, sum(f.stat().st_size for f in e.rglob("*") if f.is_file()))
            for e in self.entries()
        ]
        total = sum(s for _, _, s in entries)
        removed = 0
        for entry, _, size in sorted(entries, key=lambda x: x[1]):
            if total <= max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size
            removed += 1
        return removed

    def clear(self) -> None:
        for entry in self.entries():
            shutil.rmtree(entry, ignore_errors=True)


def _copy_output(src: Path, dst: Path) -> Path:
    """Copy a video file (and its sidecar) or a PNG folder to ``dst`` atomically."""
    from .video import sidecar_path

    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
        shutil.copytree(src, tmp_dir, dirs_exist_ok=True)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp_dir, dst)
        return dst
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp{dst.suffix}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    side = sidecar_path(src)
    if side.is_file():
        shutil.copyfile(side, sidecar_path(dst))
    return dst
