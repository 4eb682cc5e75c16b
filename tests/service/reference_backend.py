"""A test-only backend that takes reference images (mode ``references``, up to 4) and records what it got.

No shipped backend takes references yet, so the job service's ``characters`` and ``references`` fields are shown
end to end with this one. Each run appends one JSON line to the file named by ``KINEMA_REFS_LOG``: the references'
shapes and mean colours, in order. Registered with ``KINEMA_EXTRA_BACKENDS="refs=reference_backend:ReferenceBackend"``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kinema.backends.base import BackendOutput, BaseBackend, Capabilities, GenerationContext, GenerationParams
from kinema.video import Video


class ReferenceBackend(BaseBackend):
    name = "refs"
    description = "test backend: takes up to 4 reference images and records them"

    def capabilities(self, model: str | None = None) -> Capabilities:
        return Capabilities(
            modes=("t2v", "references"),
            max_references=4,
            default_size=(16, 16),
            sizes=((16, 16),),
            default_frames=4,
            min_frames=1,
            max_frames=16,
            default_fps=4.0,
            default_steps=1,
            max_steps=10,
        )

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        refs = [np.asarray(r) for r in params.references]
        path = os.environ.get("KINEMA_REFS_LOG")
        if path:
            line = {
                "mode": params.mode,
                "references": [
                    {"shape": list(r.shape), "mean": [round(float(c), 1) for c in r.reshape(-1, r.shape[-1]).mean(0)]}
                    for r in refs
                ],
            }
            with open(path, "a") as fh:
                fh.write(json.dumps(line) + "\n")
        # the clip shows the references' mean colour, so a test can also see them in the output
        colour = np.mean([r.reshape(-1, 3).mean(0) for r in refs], 0) if refs else np.zeros(3)
        frames = np.broadcast_to(colour.astype(np.uint8), (params.num_frames, params.height, params.width, 3))
        return BackendOutput(video=Video(np.ascontiguousarray(frames), fps=params.fps))
