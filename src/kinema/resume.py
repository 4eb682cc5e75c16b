"""Resume files: a cloud generation's task id, written next to its output the moment the provider gives it.

A paid generation must never be lost to a crash, a closed laptop or a deadline. ``kinema generate -o clip.mp4`` with
a cloud backend passes :func:`task_recorder` as ``on_task_id``, so ``clip.mp4.task.json`` holds the backend, the task
id, what the provider needs to find it again, and the request (never a key) until the video is saved; ``kinema
resume clip.mp4`` re-attaches to the same task from it. Library callers do the same::

    engine.run(request, output=out, on_task_id=task_recorder(out))
    engine.run(request, output=out, resume_task_id=task_id, resume_info=info)

The file format itself (where the file lives, atomic writes, reading it back) is in :mod:`kinema.backends.remote`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .backends.remote import resume_file_for, write_resume_file

__all__ = ["RESUME_FORMAT", "task_recorder"]

RESUME_FORMAT = 1


def task_recorder(output: str | Path) -> Callable[[str, dict[str, Any]], None]:
    """An ``on_task_id`` hook that writes ``<output>.task.json`` the moment the provider's task id is known.

    >>> import json, tempfile
    >>> out = Path(tempfile.mkdtemp()) / "clip.mp4"
    >>> task_recorder(out)("task-123", {"backend": "runway", "mode": "t2v"})
    >>> record = json.loads(resume_file_for(out).read_text())
    >>> record["task_id"], record["backend"], record["output"] == str(out)
    ('task-123', 'runway', True)
    >>> import shutil; shutil.rmtree(out.parent)
    """
    target = resume_file_for(output)

    def record(task_id: str, info: dict[str, Any]) -> None:
        write_resume_file(
            target,
            {
                "kinema_resume": RESUME_FORMAT,
                "task_id": task_id,
                "backend": info.get("backend"),
                "output": str(output),
                "info": info,
                "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            },
        )

    return record
