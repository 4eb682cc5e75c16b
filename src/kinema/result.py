"""Result: what one generation made (the clip, where it was saved, its recipe, timings and cost)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .video import Video

__all__ = ["Result"]


@dataclass
class Result:
    """One generation: where it was saved, the clip, its recipe and how long each stage took (seconds)."""

    path: Path | None
    video: Video
    recipe: dict[str, Any]
    timings: dict[str, float]
    seed: int
    cost: dict[str, Any] | None = None
    provider_task_id: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "seed": self.seed,
            "num_frames": self.video.num_frames,
            "width": self.video.width,
            "height": self.video.height,
            "fps": self.video.fps,
            "duration": self.video.duration,
            "timings": self.timings,
            "cost": self.cost,
            "provider_task_id": self.provider_task_id,
            "warnings": self.warnings,
            "recipe": self.recipe,
        }
