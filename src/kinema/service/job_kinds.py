"""The job kinds a worker can run, by name: what :class:`~kinema.service.worker.WorkerPool`, ``create_app`` and
``kinema worker`` are given. Nothing registers itself on import: a kind runs where it is in the mapping passed.

>>> sorted(default_job_kinds())
['storyboard', 'video']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .worker import AttemptContext

__all__ = ["JobRunner", "default_job_kinds"]

#: runs one attempt of a job; raises to fail it (a ProviderError to retry it later), Cancelled when cancelled
JobRunner = Callable[["AttemptContext"], None]


def default_job_kinds() -> dict[str, JobRunner]:
    """Kinema's own kinds: ``video`` (one generation) and ``storyboard`` (scenes cut into one film)."""
    from . import storyboard_job, video_job

    return {video_job.KIND: video_job.run_video_job, storyboard_job.KIND: storyboard_job.run_storyboard_job}
