"""A test-only local-model backend for the Ray worker tests: ``kind = "local"``, so its jobs go to GPU actors.

It "loads" a model the first time a process sees it (no real weights), sleeps ``KINEMA_FAKE_STEP_DELAY`` seconds a
step (a prompt starting "refuse" fails with InvalidRequest instead), and appends what it does to the file named by
``KINEMA_RAY_LOG`` (``start``/``load``/``done`` lines with the process id and the GPU Ray gave the actor), so tests
can count runs, loads and placements across processes. Registered with
``KINEMA_EXTRA_BACKENDS="fakelocal=ray_fake_backend:FakeLocalBackend"``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from kinema.backends.base import BackendOutput, BaseBackend, Capabilities, GenerationContext, GenerationParams
from kinema.errors import InvalidRequest
from kinema.video import Video

#: the models this process has "loaded" (a real local backend keeps its pipelines like this)
LOADED: set[str] = set()


def log(line: str) -> None:
    path = os.environ.get("KINEMA_RAY_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{line} pid={os.getpid()} gpus={os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\n")


class FakeLocalBackend(BaseBackend):
    name = "fakelocal"
    kind = "local"  # what puts its jobs on GPU actors
    description = "test backend: a local model that needs a GPU actor"

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            default_size=(16, 16),
            sizes=((16, 16),),
            default_frames=2,
            max_frames=8,
            default_fps=4.0,
            default_steps=2,
            max_steps=1000,
        )

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        if params.prompt.startswith("refuse"):  # a job's own error, which must reach the store as itself
            raise InvalidRequest("prompt", "refused by the fake backend", allowed="anything not starting 'refuse'")
        model = params.model or "default"
        if model not in LOADED:
            LOADED.add(model)
            log(f"load {model} {params.prompt}")
        log(f"start {model} {params.prompt}")
        steps = params.num_inference_steps or 2
        delay = float(os.environ.get("KINEMA_FAKE_STEP_DELAY", "0.05"))
        for i in range(steps):
            ctx.cancel.raise_if_cancelled()
            time.sleep(delay)
            ctx.progress("denoising", i + 1, steps)
        frames = np.random.default_rng(params.seed).integers(0, 255, (params.num_frames, 16, 16, 3), dtype=np.uint8)
        log(f"done {model} {params.prompt}")
        return BackendOutput(video=Video(frames, fps=params.fps))
