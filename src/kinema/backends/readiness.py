"""What the diffusers backend can really run here, for ``kinema backends`` (:func:`kinema.list_backends`).

Having diffusers installed is not being able to make a video: a model's weights must be in the Hugging Face cache,
and without a GPU a 1.3B model takes a very long time on the CPU. The listing says both, so "usable" is the truth.
Nothing here touches the network.
"""

from __future__ import annotations

__all__ = ["local_readiness", "models_here", "accelerator"]


def models_here() -> list[str]:
    """The catalog ids whose complete weights are in the Hugging Face cache (read from the cache, never the Hub)."""
    from .catalog import CATALOG
    from .diffusers import cached_snapshot, missing_components

    here = []
    for entry in CATALOG.values():
        for repo in (entry.repo, *entry.aliases):
            folder = cached_snapshot(repo, entry.revision)
            if folder is not None:
                if not missing_components(folder):
                    here.append(entry.id)
                break
    return here


def accelerator() -> str | None:
    """The GPU torch would use ("cuda: NVIDIA H200", "mps"), or None on a CPU-only machine."""
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else None


def local_readiness() -> tuple[bool, str]:
    """(usable, why): whether a catalog model can run here now, and what a user must know about it."""
    from .catalog import DEFAULT_MODEL

    here = models_here()
    if not here:
        return False, (
            f"installed, but no model pulled: run 'kinema pull {DEFAULT_MODEL}' (see 'kinema models'), or pass "
            "--model FOLDER of a diffusers checkpoint"
        )
    gpu = accelerator()
    pulled = f"pulled: {', '.join(here)}"
    if gpu is None:
        return True, f"no GPU: runs on the CPU, very slowly (tens of minutes or more per clip); {pulled}"
    return True, f"GPU ({gpu}); {pulled}"
