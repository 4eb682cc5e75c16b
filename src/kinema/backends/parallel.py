"""One video on several GPUs: context parallelism through diffusers, and the launcher that starts the ranks.

diffusers splits a transformer's sequence across processes itself (``ContextParallelConfig``,
``transformer.enable_parallelism``; Ulysses attention exchanges heads with an all-to-all, ring attention passes
key/value chunks around). Kinema adds what a user needs around it:

* the options ``ulysses=N`` / ``ring=N`` (and ``ulysses_anything``), checked before anything loads
  (:func:`parse_parallel`, :func:`check_parallel`): the degrees multiply to the group's size, Ulysses divides the
  head count, the model family has a context-parallel plan in the installed diffusers, no offload;
* :func:`kinema.launch.launch`: N rank processes (``kinema generate ... --gpus N``), one per GPU with NCCL, or CPU
  processes with gloo (how the tests run it). Every rank runs the same request with the same seed; rank 0 alone
  writes the video and reports progress; a cancel is agreed by all ranks at the same step (:func:`agreed_cancel`),
  so no collective waits for a rank that left; if one rank dies the others are stopped and the run fails.

CPU-only compatibility (diffusers 0.42): ``_resolve_parallel_config`` computes ``rank % torch.accelerator.
device_count()``, which is 0 without an accelerator; :func:`enable` counts one device there for the call.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from collections.abc import Iterator


__all__ = ["parse_parallel", "check_parallel", "enable", "agreed_cancel", "degree", "world"]

PARALLEL_OPTIONS = ("ulysses", "ring", "ulysses_anything")


def world() -> tuple[int, int]:
    """(rank, world size) of this process's group; (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def parse_parallel(opts: dict[str, Any]) -> None:
    """Normalise ``ulysses``, ``ring`` (integers >= 1) and ``ulysses_anything`` (bool) in place."""
    for key in ("ulysses", "ring"):
        value = opts.get(key, 1)
        try:
            degree = int(value)
            ok = degree >= 1 and float(value) == degree
        except (TypeError, ValueError):
            ok = False
        if not ok or isinstance(value, bool):
            raise InvalidRequest(
                f"options.{key}",
                f"{value!r} is not a number of GPUs",
                value=value,
                allowed="an integer from 1 (off) to the number of GPUs",
            )
        opts[key] = degree
    anything = opts.get("ulysses_anything", False)
    if not isinstance(anything, bool):
        anything = str(anything).strip().lower() in ("1", "true", "yes", "on")
    opts["ulysses_anything"] = anything


def degree(opts: dict[str, Any]) -> int:
    """How many processes the options split one video over."""
    return int(opts.get("ulysses", 1)) * int(opts.get("ring", 1))


def check_parallel(transformer_cls: Any, config: dict[str, Any], opts: dict[str, Any], group: int | None) -> None:
    """Refuse, before loading, a parallel setting that cannot run: each reason names the option and what works.

    ``group`` is the number of processes (None: not known yet, when planning); ``transformer_cls`` None skips the
    model's checks (no weights here to read its configuration from)."""
    n = degree(opts)
    if n == 1:
        if opts["ulysses_anything"]:
            raise InvalidRequest(
                "options.ulysses_anything", "applies with ulysses above 1", value=True, allowed="with ulysses=N, N > 1"
            )
        if group is not None and group > 1:
            raise InvalidRequest(
                "options.ulysses",
                f"{group} GPUs were asked for but no split is set",
                value=1,
                allowed=f"ulysses={group}, ring={group}, or a product of {group}",
            )
        return
    if group is not None and n != group:
        raise InvalidRequest(
            "options.ulysses",
            f"ulysses x ring = {n}, but the group has {group} processes",
            value=n,
            allowed=f"degrees whose product is {group} (the --gpus count)",
        )
    name = getattr(transformer_cls, "__name__", str(transformer_cls))
    if transformer_cls is not None and not getattr(transformer_cls, "_cp_plan", None):
        raise InvalidRequest(
            "options.ulysses",
            f"{name} has no context-parallel plan in the installed diffusers, so its sequence cannot be split",
            value=n,
            allowed="Wan or LTX-Video models (HunyuanVideo and CogVideoX have none)",
        )
    heads = config.get("num_attention_heads")
    if opts["ulysses"] > 1 and isinstance(heads, int) and heads % opts["ulysses"] and not opts["ulysses_anything"]:
        divisors = [d for d in range(2, heads + 1) if heads % d == 0]
        raise InvalidRequest(
            "options.ulysses",
            f"{name} has {heads} attention heads, which {opts['ulysses']} does not divide",
            value=opts["ulysses"],
            allowed=f"a divisor of {heads} ({', '.join(map(str, divisors[:8]))}), or ulysses_anything=true",
        )
    if opts["ulysses_anything"] and opts["ring"] > 1:
        raise InvalidRequest(
            "options.ulysses_anything",
            "works with ulysses alone (diffusers' rule)",
            value=True,
            allowed="ring=1 with ulysses_anything",
        )
    if opts.get("offload", "none") != "none":
        raise InvalidRequest(
            "options.offload",
            "offloading is not tested together with a split sequence",
            value=opts["offload"],
            allowed="none when ulysses or ring is above 1",
        )
    if opts.get("attention", "sdpa") not in ("sdpa", "flash", "flash3"):
        raise InvalidRequest(
            "options.attention",
            f"{opts['attention']} has no context-parallel support in diffusers",
            value=opts["attention"],
            allowed="sdpa, flash, flash3",
        )
    if opts["ring"] > 1 and opts.get("attention", "sdpa") == "sdpa":
        # ring attention merges partial results by their log-sum-exp, which diffusers' native (SDPA) backend does not
        # return ("Native attention does not support return_lse=True", diffusers 0.42.1): it fails at the first step
        raise InvalidRequest(
            "options.attention",
            "sdpa cannot run ring attention (diffusers' native backend returns no log-sum-exp)",
            value="sdpa",
            allowed="flash or flash3 with ring above 1 (a CUDA GPU); or ulysses alone with sdpa",
        )


@contextmanager
def _one_device_on_cpu() -> Iterator[None]:
    import torch

    original = torch.accelerator.device_count
    if original() > 0:
        yield
        return
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def enable(transformer: Any, opts: dict[str, Any]) -> None:
    """Split ``transformer``'s sequence over this process group (a no-op at degree 1)."""
    if degree(opts) == 1:
        return
    from diffusers import ContextParallelConfig

    config = ContextParallelConfig(
        ulysses_degree=opts["ulysses"], ring_degree=opts["ring"], ulysses_anything=opts["ulysses_anything"]
    )
    with _one_device_on_cpu():
        transformer.enable_parallelism(config=config)


def agreed_cancel(cancelled: bool) -> bool:
    """Whether any rank was cancelled, agreed by all ranks at this step (a no-op outside a group)."""
    rank, size = world()
    if size == 1:
        return cancelled
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if cancelled else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
