"""Admission control: a job is refused (429) when the queue is full or its API key has too many jobs active.

The counts come from the store, but a COUNT per submit grows with the queue: :class:`Admission` re-counts at most
every ``ttl`` seconds and advances its numbers locally on each accepted job.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .errors import ApiError

if TYPE_CHECKING:
    from .state import ServiceState
    from .stores import Store

__all__ = ["Admission", "admit"]


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
    """429 when the queue is full or the key has too many active jobs."""
    config, store = state.config, state.store
    if state.admission.queued(store) >= config.max_queued:
        raise ApiError(429, f"the queue is full ({config.max_queued} jobs waiting); retry later", code="queue_full",
                       headers={"Retry-After": "5"})  # fmt: skip
    if state.admission.active(store, owner) >= config.max_active_per_key:
        raise ApiError(429, f"this key already has {config.max_active_per_key} jobs queued or running",
                       code="too_many_active_jobs", headers={"Retry-After": "5"})  # fmt: skip
