"""Cloud commands: ``kinema resume``, which finishes a cloud generation that a crash or a deadline interrupted.

A paid generation must never be lost to a crash, a closed laptop or a deadline. When a cloud backend learns the
provider's task id (right after submit, before polling), ``kinema generate -o clip.mp4`` writes it to
``clip.mp4.task.json`` (the backend, the task id, what the provider needs to find it again, and the request, never a
key). The file is removed once the video is saved. If anything stops the run first::

    kinema resume clip.mp4            # or: kinema resume clip.mp4.task.json

re-attaches to the same provider task (no second submission, no second bill), waits for it, downloads the result
and saves it with its recipe. ``--option timeout=3600`` waits longer; ``-o`` saves elsewhere.

Library callers get the same with ``engine.run(..., on_task_id=kinema.resume.task_recorder(output))`` and
``engine.run(..., resume_task_id=..., resume_info=...)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..backends.remote import read_resume_file, resume_file_for
from .console import err, fail, out, parse_options

__all__ = ["register", "resume"]


def _resume_path(path: Path) -> Path:
    if path.name.endswith(".task.json"):
        return path
    return resume_file_for(path)


#: the input each mode is rebuilt from; a resume file keeps it only when it was a path or URL, never data
_MODE_INPUT = {
    "i2v": "image",
    "keyframes": "last_image",
    "references": "references",
    "edit": "source_video",
    "extend": "video",
}


def resume(
    path: Annotated[Path, typer.Argument(help="The output of the interrupted generation, or its .task.json file.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Save here instead.")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Loop option KEY=VALUE, e.g. timeout=3600.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")] = False,
) -> None:
    """Re-attach to a cloud generation recorded in a resume file: no second submission, no second bill."""
    from .. import engine
    from ..errors import InvalidRequest, KinemaError
    from ..request import VideoRequest

    try:
        record_path = _resume_path(path)
        record = read_resume_file(record_path)
        info = dict(record.get("info") or {})
        fields = {k: v for k, v in dict(info.get("request") or {}).items() if v is not None}
        if not fields.get("prompt"):
            raise InvalidRequest("path", f"{record_path} holds no request to rebuild", value=str(record_path))
        fields["backend"] = record["backend"]
        fields["options"] = {**dict(fields.get("options") or {}), **parse_options(option)}
        needed = _MODE_INPUT.get(str(info.get("mode")))
        if needed is not None and not fields.get(needed):
            # without it the request would be rebuilt as another mode, and refused or planned differently
            raise InvalidRequest(
                needed,
                f"the interrupted generation ({info.get('mode')}) started from {needed}, "
                "which the resume file does not hold (it keeps inputs given as paths or URLs, never "
                "data, and no clip to extend); it cannot be rebuilt from it",
                allowed="start it again with the same input",
            )
        request = VideoRequest(**fields)
        target = output or Path(str(record.get("output") or str(record_path)[: -len(".task.json")]))
        err.print(f"resuming {record['backend']} task {record['task_id']} -> {target}", highlight=False)
        result = engine.run(request, output=target, resume_task_id=str(record["task_id"]), resume_info=info)
    except (KinemaError, KeyboardInterrupt) as exc:
        fail(exc)
    record_path.unlink(missing_ok=True)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
    else:
        out.print(f"[green]saved[/] {result.path}  (task {result.provider_task_id}, no new submission)")


def register(app: typer.Typer) -> None:
    app.command(name="resume")(resume)
