"""What every route of one service app shares: its settings, store, workers, webhook sender, fetcher, rate
limiters, admission counts and caches. ``create_app`` builds one :class:`ServiceState`; the route modules get it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .admission import Admission

if TYPE_CHECKING:
    from .config import ServiceConfig
    from .safefetch import SafeFetcher
    from .security import RateLimiter
    from .stores import Store
    from .webhooks import WebhookSender
    from .worker import WorkerPool

__all__ = ["ServiceState"]


@dataclass
class ServiceState:
    config: ServiceConfig
    store: Store
    pool: WorkerPool
    sender: WebhookSender
    fetcher: SafeFetcher
    submit_limiter: RateLimiter
    read_limiter: RateLimiter
    admission: Admission = field(default_factory=Admission)
    #: GET /v1/models' answer and when it was made (loading every backend is slow; it is kept 30 s)
    models_cache: tuple[float, list[dict[str, Any]]] | None = None
    #: backends (by the name a create body gave) whose plan has run once: loaded, so planning them is CPU only
    warm_backends: set[str] = field(default_factory=set)
