"""The ``video`` job kind: one generation through :func:`kinema.engine.run`, written to a work file and published
(renamed into the outputs, with a thumbnail and the recipe sidecar) in the same transaction that completes the job.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..request import VideoRequest
    from .store import Job
    from .worker import AttemptContext

__all__ = ["KIND", "run_video_job", "build_request", "remote_hooks", "write_thumbnail"]

KIND = "video"


def build_request(job: Job) -> VideoRequest:
    """The job's stored request (JSON, as planned at submit time) as a VideoRequest."""
    from ..request import VideoRequest

    return VideoRequest(**job.request)


def run_video_job(ctx: AttemptContext) -> None:
    """Generate, write the thumbnail, publish on completion; a lost lease discards the work files."""
    from ..engine import run

    pool, job = ctx.pool, ctx.job
    cfg = pool.config
    request = build_request(job)
    work = cfg.work_dir / f"{job.id}.a{ctx.attempt}.{pool.name_slug}.mp4"
    thumb_work = work.with_suffix(".png")
    result = run(request, output=work, on_progress=ctx.progress, cancel=ctx.token, on_task_id=ctx.on_task_id,
                 resume_task_id=job.provider_task_id,
                 # the job's id is the client token providers that take one get (Kling, ModelsLab): a crash between
                 # their submit and the task id being recorded is found again by it, never paid twice
                 resume_info={"client_token": job.id, **(job.provider_info or {}), **remote_hooks(ctx)})  # fmt: skip
    frames = result.video.frames
    write_thumbnail(frames[len(frames) // 2], thumb_work)
    summary = {"seed": result.seed, "recipe": result.recipe, "cost": result.cost, "timings": result.timings,
               "warnings": result.warnings, "provider_task_id": result.provider_task_id}  # fmt: skip
    publish_outputs(ctx, work, thumb_work, summary)


def publish_outputs(ctx: AttemptContext, work: Path, thumb_work: Path, summary: dict[str, Any]) -> None:
    """Complete the job with ``summary``, moving the attempt's work files (video, thumbnail, sidecar) to their
    published names inside the completing transaction; a lost lease discards them instead."""
    pool, job = ctx.pool, ctx.job
    cfg = pool.config
    final = cfg.outputs_dir / f"{job.id}.mp4"
    thumb = cfg.outputs_dir / f"{job.id}.png"
    sidecar_work, sidecar = Path(str(work) + ".json"), Path(str(final) + ".json")

    def publish() -> None:
        # renames inside the completing transaction: the output exists exactly when the row says completed
        os.replace(work, final)
        os.replace(thumb_work, thumb)
        if sidecar_work.exists():
            os.replace(sidecar_work, sidecar)

    ok = pool.store.complete(job.id, pool.name, ctx.attempt, result=summary, output_path=str(final),
                             thumbnail_path=str(thumb), expires_at=time.time() + cfg.retention_hours * 3600,
                             publish=publish)  # fmt: skip
    if not ok:
        ctx.lost = True
        for p in (work, thumb_work, sidecar_work):
            p.unlink(missing_ok=True)


def remote_hooks(ctx: AttemptContext) -> dict[str, Any]:
    """The job service's hooks for a remote backend's loop (kinema.backends.remote): the provider callback URL and
    the event that makes it poll now, the mark set right before the paid submit, and whether an earlier attempt was
    stopped between that mark and recording the task id."""
    from ..backends.remote import CALLBACK_URL, ON_SUBMITTING, POLL_NOW, SUBMIT_UNCONFIRMED
    from .provider_callbacks import callback_url

    job, cfg = ctx.job, ctx.pool.config
    hooks: dict[str, Any] = {POLL_NOW: ctx.poll_now, ON_SUBMITTING: ctx.on_submitting,
                             SUBMIT_UNCONFIRMED: bool(job.submitting_at and not job.provider_task_id)}  # fmt: skip
    if cfg.public_url and not job.provider_task_id:
        token = job.callback_token or ctx.pool.store.callback_token(job.id)
        url = callback_url(cfg, job, token) if token else None
        if url:
            hooks[CALLBACK_URL] = url
    return hooks


def write_thumbnail(frame: Any, path: Path) -> None:
    """One frame as a PNG, written atomically (a reader never sees half a file)."""
    from PIL import Image

    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(frame).save(tmp, format="PNG")
    os.replace(tmp, path)
