"""Admission control: a job is refused (429) when the queue is full or its API key has too many jobs active.

Two checks. :func:`admit` refuses early, before any work, from counts :class:`Admission` keeps (re-counted from
the store at most every ``ttl`` seconds and advanced locally on each accepted job): cheap, but approximate under
concurrency. The bound itself is held by the store: every submit passes :func:`limits` and the store counts again in
the transaction that inserts the job (:class:`~kinema.service.stores.AdmissionLimits`), so concurrent submits of
many threads, processes or replicas never overshoot; :func:`refusal` turns its refusal into the same 429.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .errors import ApiError
from .store import AdmissionLimits, AdmissionRefused

if TYPE_CHECKING:
    from .config import ServiceConfig
    from .state import ServiceState
    from .stores import Store

__all__ = ["Admission", "admit", "limits", "refusal"]


class Admission:
    """Queue-depth and per-key counts for admission control, re-counted from the store at most every
    ``ttl`` seconds and advanced locally on each accepted job."""

    def __init__(self, ttl: float = 0.5) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._queued: tuple[int, float] = (0, -1e9)
        self._active: dict[str, tuple[int, float]] = {}

    def queued(self, store: Store) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._queued[1] < self.ttl:
                return self._queued[0]
        value = store.queue_depth()
        with self._lock:
            self._queued = (value, now)
        return value

    def active(self, store: Store, owner: str) -> int:
        now = time.monotonic()
        with self._lock:
            hit = self._active.get(owner)
            if hit is not None and now - hit[1] < self.ttl:
                return hit[0]
        value = store.active_count(owner)
        with self._lock:
            if len(self._active) > 10_000:
                self._active.clear()
            self._active[owner] = (value, now)
        return value

    def accepted(self, owner: str) -> None:
        with self._lock:
            self._queued = (self._queued[0] + 1, self._queued[1])
            if owner in self._active:
                count, at = self._active[owner]
                self._active[owner] = (count + 1, at)


def admit(state: ServiceState, owner: str) -> None:
    """429 when the queue is full or the key has too many active jobs (by the cached counts)."""
    config, store = state.config, state.store
    if state.admission.queued(store) >= config.max_queued:
        raise refusal(AdmissionRefused("queue_full", config.max_queued))
    if state.admission.active(store, owner) >= config.max_active_per_key:
        raise refusal(AdmissionRefused("too_many_active_jobs", config.max_active_per_key))


def limits(config: ServiceConfig) -> AdmissionLimits:
    """The bounds the store checks in the transaction that inserts a job."""
    return AdmissionLimits(max_queued=config.max_queued, max_active_per_owner=config.max_active_per_key)


def refusal(exc: AdmissionRefused) -> ApiError:
    """The 429 for a submit that did not fit."""
    if exc.reason == "queue_full":
        message = f"the queue is full ({exc.limit} jobs waiting); retry later"
    else:
        message = f"this key already has {exc.limit} jobs queued or running"
    return ApiError(429, message, code=exc.reason, headers={"Retry-After": "5"})
