"""The backend registry: a name -> backend map.

Kinema's own backends are listed here by import path and imported only when first used, so ``kinema backends`` works
without any optional extra installed. Third-party packages add theirs through the entry-point group
``kinema.backends`` (the entry point loads a Backend class or a zero-argument factory)::

    [project.entry-points."kinema.backends"]
    mybackend = "my_package.backend:MyBackend"
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..errors import BackendUnavailable, InvalidRequest, MissingExtra
from ..request import VideoRequest
from .base import (
    Availability,
    Backend,
    BackendOutput,
    BaseBackend,
    CancelToken,
    Capabilities,
    GenerationContext,
    GenerationParams,
)

__all__ = [
    "DEFAULT_BACKEND",
    "AdaptedBackend",
    "Availability",
    "Backend",
    "BackendInfo",
    "BackendOutput",
    "BaseBackend",
    "CancelToken",
    "Capabilities",
    "GenerationContext",
    "GenerationParams",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
    "backend_names",
]

DEFAULT_BACKEND = "builtin"

#: Kinema's own backends: name -> "module:Class" (imported lazily)
_KNOWN: dict[str, str] = {
    "builtin": "kinema.backends.builtin:BuiltinBackend",
    "diffusers": "kinema.backends.diffusers:DiffusersBackend",
    "runway": "kinema.backends.runway:RunwayBackend",
    "luma": "kinema.backends.luma:LumaBackend",
    "kling": "kinema.backends.kling:KlingBackend",
    "fal": "kinema.backends.fal:FalBackend",
    "replicate": "kinema.backends.replicate:ReplicateBackend",
    "veo": "kinema.backends.veo:VeoBackend",
    "pictory": "kinema.backends.pictory:PictoryBackend",
    "modelslab": "kinema.backends.modelslab:ModelsLabBackend",
    "openai": "kinema.backends.openai_videos:OpenAIVideosBackend",
}

#: the extra that installs what each of Kinema's own backends imports
_EXTRA_OF: dict[str, str] = {
    name: ("local" if name == "diffusers" else "cloud") for name in _KNOWN if name != "builtin"
}

_factories: dict[str, Callable[[], Any]] = {}
_instances: dict[str, Any] = {}
_lock = threading.Lock()
_entry_points_loaded = False


def register_backend(name: str, factory: Callable[[], Any] | str) -> None:
    """Add (or replace) a backend: ``factory`` is a Backend class, a zero-argument callable, or "module:Class"."""
    with _lock:
        if isinstance(factory, str):
            _KNOWN[name] = factory
            _factories.pop(name, None)
        else:
            _factories[name] = factory
        _instances.pop(name, None)


def unregister_backend(name: str) -> None:
    """Undo :func:`register_backend` with a class or factory (tests, plugins reloading): the factory and its cached
    instance are dropped, so one of Kinema's own backends it replaced comes back. Unknown names are ignored."""
    with _lock:
        _factories.pop(name, None)
        _instances.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="kinema.backends"):
        if ep.name not in _KNOWN and ep.name not in _factories:
            _factories[ep.name] = ep.load


def backend_names() -> list[str]:
    _load_entry_points()
    return sorted(set(_KNOWN) | set(_factories), key=lambda n: (n != DEFAULT_BACKEND, n))


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class AdaptedBackend(BaseBackend):
    """A backend that implements only the :class:`Backend` protocol, given the rest of BaseBackend's interface.

    The registry wraps such a backend once, so every caller (the planner, the service, storyboards) sees one typed
    interface: the shared Capabilities checks of :meth:`BaseBackend.resolve`, ``models()`` and ``default_model()``
    (empty unless the wrapped object has them).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = str(inner.name)
        self.description = str(getattr(inner, "description", ""))

    def availability(self) -> Availability:
        return self.inner.availability()

    def capabilities(self, model: str | None = None) -> Capabilities:
        return self.inner.capabilities(model)

    def models(self) -> list[str]:
        models = getattr(self.inner, "models", None)
        return list(models()) if callable(models) else []

    def default_model(self) -> str | None:
        default = getattr(self.inner, "default_model", None)
        return default() if callable(default) else None

    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        own = getattr(self.inner, "resolve", None)
        return own(request, seed) if callable(own) else super().resolve(request, seed)

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        return self.inner.generate(params, ctx)

    def __repr__(self) -> str:
        return f"<AdaptedBackend {self.inner!r}>"


def _adapt(obj: Any) -> BaseBackend:
    if isinstance(obj, BaseBackend):
        return obj
    missing = [m for m in ("name", "availability", "capabilities", "generate") if not hasattr(obj, m)]
    if missing:
        raise TypeError(f"{type(obj).__name__} is not a Kinema backend: it lacks {', '.join(missing)}")
    return AdaptedBackend(obj)


def get_backend(name: str | None = None) -> BaseBackend:
    """The backend instance called ``name`` (the default backend when None).

    Every backend comes back as a :class:`BaseBackend`: one that implements only the :class:`Backend` protocol is
    wrapped in an :class:`AdaptedBackend` here, once.
    """
    name = name or DEFAULT_BACKEND
    _load_entry_points()
    with _lock:
        if name in _instances:
            return _instances[name]
    if name in _factories:
        factory = _factories[name]
        obj = factory()
        # an entry point's load() gives the class back; call it to get the instance
        backend = _adapt(obj() if isinstance(obj, type) else obj)
    elif name in _KNOWN:
        try:
            cls = _import(_KNOWN[name])
        except ModuleNotFoundError as exc:
            # an optional dependency missing at import time is a missing extra, named as every backend names it
            missing = (exc.name or "").partition(".")[0]
            if missing and missing != "kinema" and name in _EXTRA_OF:
                raise MissingExtra(_EXTRA_OF[name], missing, feature=f"backend {name!r}") from exc
            raise BackendUnavailable(name, f"could not be imported ({exc})") from exc
        except ImportError as exc:
            raise BackendUnavailable(name, f"could not be imported ({exc})") from exc
        backend = _adapt(cls())
    else:
        raise InvalidRequest("backend", f"unknown backend {name!r}", value=name, allowed=", ".join(backend_names()))
    with _lock:
        _instances[name] = backend
    return backend


@dataclass(frozen=True)
class BackendInfo:
    name: str
    description: str
    usable: bool
    reason: str | None
    modes: tuple[str, ...]
    default: bool
    #: what a user should know about a usable backend (no GPU: very slow; which models are here)
    notes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "usable": self.usable,
            "reason": self.reason,
            "modes": list(self.modes),
            "default": self.default,
            "notes": self.notes,
        }


_MODE_ORDER = ("t2v", "i2v", "extend")


def _all_modes(backend: BaseBackend) -> tuple[str, ...]:
    """The modes of every model of the backend (the default model's alone hid i2v and extend for diffusers)."""
    modes = set(backend.capabilities(None).modes)
    for model in backend.models():
        try:
            modes.update(backend.capabilities(model).modes)
        except Exception:  # noqa: S112 - a model that cannot describe itself adds no mode; the listing goes on
            continue
    return tuple(sorted(modes, key=lambda m: (_MODE_ORDER.index(m) if m in _MODE_ORDER else len(_MODE_ORDER), m)))


def list_backends() -> list[BackendInfo]:
    """Every backend, with whether it can run here and, if not, exactly why."""
    out = []
    for name in backend_names():
        try:
            backend = get_backend(name)
            avail = backend.availability()
            usable, reason, notes = avail.usable, avail.reason, None
            if name == "diffusers" and usable:  # installed is not runnable: weights and a GPU decide (readiness)
                from .readiness import local_readiness

                usable, why = local_readiness()
                reason, notes = (None, why) if usable else (why, None)
            out.append(
                BackendInfo(
                    name, backend.description, usable, reason, _all_modes(backend), name == DEFAULT_BACKEND, notes
                )
            )
        except BackendUnavailable as exc:  # an extra not installed: say which, like availability() does
            out.append(BackendInfo(name, "", False, exc.reason, (), name == DEFAULT_BACKEND))
        except ModuleNotFoundError as exc:  # a dependency imported lazily (by capabilities()) is an extra too
            extra = _EXTRA_OF.get(name)
            reason = MissingExtra(extra, exc.name or "?").reason if extra else f"failed to load: {exc}"
            out.append(BackendInfo(name, "", False, reason, (), name == DEFAULT_BACKEND))
        except Exception as exc:  # a broken third-party backend must not break the listing
            out.append(BackendInfo(name, "", False, f"failed to load: {exc}", (), name == DEFAULT_BACKEND))
    return out
