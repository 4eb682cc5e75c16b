"""A test-only backend that is slow on purpose and behaves like a paid remote task.

It reports a provider task id before "polling" (as remote backends do), sleeps a little per step, and appends what
it does to the file named by ``KINEMA_SLOW_LOG`` so tests can count starts, resumes and completions across
processes. Registered in servers and workers with ``KINEMA_EXTRA_BACKENDS="slow=slow_backend:SlowBackend"``.
"""

from __future__ import annotations

import os
import secrets
import time

import numpy as np

from kinema.backends.base import BackendOutput, BaseBackend, Capabilities, GenerationContext, GenerationParams
from kinema.video import Video


def _log(line: str) -> None:
    path = os.environ.get("KINEMA_SLOW_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


class SlowBackend(BaseBackend):
    name = "slow"
    description = "test backend: sleeps per step, reports a provider task id"

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            modes=("t2v", "i2v"),
            default_size=(16, 16),
            sizes=((16, 16),),
            default_frames=4,
            min_frames=1,
            max_frames=16,
            default_fps=4.0,
            default_steps=10,
            max_steps=1000,
        )

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        task = ctx.resume_task_id
        if task is None:
            task = "task_" + secrets.token_hex(4)
            if ctx.on_task_id is not None:
                ctx.on_task_id(task, {"submitted": time.time()})
        _log(f"start {task} pid={os.getpid()} resumed={ctx.resume_task_id is not None}")
        steps = params.num_inference_steps or 10
        delay = float(params.options.get("delay", 0.1)) if params.options else 0.1
        for i in range(steps):
            ctx.cancel.raise_if_cancelled()
            time.sleep(delay)
            ctx.progress("denoising", i + 1, steps)
        rng = np.random.default_rng(params.seed)
        frames = rng.integers(0, 255, (params.num_frames, params.height, params.width, 3), dtype=np.uint8)
        _log(f"done {task} pid={os.getpid()}")
        return BackendOutput(
            video=Video(frames, fps=params.fps), provider_task_id=task, cost={"amount": 0.01, "currency": "USD"}
        )
