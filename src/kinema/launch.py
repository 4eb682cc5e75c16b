"""Start one request on several processes: the launcher of a split (context-parallel) run.

:func:`launch` starts N ranks (one per CUDA GPU with NCCL, or CPU processes with gloo), runs the same request with
the same seed on each through :func:`kinema.engine.run`, and hands back what rank 0 wrote. The checks and the
diffusers side are in :mod:`kinema.backends.parallel`; ``kinema generate --gpus N`` calls this.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends.parallel import degree, parse_parallel
from .errors import Cancelled, GenerationFailed, InvalidRequest, RankLost

if TYPE_CHECKING:
    from collections.abc import Callable

    from .backends.base import CancelToken
    from .progress import ProgressEvent
    from .request import VideoRequest

__all__ = ["launch", "ParallelRun", "split_request", "SPLIT_MODES"]

#: the modes a split run takes (the diffusers backend refuses ulysses/ring on edit, keyframes and references)
SPLIT_MODES = ("t2v", "i2v")


@dataclass
class ParallelRun:
    """What rank 0 hands back to the launching process."""

    path: str | None
    recipe: dict[str, Any]
    warnings: list[str]


def split_request(request: VideoRequest, n: int) -> VideoRequest | None:
    """``request`` split over ``n`` processes (Ulysses over all of them unless it sets its own split; its seed fixed,
    as every rank must draw the same noise), or None when a split cannot take it: an edit, keyframes, references
    (:data:`SPLIT_MODES`), or a setting planning refuses together with a split (offload, attention...). A job
    service's worker with a group of ``n`` GPUs runs such a request on one of them instead.

    ``request``: the request as asked (planned here; a request planning refuses raises its InvalidRequest);
    ``n``: the group's size."""
    from .planner import plan

    the_plan = plan(request)
    if the_plan.params.mode not in SPLIT_MODES:
        return None
    options = dict(request.options)
    if "ulysses" not in options and "ring" not in options:
        options["ulysses"] = n
    split = request.model_copy(update={"seed": the_plan.params.seed, "options": options})
    try:
        plan(split)  # the split's own checks, before any process starts
    except InvalidRequest:
        return None
    return split


def _release_loaded(gpus: list[int] | None) -> None:
    """Free this process's loaded diffusers pipeline if it sits on one of ``gpus`` (None: wherever it is)."""
    from .backends import get_backend
    from .backends.diffusers import DiffusersBackend

    backend = get_backend("diffusers")
    if isinstance(backend, DiffusersBackend):
        backend.release(gpus)


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
    devices: list[int] | None = None,
    launcher: int | None = None,
) -> None:
    """One rank: join the group, run the request, and (rank 0) write the video and report back. ``launcher``: the
    launching process's id; the rank exits when that process is gone."""
    if launcher is not None:
        threading.Thread(target=_exit_without, args=(launcher,), daemon=True).start()
    import torch
    import torch.distributed as dist

    from . import engine
    from .backends.base import CancelToken
    from .request import VideoRequest

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    device = (devices[rank] if devices else rank) if use_cuda else None
    if device is not None:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    dist.init_process_group(
        "nccl" if use_cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size
    )
    request = VideoRequest.model_validate_json(request_json)
    options = {**request.options, "device": f"cuda:{device}" if device is not None else "cpu"}
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


def _exit_without(launcher: int) -> None:
    """End this rank once ``launcher`` is no longer its parent. A launcher killed outright (SIGKILL, the OOM killer)
    cannot stop its ranks, and torch's parent-death signal is set only once a rank's start-up is done: ranks still
    starting then would run the whole request, holding their GPUs, for nobody (measured: about 40 s on the tiny
    Wan, and an output written)."""
    while os.getppid() == launcher:
        time.sleep(0.5)
    os._exit(1)


def launch(
    request: VideoRequest,
    *,
    gpus: int,
    output: str | Path | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
    devices: list[int] | None = None,
) -> ParallelRun:
    """Run ``request`` on ``gpus`` processes (one per CUDA GPU, else CPU processes with gloo); rank 0 writes
    ``output``. The request's seed must be set (every rank must draw the same noise).

    ``devices``: the CUDA device indices to use, one per rank (default 0..gpus-1): a service worker running
    several groups on one machine gives each its own GPUs. A rank that dies (killed, out of memory) stops the
    group and raises :class:`~kinema.errors.RankLost`; if this process dies, its ranks exit too."""
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
    if devices is not None and len(devices) != gpus:
        raise InvalidRequest(
            "devices", f"{len(devices)} devices for {gpus} processes", value=devices, allowed=f"{gpus} device indices"
        )
    if use_cuda and devices and max(devices) >= torch.cuda.device_count():
        raise InvalidRequest(
            "devices",
            f"device {max(devices)} is not visible ({torch.cuda.device_count()} are)",
            value=devices,
            allowed=f"0 to {torch.cuda.device_count() - 1}",
        )
    if use_cuda and torch.cuda.device_count() < gpus:
        raise InvalidRequest(
            "gpus",
            f"{gpus} GPUs were asked for, {torch.cuda.device_count()} are visible",
            value=gpus,
            allowed=f"1 to {torch.cuda.device_count()}",
        )
    # the ranks load their own copy of the model: one kept in this process on their GPUs (a worker's or a group
    # actor's earlier unsplit job) would leave rank 0 that much less memory
    _release_loaded(list(devices) if devices else list(range(gpus)) if use_cuda else None)
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    cancel_flag = ctx.Event()
    port = _free_port()
    group = mp.start_processes(
        _rank_main,
        args=(
            gpus,
            port,
            request.model_dump_json(),
            str(output) if output else None,
            use_cuda,
            events,
            cancel_flag,
            list(devices) if devices else None,
            os.getpid(),
        ),
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
                # one rank died without raising (a signal, out of memory: a rank that raises is the branch below):
                # join() has stopped the others and the run fails as a whole, in a way another attempt may not
                raise RankLost(
                    f"rank {exc.error_index} exited with code {exc.exit_code}; the whole group was stopped"
                ) from None
            except mp.ProcessRaisedException:
                # a rank may raise only because a peer was killed under it (its collective lost the connection);
                # SIGKILL (the OOM killer's, a kill -9) is never join()'s own, which stops the others with SIGTERM
                killed = [i for i, p in enumerate(group.processes) if p.exitcode == -signal.SIGKILL]
                if killed:
                    raise RankLost(f"rank {killed[0]} was killed; the whole group was stopped") from None
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
