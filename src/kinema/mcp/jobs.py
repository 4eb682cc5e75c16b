"""The MCP server's jobs: submitted to the job service's durable store and run by the service's own worker pool.

Nothing here runs a generation itself. A tool call is checked (:func:`kinema.plan`, as the HTTP API checks a
submit), stored as a job in the store :func:`~kinema.service.stores.open_store` opens for the data dir (or
``--database-url``), and claimed by a :class:`~kinema.service.worker.WorkerPool` in this process, which runs it
through the engine exactly as ``kinema serve`` does. So a job outlives the assistant: after a restart (of the
assistant or of this server) it is found by its id, and one still queued or interrupted is picked up again.

Idempotency: a call's key (its ``idempotency_key``, else the MCP request id within this server's lifetime) is
reserved in the store with a fingerprint of the arguments, in the same transaction that stores the job, so a
retried call gets the same job back and is never paid twice.

Jobs belong to the owner ``local``, the one ``kinema serve --no-auth`` uses, so the service's page on the same data
dir shows them too. ``enhance`` (post-processing a finished video into a new one) is a job kind of this module,
given to this server's pool alongside the service's own ``video`` and ``storyboard``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, InvalidRequest
from ..progress import ProgressEvent

if TYPE_CHECKING:
    from ..service.config import ServiceConfig
    from ..service.store import Job
    from ..service.stores import Store
    from ..service.worker import AttemptContext, WorkerPool

__all__ = ["Jobs", "OWNER", "ENHANCE_KIND", "run_enhance_job", "fingerprint"]

#: the owner of every MCP job: the one ``kinema serve --no-auth`` serves, so its page lists them too
OWNER = "local"
ENHANCE_KIND = "enhance"
#: MCP keys live beside the HTTP API's Idempotency-Keys in the same table; the prefix keeps them apart
_KEY_PREFIX = "mcp:"


def fingerprint(tool: str, arguments: dict[str, Any]) -> str:
    """What makes two calls the same request: the tool and its arguments, less how long to wait."""
    data = {k: v for k, v in arguments.items() if k not in ("wait_seconds", "idempotency_key")}
    return hashlib.sha256(json.dumps([tool, data], sort_keys=True, default=str).encode()).hexdigest()


def _new_job_id() -> str:
    # the shape of the HTTP API's ids (service.submit.new_job_id, which imports the server extra's Starlette)
    return "video_" + secrets.token_hex(12)


@dataclass
class Jobs:
    """The store, the config and this process's worker pool; every method blocks (call it from a thread)."""

    config: ServiceConfig
    store: Store
    pool: WorkerPool | None = None

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        database_url: str | None = None,
        *,
        workers: int = 1,
        **config: Any,
    ) -> Jobs:
        """The job store of ``data_dir`` (default: ``kinema serve``'s) or ``database_url``, with ``workers``
        in-process workers (0: only submit, for a separate ``kinema worker``)."""
        from ..service.config import ServiceConfig, default_data_dir
        from ..service.job_kinds import default_job_kinds
        from ..service.stores import open_store
        from ..service.worker import WorkerPool

        if workers < 0:
            raise InvalidRequest("--workers", f"must be 0 or more, got {workers}")
        cfg = ServiceConfig(
            data_dir=Path(data_dir or default_data_dir()), database_url=database_url, workers=workers, **config
        )
        cfg.ensure_dirs()
        store = open_store(cfg.store_location)
        kinds = {**default_job_kinds(), ENHANCE_KIND: run_enhance_job}
        pool = WorkerPool(store, cfg, threads=workers, kinds=kinds) if workers else None
        return cls(cfg, store, pool)

    def start(self) -> None:
        if self.pool is not None:
            self.pool.start()

    def close(self, grace: float = 5.0) -> None:
        """Stop the workers: a job still running after ``grace`` seconds goes back to the queue (its remote task,
        if any, is kept and resumed by the next worker, so it is not paid twice)."""
        if self.pool is not None:
            self.pool.stop(graceful=True, timeout=grace)
        self.store.close()

    # -- submitting ---------------------------------------------------------------------------------------------
    def submit(
        self, *, kind: str, request: dict[str, Any], summary: dict[str, Any], key: str, digest: str
    ) -> tuple[Job, bool]:
        """Store a job once per ``key`` (with the request's fingerprint ``digest``). Returns (job, replayed):
        ``replayed`` when an earlier call with the key made it."""
        store, cfg = self.store, self.config
        full_key = _KEY_PREFIX + key
        found = store.idempotency_begin(OWNER, full_key, digest, cfg.idempotency_ttl_hours * 3600)
        if found.state == "replay":
            job_id = json.loads(found.body or b"{}").get("id")
            job = store.get(job_id, OWNER) if job_id else None
            if job is None:  # the earlier call was refused, or its job was deleted since
                raise InvalidRequest(
                    "idempotency_key", "belongs to an earlier call whose video is gone", value=key, allowed="a new key"
                )
            return job, True
        if found.state == "mismatch":
            raise InvalidRequest(
                "idempotency_key",
                "was already used for a call with other arguments",
                value=key,
                allowed="the same key to retry the same call, a new key for a new one",
            )
        if found.state == "in_flight":
            raise InvalidRequest(
                "idempotency_key",
                f"a call with this key is still being submitted; retry in {int(found.retry_after or 1)} s",
                value=key,
            )

        def respond(job: Job) -> tuple[int, bytes]:
            return 200, json.dumps({"id": job.id}).encode()

        try:
            # the HTTP API's budget check; an enhance job runs no backend (its summary names the source's): free
            backend = summary.get("backend") if kind != ENHANCE_KIND else None
            if backend:
                from ..service.budgets import budget_refusal

                refusal = budget_refusal(store, OWNER, str(backend), who=f"the MCP server's owner {OWNER!r}")
                if refusal is not None:
                    raise InvalidRequest(
                        "backend",
                        refusal,
                        value=backend,
                        allowed="a free backend (builtin, diffusers); or a larger budget",
                    )
            job = store.submit_job(
                owner=OWNER,
                request=request,
                summary=summary,
                kind=kind,
                max_attempts=cfg.max_attempts,
                job_id=_new_job_id(),
                idempotency=(full_key, respond),
            )
        except BaseException:
            store.idempotency_release(OWNER, full_key)
            raise
        if self.pool is not None:
            self.pool.notify()
        return job, False

    # -- reading and cancelling ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id, OWNER)
        if job is None:
            raise InvalidRequest(
                "video_id",
                f"no video {job_id!r} here",
                value=job_id,
                allowed="an id from generate_video or list_videos",
            )
        return job

    def list(self, limit: int = 20, after: str | None = None) -> tuple[list[Job], bool]:
        try:
            return self.store.list_jobs(OWNER, after=after, limit=limit, order="desc")
        except KeyError:
            raise InvalidRequest(
                "after", f"no video {after!r} here", value=after, allowed="an id from list_videos"
            ) from None

    def cancel(self, job_id: str) -> Job:
        job = self.store.request_cancel(job_id, OWNER)
        if job is None:
            self.get(job_id)  # raises, naming video_id
            raise InvalidRequest("video_id", f"video {job_id!r} cannot be cancelled", value=job_id)
        if self.pool is not None:
            self.pool.cancel_local(job_id)  # running here: stop now, not at the next heartbeat
        return self.get(job_id)

    def source_of(self, job_id: str) -> Path:
        """A finished video's file, to post-process; refused naming ``video_id`` when there is none."""
        job = self.get(job_id)
        if job.status != "completed":
            raise InvalidRequest(
                "video_id",
                f"video {job_id!r} is {job.status}, not completed",
                value=job_id,
                allowed="a completed video (see get_video)",
            )
        if not job.output_path or not Path(job.output_path).is_file():
            raise InvalidRequest("video_id", f"video {job_id!r} has expired: its file was deleted", value=job_id)
        return Path(job.output_path)


def run_enhance_job(ctx: AttemptContext) -> None:
    """The ``enhance`` job kind: :func:`kinema.media.enhance.process_file` on a finished video, published with a
    thumbnail and the recipe (the source's, with the chain appended) like a video job's output."""
    from ..media.enhance import process_file
    from ..service.video_job import write_thumbnail
    from ..video import Video, sidecar_path

    pool, job = ctx.pool, ctx.job
    cfg = pool.config
    work = cfg.work_dir / f"{job.id}.a{ctx.attempt}.{pool.name_slug}.mp4"
    thumb_work = work.with_suffix(".png")
    sidecar_work = sidecar_path(work)
    try:
        if ctx.token.cancelled:  # ffmpeg cannot be interrupted: look before and after it
            raise Cancelled("cancelled before post-processing began")
        ctx.progress(ProgressEvent(stage="postprocessing", step=0, total=1, fraction=0.05))
        source = Path(job.request["input"])
        if not source.is_file():
            raise InvalidRequest("video_id", f"the source video {job.request.get('source')!r} was deleted")
        process_file(source, work, job.request["steps"])
        if ctx.token.cancelled:
            raise Cancelled("cancelled during post-processing")
        ctx.progress(ProgressEvent(stage="saving", step=1, total=1, fraction=0.95))
        video = Video.open(work)
        write_thumbnail(video.frames[len(video.frames) // 2], thumb_work)
        final = cfg.outputs_dir / f"{job.id}.mp4"
        thumb = cfg.outputs_dir / f"{job.id}.png"

        def publish() -> None:
            os.replace(work, final)
            os.replace(thumb_work, thumb)
            if sidecar_work.exists():
                os.replace(sidecar_work, sidecar_path(final))

        summary: dict[str, Any] = {
            "seed": video.metadata.get("seed"),
            "recipe": video.metadata,
            "cost": None,
            "timings": None,
            "warnings": [],
        }
        if not pool.store.complete(
            job.id,
            pool.name,
            ctx.attempt,
            result=summary,
            output_path=str(final),
            thumbnail_path=str(thumb),
            expires_at=time.time() + cfg.retention_hours * 3600,
            publish=publish,
        ):
            ctx.lost = True
    finally:
        for p in (work, thumb_work, sidecar_work):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
