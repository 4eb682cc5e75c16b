"""``GET /v1/models``: every backend, and every model it lists, with whether it can run here and what it accepts.

An entry's ``id`` is a model reference the create routes take as ``model``: the backend's name (its default model)
or ``"backend/model"``. The answer is kept 30 s: loading every backend to ask it is slow.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends

from ..errors import BackendUnavailable
from .auth import check_rate, owner_dependency
from .errors import ERROR_RESPONSES
from .schemas import ModelList

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = ["model_routes", "model_entries"]

#: seconds an answer is reused
CACHE_SECONDS = 30.0


def model_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(tags=["models"])
    owner_of = owner_dependency(state)

    @router.get(
        "/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, summary="Backends and what they accept"
    )
    def list_models(owner: str = Depends(owner_of)) -> dict[str, Any]:
        check_rate(state.read_limiter, owner)
        return {"object": "list", "data": model_entries(state)}

    return router


def model_entries(state: ServiceState) -> list[dict[str, Any]]:
    """The entries of ``GET /v1/models`` (cached on the state for :data:`CACHE_SECONDS`)."""
    cached = state.models_cache
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    from ..backends import DEFAULT_BACKEND, get_backend, list_backends

    out: list[dict[str, Any]] = []
    # whether each backend can run here comes from the registry's listing (the planner and the registry are the only
    # places that ask a backend's availability)
    for info in list_backends():
        name = info.name
        base = {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "kinema",
            "backend": name,
            "default": name == DEFAULT_BACKEND,
        }
        if not info.modes:  # it did not load (an extra not installed, a broken third-party backend)
            out.append({**base, "usable": False, "reason": info.reason, "capabilities": None})
            continue
        try:
            # every backend comes back as a BaseBackend (a protocol-only one wrapped), so models() and
            # default_model() exist on all of them
            backend = get_backend(name)
            default_model = backend.default_model()
            entry = {
                **base,
                "model": default_model,
                "description": backend.description,
                "usable": info.usable,
                "reason": info.reason,
                "capabilities": backend.capabilities(default_model).to_dict(),
                "job_kinds": ["video"],
            }
            models = [(m, backend.capabilities(m).to_dict()) for m in backend.models() if m != name]
        except BackendUnavailable as exc:  # an extra not installed: say which
            out.append({**base, "usable": False, "reason": exc.reason, "capabilities": None})
            continue
        except Exception as exc:  # a broken third-party backend must not break the listing
            out.append(
                {
                    **base,
                    "usable": False,
                    "reason": f"failed to load: {type(exc).__name__}: {exc}",
                    "capabilities": None,
                }
            )
            continue
        out.append(entry)
        out += [
            {**entry, "id": f"{name}/{model}", "model": model, "default": False, "capabilities": caps}
            for model, caps in models
        ]
    state.models_cache = (time.monotonic(), out)
    return out
