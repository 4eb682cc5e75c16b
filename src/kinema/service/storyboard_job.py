"""The ``storyboard`` job kind: :func:`kinema.storyboard.render_storyboard` (the runner of ``kinema storyboard``)
inside a worker, reporting each scene's progress as the job's and publishing the film like a video job's output.

Its progress ``stage`` is ``"scene K/N"`` while scene K of N is being made (``"scene K/N: denoising"`` inside it),
then ``"assembling"``; the finished job's ``recipe`` holds each scene's seed and time, and the body as submitted
with every seed pinned, so sending it again makes the same film. ``POST /v1/storyboards``
(:mod:`kinema.service.storyboards`) submits these jobs.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..progress import ProgressEvent
from .budgets import sum_costs
from .video_job import publish_outputs, write_thumbnail

if TYPE_CHECKING:
    from .worker import AttemptContext

__all__ = ["KIND", "run_storyboard_job"]

KIND = "storyboard"
_SCENE_EVENT = re.compile(r"^scene (\d+)/(\d+):")


def run_storyboard_job(ctx: AttemptContext) -> None:
    """Render the film in the work dir, then publish it (with a thumbnail and the manifest) on completion, under the
    attempt's names like a video job's (:func:`~kinema.service.video_job.publish_outputs`)."""
    from ..storyboard import load_storyboard, manifest_path, render_storyboard, scenes_dir
    from ..video import Video

    pool, job = ctx.pool, ctx.job
    cfg = pool.config
    # a board's relative paths are taken from where it was checked (an MCP server's folder), else the work dir
    board = load_storyboard(job.request["storyboard"], base=Path(job.request.get("base") or cfg.work_dir))
    total = len(board.scenes)
    work = cfg.work_dir / f"{job.id}.a{ctx.attempt}.{pool.name_slug}.mp4"
    thumb_work = work.with_suffix(".png")
    sidecar_work = manifest_path(work)

    def on_event(message: str) -> None:
        m = _SCENE_EVENT.match(message)
        if m:  # "scene K/N: generating (...)": scenes before K are done
            k = int(m.group(1))
            event = ProgressEvent(
                stage=f"scene {k}/{total}", step=k, total=total, fraction=0.95 * (k - 1) / total, message=message
            )
            ctx.progress(event, scene=k, scenes=total)
        elif message.startswith("assembling"):
            ctx.progress(ProgressEvent(stage="assembling", step=total, total=total, fraction=0.95, message=message))

    def on_progress(index: int, event: ProgressEvent) -> None:
        # a scene's own events (denoising step k of n...) become the job's, inside that scene's share of the bar
        k = index + 1
        ctx.progress(
            ProgressEvent(
                stage=f"scene {k}/{total}: {event.stage}",
                step=event.step,
                total=event.total,
                fraction=0.95 * (index + event.fraction) / total,
                eta=event.eta,
                message=event.message,
            ),
            scene=k,
            scenes=total,
        )

    try:
        manifest = render_storyboard(board, work, cancel=ctx.token, on_event=on_event, on_progress=on_progress)
        film = Video.open(work)
        write_thumbnail(film.frames[len(film.frames) // 2], thumb_work)
        scenes = [
            {
                "index": r["index"],
                "prompt": r["prompt"],
                "seed": r["seed"],
                "duration": r["duration"],
                "transition": r["transition"],
                "continuity": r["continuity"],
                "seconds": r["seconds"],
                "backend": r["recipe"].get("backend"),
                "model": r["recipe"].get("model"),
            }
            for r in manifest["scenes"]
        ]
        # the body as submitted, with every scene's seed pinned: sending it again makes the same film
        body = dict(job.request.get("body") or {})
        body["scenes"] = [dict(s, seed=r["seed"]) for s, r in zip(body.get("scenes", []), scenes, strict=False)]
        recipe = {
            "kind": "kinema.storyboard",
            "title": manifest["title"],
            "duration": manifest["duration"],
            "fps": manifest["fps"],
            "width": manifest["width"],
            "height": manifest["height"],
            "scenes": scenes,
            "storyboard": body,
        }
        timings = {f"scene {s['index'] + 1}": float(s["seconds"]) for s in scenes}
        timings["total"] = float(manifest["seconds"] or 0.0)
        # what the film cost: its scenes' costs (each scene's recipe has its own), so usage and budgets count it
        cost = sum_costs(r["recipe"].get("cost") for r in manifest["scenes"])
        summary: dict[str, Any] = {
            "seed": scenes[0]["seed"] if scenes else None,
            "recipe": recipe,
            "cost": cost,
            "timings": timings,
            "warnings": [],
        }
        # the film, its thumbnail and manifest move to the attempt's names in the outputs dir (the manifest as the
        # film's sidecar, deleted with the job like a video's recipe) and the completing transaction publishes them
        publish_outputs(ctx, work, thumb_work, summary, sidecar_work=sidecar_work)
    finally:
        shutil.rmtree(scenes_dir(work), ignore_errors=True)
        for p in (work, thumb_work, sidecar_work):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
