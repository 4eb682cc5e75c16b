"""A training run's resumable state, shared by the two training stages (``train.py``, ``train_autoencoder.py``).

One file holds what a run needs to continue exactly where it stopped: each module's and the optimizer's state, both
random generators, and the sizes of the data pool's chunks (the pool is rendered again from its seeds, chunk by chunk,
rather than stored). A run stopped and started again ends with the weights of one never stopped; the stages' tests
check it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["load_state", "save_state"]


def save_state(
    path: Path, parts: dict[str, Any], rng: np.random.Generator, gen: torch.Generator, **extra: Any
) -> None:
    """Write ``parts`` (name -> module or optimizer, or None), the generators and ``extra`` (step, elapsed,
    history, pool sizes...) to ``path``, atomically: a run killed while writing keeps its previous state."""
    state = {name: part.state_dict() if part is not None else None for name, part in parts.items()}
    state |= {"rng": rng.bit_generator.state, "gen": gen.get_state(), **extra}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_state(
    path: Path, parts: dict[str, Any], rng: np.random.Generator, gen: torch.Generator, grow: Callable[[int], None]
) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote: render the pool's chunks again (``grow`` each recorded size, in order),
    load each part that is not None, set both generators; returns the state for its other entries."""
    state: dict[str, Any] = torch.load(path, weights_only=False)
    for size in state["pool"]:
        grow(size)
    for name, part in parts.items():
        if part is not None:
            part.load_state_dict(state[name])
    rng.bit_generator.state = state["rng"]
    gen.set_state(state["gen"])
    return state
