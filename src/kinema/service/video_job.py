"""The ``video`` job kind: one generation through :func:`kinema.engine.run`, written straight into the outputs dir
under the attempt's own names (``{job}.a{attempt}.mp4``, ``.png``, ``.mp4.json``) and published by the transaction
that completes the job: the row records those names under the attempt guard, so the output exists for clients
exactly when the row says completed, and no rename is needed (none across machines when the outputs dir is a shared
filesystem). An attempt that lost its lease deletes its files; files of an attempt that never got to (a worker
killed after writing) are deleted by the workers' housekeeping (:meth:`WorkerPool.sweep_lost_outputs`).

Outputs written before the attempt names (``{job}.mp4``) are still served: the content route asks
:func:`published_file` for the file the row records, whatever its name.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine import Result
    from ..request import VideoRequest
    from .config import ServiceConfig
    from .store import Job
    from .worker import AttemptContext

__all__ = [
    "KIND",
    "ATTEMPT_FILE",
    "attempt_outputs",
    "published_file",
    "publish_outputs",
    "run_video_job",
    "build_request",
    "remote_hooks",
    "write_thumbnail",
]

KIND = "video"
#: a file of one attempt in the outputs dir: ``{job}.a{attempt}.`` then the video, thumbnail or sidecar suffix, or a
#: temporary file of the writer's (``.{job}.a{attempt}.mp4.<pid>.tmp.mp4``, ``{job}.a{attempt}.tmp.png``)
ATTEMPT_FILE = re.compile(r"^\.?(?P<job>[A-Za-z0-9_-]+)\.a(?P<attempt>[0-9]+)\.")


def attempt_outputs(config: ServiceConfig, job_id: str, attempt: int) -> tuple[Path, Path]:
    """The (video, thumbnail) an attempt writes and, if it completes the job, publishes: ``{job}.a{attempt}.mp4``
    and ``.png`` in ``config``'s outputs dir (the recipe sidecar is the video's name plus ``.json``). Attempt numbers
    are never reused within a job, so two attempts never write the same file.

    ``config``: the service's configuration (its outputs dir); ``job_id``, ``attempt``: the job and its attempt."""
    base = config.outputs_dir / f"{job_id}.a{attempt}"
    return base.with_name(base.name + ".mp4"), base.with_name(base.name + ".png")


def published_file(config: ServiceConfig, stored: str | None) -> Path | None:
    """The file a completed job's row records (``output_path`` or ``thumbnail_path``), as this process sees it: the
    recorded path; else the file of that name in this process's outputs dir (the row was written on another host
    that mounts the shared outputs elsewhere, or the data dir has moved); None when neither exists (expired,
    deleted). The name always comes from the row, never from the job's id: an attempt's unpublished file is
    never served.

    ``config``: this process's configuration; ``stored``: the path as the row records it (None: no file)."""
    if not stored:
        return None
    path = Path(stored)
    if path.is_file():
        return path
    local = config.outputs_dir / path.name
    return local if path.name and local.is_file() else None


def service_input(config: ServiceConfig, value: Any) -> Path | None:
    """``value`` (one of a request's inputs) as a file of the service's inputs dir, or None. A path elsewhere (an MCP
    job's image is the caller's own file) is never served nor deleted: it is not the service's copy."""
    if not isinstance(value, str) or value.startswith(("http://", "https://", "data:")):
        return None
    path = Path(value)
    try:
        ours = path.resolve().parent == config.inputs_dir.resolve()
    except (OSError, ValueError):
        return None
    return path if ours and path.is_file() else None


def service_inputs(config: ServiceConfig, request: dict[str, Any]) -> list[Path]:
    """Every input the service stored for a job's ``request``: the image, the last image, the references, the timed
    keyframes' images and the clip it edits or extends (its own copies, in the inputs dir)."""
    refs = request.get("references")
    keyframes = request.get("keyframes")
    values = [request.get(name) for name in ("image", "last_image", "video", "source_video")]
    values += refs if isinstance(refs, list) else []
    values += [k.get("image") for k in keyframes if isinstance(k, dict)] if isinstance(keyframes, list) else []
    return [p for p in (service_input(config, v) for v in values) if p is not None]


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
    # written where it will be served from, under the attempt's names: publishing renames nothing
    work, thumb_work = attempt_outputs(cfg, job.id, ctx.attempt)
    try:
        if pool.gpu_groups is not None and request.backend == "diffusers":
            summary, frames = _run_on_group(ctx, request, work)
        else:
            result = run(
                request,
                output=work,
                on_progress=ctx.progress,
                cancel=ctx.token,
                on_task_id=ctx.on_task_id,
                resume_task_id=job.provider_task_id,
                # the job's id is the client token providers that take one get (Kling, ModelsLab): a crash
                # between their submit and the task id being recorded is found again by it, never paid
                # twice
                resume_info={"client_token": job.id, **(job.provider_info or {}), **remote_hooks(ctx)},
            )
            summary, frames = _summary(result), result.video.frames
        write_thumbnail(frames[len(frames) // 2], thumb_work)
    except BaseException:  # failed, cancelled or aborted: this attempt publishes nothing
        _unlink(work, thumb_work, Path(str(work) + ".json"))
        raise
    publish_outputs(ctx, work, thumb_work, summary)


def _summary(result: Result) -> dict[str, Any]:
    """A finished generation as the job's stored result."""
    return {
        "seed": result.seed,
        "recipe": result.recipe,
        "cost": result.cost,
        "timings": result.timings,
        "warnings": result.warnings,
        "provider_task_id": result.provider_task_id,
    }


def _run_on_group(ctx: AttemptContext, request: VideoRequest, work: Path) -> tuple[dict[str, Any], Any]:
    """A diffusers job on a worker with ``gpus_per_job`` > 1, on a group of GPUs taken for the run: split over them
    (``kinema.launch``, rank 0 writing ``work``) when :func:`kinema.launch.split_request` allows, else on the group's
    first GPU. A rank that dies raises RankLost, which the pool retries like a transient provider failure. Returns
    the job's result and the frames."""
    from ..engine import run
    from ..launch import launch, split_request
    from ..video import Video

    pool = ctx.pool
    assert pool.gpu_groups is not None
    n = pool.config.gpus_per_job
    split = split_request(request, n)
    group = pool.gpu_groups.get()  # this loop's GPUs: free again when the run ends, whatever happens
    try:
        if split is not None:
            ranks = launch(split, gpus=n, output=work, on_progress=ctx.progress, cancel=ctx.token, devices=group)
            summary = {
                "seed": split.seed,
                "recipe": ranks.recipe,
                "cost": None,
                "timings": {},
                "warnings": list(ranks.warnings),
                "provider_task_id": None,
            }
            return summary, Video.open(work).frames
        device = {"device": f"cuda:{group[0]}"} if group else {}
        alone = request.model_copy(update={"options": {**request.options, **device}})
        result = run(alone, output=work, on_progress=ctx.progress, cancel=ctx.token)
        return _summary(result), result.video.frames
    finally:
        pool.gpu_groups.put(group)


def publish_outputs(
    ctx: AttemptContext, work: Path, thumb_work: Path, summary: dict[str, Any], sidecar_work: Path | None = None
) -> None:
    """Complete the job with ``summary`` and publish the attempt's files (video, thumbnail, recipe sidecar): they
    are moved to the attempt's names in the outputs dir first, where nothing serves them yet (no move when they
    were written there), then the completing transaction, under the attempt guard, checks they are there and
    records their names. A lost lease deletes them instead (``ctx.lost``); so does an error.

    ``ctx``: the attempt; ``work``, ``thumb_work``: the video and thumbnail it wrote; ``summary``: the job's result;
    ``sidecar_work``: the recipe sidecar (default: ``work`` plus ``.json``; none is fine)."""
    pool, job = ctx.pool, ctx.job
    cfg = pool.config
    final, thumb = attempt_outputs(cfg, job.id, ctx.attempt)
    sidecar_work = Path(str(work) + ".json") if sidecar_work is None else sidecar_work
    sidecar = Path(str(final) + ".json")
    files = (final, thumb, sidecar)
    try:
        # before the transaction, which must not wait on a copy (another filesystem: shutil.move copies)
        for src, dst in ((work, final), (thumb_work, thumb), (sidecar_work, sidecar)):
            if src != dst and (src.exists() or dst is not sidecar):
                shutil.move(src, dst)

        def publish() -> None:
            # inside the completing transaction: a row never records a file that is not there
            for p in (final, thumb):
                if not p.is_file():
                    raise FileNotFoundError(f"the attempt's output {p} is missing; not completing the job")

        ok = pool.store.complete(
            job.id,
            pool.name,
            ctx.attempt,
            result=summary,
            output_path=str(final),
            thumbnail_path=str(thumb),
            expires_at=time.time() + cfg.retention_hours * 3600,
            publish=publish,
        )
    except BaseException:
        _unlink(*files, work, thumb_work, sidecar_work)
        raise
    if not ok:  # another attempt owns the job now (or it was deleted): this attempt's files are nobody's
        ctx.lost = True
        _unlink(*files, work, thumb_work, sidecar_work)


def _unlink(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError:  # a file left behind is the housekeeping's to delete
            pass


def remote_hooks(ctx: AttemptContext) -> dict[str, Any]:
    """The job service's hooks for a remote backend's loop (kinema.backends.remote): the provider callback URL and
    the event that makes it poll now, the mark set right before the paid submit, and whether an earlier attempt was
    stopped between that mark and recording the task id."""
    from ..backends.remote import CALLBACK_URL, ON_SUBMITTING, POLL_NOW, SUBMIT_UNCONFIRMED
    from .provider_callbacks import callback_url

    job, cfg = ctx.job, ctx.pool.config
    hooks: dict[str, Any] = {
        POLL_NOW: ctx.poll_now,
        ON_SUBMITTING: ctx.on_submitting,
        SUBMIT_UNCONFIRMED: bool(job.submitting_at and not job.provider_task_id),
    }
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
