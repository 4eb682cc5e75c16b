"""One video on several GPUs: context parallelism through diffusers, and the launcher that starts the ranks.

diffusers splits a transformer's sequence across processes itself (``ContextParallelConfig``,
``transformer.enable_parallelism``; Ulysses attention exchanges heads with an all-to-all, ring attention passes
key/value chunks around). Kinema adds what a user needs around it:

* the options ``ulysses=N`` / ``ring=N`` (and ``ulysses_anything``), checked before anything loads
  (:func:`parse_parallel`, :func:`check_parallel`): the degrees multiply to the group's size, Ulysses divides the
  head count, the model family has a context-parallel plan in the installed diffusers, no offload;
* :func:`launch`: N rank processes (``kinema generate ... --gpus N``), one per GPU with NCCL, or CPU processes with
  gloo (how the tests run it). Every rank runs the same request with the same seed; rank 0 alone writes the video
  and reports progress; a cancel is agreed by all ranks at the same step (:func:`agreed_cancel`), so no collective
  waits for a rank that left; if one rank dies the others are stopped and the run fails as a whole.

CPU-only compatibility (diffusers 0.42): ``_resolve_parallel_config`` computes ``rank % torch.accelerator.
device_count()``, which is 0 without an accelerator; :func:`enable` counts one device there for the call.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Cancelled, GenerationFailed, InvalidRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..progress import ProgressEvent
    from ..request import VideoRequest
    from .base import CancelToken

__all__ = ["parse_parallel", "check_parallel", "enable", "agreed_cancel", "launch", "ParallelRun", "world"]

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


# -- the launcher -------------------------------------------------------------------------------------------------


@dataclass
class ParallelRun:
    """What rank 0 hands back to the launching process."""

    path: str | None
    recipe: dict[str, Any]
    warnings: list[str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(
    rank: int,
    size: int,
    port: int,
    request_json: str,
    output: str | None,
    use_cuda: bool,
    events: Any,
    cancel_flag: Any,
) -> None:
    """One rank: join the group, run the request, and (rank 0) write the video and report back."""
    import torch
    import torch.distributed as dist

    from .. import engine
    from ..request import VideoRequest
    from .base import CancelToken

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if use_cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    dist.init_process_group(
        "nccl" if use_cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size
    )
    request = VideoRequest.model_validate_json(request_json)
    options = {**request.options, "device": f"cuda:{rank}" if use_cuda else "cpu"}
    request = request.model_copy(update={"options": options})
    token = CancelToken()

    def watch() -> None:  # the launcher's cancel reaches this rank's token; agreed_cancel does the rest
        cancel_flag.wait()
        token.cancel()

    threading.Thread(target=watch, daemon=True).start()

    def progress(event: Any) -> None:
        if rank == 0:
            events.put(("progress", event))

    try:
        result = engine.run(request, output=output if rank == 0 else None, cancel=token, on_progress=progress)
        if rank == 0:
            events.put(("done", str(result.path) if result.path else None, result.recipe, list(result.warnings)))
    except Cancelled as exc:
        if rank == 0:
            events.put(("cancelled", exc.message))
    except Exception as exc:
        events.put(("failed", f"rank {rank}: {type(exc).__name__}: {getattr(exc, 'message', exc)}"))
        raise
    finally:
        dist.destroy_process_group()


def launch(
    request: VideoRequest,
    *,
    gpus: int,
    output: str | Path | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
) -> ParallelRun:
    """Run ``request`` on ``gpus`` processes (one per CUDA GPU, else CPU processes with gloo); rank 0 writes
    ``output``. The request's seed must be set (every rank must draw the same noise)."""
    import torch
    import torch.multiprocessing as mp

    if request.seed is None:
        raise InvalidRequest(
            "seed", "a split run needs a fixed seed so every rank draws the same noise", allowed="any integer"
        )
    opts = dict(request.options)
    parse_parallel(opts)
    if degree(opts) != gpus:
        raise InvalidRequest(
            "options.ulysses",
            f"ulysses x ring = {degree(opts)}, but {gpus} processes were asked for",
            value=degree(opts),
            allowed=f"degrees whose product is {gpus}, e.g. ulysses={gpus}",
        )
    use_cuda = torch.cuda.is_available()
    if use_cuda and torch.cuda.device_count() < gpus:
        raise InvalidRequest(
            "gpus",
            f"{gpus} GPUs were asked for, {torch.cuda.device_count()} are visible",
            value=gpus,
            allowed=f"1 to {torch.cuda.device_count()}",
        )
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    cancel_flag = ctx.Event()
    port = _free_port()
    group = mp.start_processes(
        _rank_main,
        args=(gpus, port, request.model_dump_json(), str(output) if output else None, use_cuda, events, cancel_flag),
        nprocs=gpus,
        join=False,
        start_method="spawn",
    )
    outcome: tuple[Any, ...] | None = None
    failure: str | None = None
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                cancel_flag.set()
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                event = None
            if event is not None:
                if event[0] == "progress" and on_progress is not None:
                    on_progress(event[1])
                elif event[0] in ("done", "cancelled"):
                    outcome = event
                elif event[0] == "failed" and failure is None:
                    failure = event[1]
            try:
                if group.join(timeout=0):
                    break
            except mp.ProcessExitedException as exc:
                # one rank died (killed, or failed): join() has stopped the others; the run fails as a whole
                raise GenerationFailed(
                    failure or f"rank {exc.error_index} exited with code {exc.exit_code}; the whole group was stopped"
                ) from None
            except mp.ProcessRaisedException:
                raise GenerationFailed(failure or "a rank failed; the whole group was stopped") from None
        while outcome is None:  # the last messages may still be in the queue
            try:
                event = events.get(timeout=1.0)
            except queue.Empty:
                break
            if event[0] in ("done", "cancelled"):
                outcome = event
    finally:
        for proc in group.processes:
            if proc.is_alive():
                proc.terminate()
    if outcome is None:
        raise GenerationFailed(failure or "the ranks ended without a result")
    if outcome[0] == "cancelled":
        raise Cancelled(outcome[1])
    return ParallelRun(path=outcome[1], recipe=outcome[2], warnings=outcome[3])
