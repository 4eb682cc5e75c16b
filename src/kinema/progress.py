"""Progress events: one small type every backend emits and every front end (CLI, service, page) consumes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ProgressEvent", "ProgressCallback", "ProgressTracker"]


@dataclass(frozen=True)
class ProgressEvent:
    """Where a generation is.

    ``stage`` is one of "queued", "loading", "encoding_prompt", "denoising", "decoding", "polling", "downloading",
    "postprocessing", "saving", "done". ``step``/``total`` count within the stage; ``fraction`` is the whole job's
    progress in [0, 1]; ``eta`` is the estimated seconds left, or None when unknown.
    """

    stage: str
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta: float | None = None
    message: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]


class ProgressTracker:
    """Turns (stage, step, total) into events with a whole-job fraction and an ETA.

    Stages carry weights (denoising is most of the work); the ETA extrapolates from the time spent in the current
    stage, which is what a user watching a bar expects.
    """

    def __init__(self, callback: ProgressCallback | None, weights: dict[str, float] | None = None) -> None:
        self.callback = callback
        self.weights = weights or {"loading": 0.05, "denoising": 0.85, "decoding": 0.05, "saving": 0.05}
        self._done_weight = 0.0
        self._stage: str | None = None
        self._stage_start = time.perf_counter()
        self._start = time.perf_counter()
        self._last = self._start  # when the previous event came: the current stage's work began then
        self.fraction = 0.0

    def __call__(self, stage: str, step: int = 0, total: int = 0, message: str | None = None, **info: Any) -> None:
        now = time.perf_counter()
        if stage != self._stage:
            if self._stage is not None:
                self._done_weight += self.weights.get(self._stage, 0.0)
            self._stage = stage
            # a stage's first event often arrives after its first step (step 1 of n): its work began at the
            # previous event, and timing from now would make the first ETA zero
            self._stage_start = self._last if step > 0 else now
        self._last = now
        weight = self.weights.get(stage, 0.0)
        within = (step / total) if total else 0.0
        fraction = min(1.0, self._done_weight + weight * within)
        if stage == "done":
            fraction = 1.0
        fraction = max(fraction, self.fraction)  # never goes backwards
        self.fraction = fraction
        eta: float | None = None
        if total and step > 0:
            per_step = (now - self._stage_start) / step
            eta = per_step * (total - step)
        elif stage == "done":
            eta = 0.0
        if self.callback is not None:
            self.callback(ProgressEvent(stage, step, total, fraction, eta, message, dict(info)))
