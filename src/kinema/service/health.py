"""``GET /healthz``: the service is up, its version, and how many jobs wait (for load balancers and monitors; no key
needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from .._version import __version__
from .schemas import Health

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = ["health_routes"]


def health_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get("/healthz", response_model=Health, summary="Liveness and queue depth")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "queued": state.store.queue_depth(),
            "workers": state.config.workers,
        }

    return router
