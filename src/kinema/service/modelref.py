"""Model references as the HTTP API accepts them: never a path on the server's disk.

A client may name a catalog id, a backend name, ``backend/model`` with a Hub repo id (``org/name``) or a built-in
name. A local path (absolute, ``~``, ``.``/``..`` parts, a backslash, a ``.safetensors`` file, or anything that exists
on disk) is refused with one answer that names no path, so the answer cannot probe the filesystem, unless the
operator set ``ServiceConfig.model_dir`` and the path resolves inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ApiError

__all__ = ["check_model_ref", "REFUSED_MESSAGE"]

REFUSED_MESSAGE = "model must be a catalog id, a backend name or 'backend/org/name'; local paths are not accepted"


def _looks_local(ref: str) -> bool:
    if not ref or ref.startswith(("/", "~")) or "\\" in ref or ":" in ref.split("/", 1)[0][1:2]:
        return True
    parts = ref.split("/")
    if any(p in (".", "..", "") or p.startswith("~") for p in parts):
        return True
    return ref.lower().endswith((".safetensors", ".ckpt", ".bin", ".pt", ".pth"))


def _exists(ref: str) -> bool:
    try:
        return os.path.lexists(ref)
    except (OSError, ValueError):
        return True


def _inside(ref: str, model_dir: str | os.PathLike[str]) -> bool:
    try:
        root = Path(model_dir).expanduser().resolve()
        target = (
            (root / ref).resolve() if not os.path.isabs(os.path.expanduser(ref)) else Path(ref).expanduser().resolve()
        )
    except (OSError, ValueError, RuntimeError):
        return False
    return target == root or root in target.parents


def check_model_ref(model: str | None, backend: str | None, model_dir: str | os.PathLike[str] | None) -> None:
    """Refuse (400, param ``model``) a reference that names a local path, before any planning touches the disk."""
    for value in (model, backend):
        if value is None:
            continue
        head, sep, tail = value.partition("/")
        candidates = [value] + ([tail] if sep and tail else [])
        local = any(_looks_local(c) or _exists(c) for c in candidates)
        if not local:
            continue
        if model_dir is not None and all(_inside(c, model_dir) for c in ([tail] if sep and tail else [value])):
            continue
        raise ApiError(400, REFUSED_MESSAGE, code="invalid_request", param="model" if value is model else "backend")
