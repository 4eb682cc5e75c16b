"""Workers on a Ray cluster: ``kinema worker --ray``. The store decides; Ray only places and runs generations.

The driver (this process) is a :class:`~kinema.service.worker.WorkerPool` whose claim loops, leases, heartbeats,
reaper, cancel handling, retries and webhooks are the plain pool's. What differs is where a generation runs: on a
Ray actor, with the driver relaying between the actor and the store.

* **Actors.** One per GPU (``num_gpus=1``) for local-model jobs (the ``diffusers`` backend, and any backend whose
  class says ``kind = "local"``), and a small CPU pool (``num_cpus`` a fraction, several actors) for cloud-provider
  jobs and the built-in model. Each actor runs one job at a time; a few more threads answer the driver's polls.
* **Claims.** A claim loop claims only while an actor is free (a job is never leased to this driver just to wait),
  then hands the job to a free actor of its placement, preferring one that already has the job's model loaded (each
  actor reports what it has loaded after every job); else an actor with nothing loaded, else the least recently
  used one.
* **Exactly once.** Tasks are never retried by Ray (``max_task_retries=0``) and actors are never restarted by Ray
  (``max_restarts=0``): the driver replaces a dead actor itself, knowing the new one has nothing loaded. If an actor
  dies mid-job (``ray.kill``, OOM, its node lost), the driver stops heartbeating that job: its lease expires, the
  reaper re-queues it with a crash counted (a job that loses ``max_crashes`` workers is quarantined), and a later
  claim runs it again. Only the driver writes to the store, with the attempt guard, so an attempt that lost its
  lease changes nothing, and completion (with the output's publication) happens once.
* **Outputs.** The actor writes the video in its own temporary folder and returns the bytes (video, thumbnail,
  sidecar) through Ray's object store; the driver publishes them into its data dir in the completing transaction,
  as a plain worker does. GPU hosts need no shared disk with the driver.
* **Progress and provider task ids** are polled from the actor every ``poll_interval`` and written by the driver. A
  remote backend's task id is acknowledged only after the driver has stored it: the actor's backend waits for that
  before polling the provider, so a paid task is never started twice.
* **A job on several GPUs** (``kinema worker --ray --gpus-per-job N``). Each GPU actor holds N GPUs
  (``num_gpus=N``: Ray places one actor's resources on one node, all or nothing, and gives it those N devices in
  ``CUDA_VISIBLE_DEVICES``). It runs a diffusers job through :func:`kinema.launch.launch`: N rank processes of its
  own on its N devices (gloo CPU ranks without CUDA), rank 0 writing the video the actor returns; progress, cancel
  and the outputs then go as for any job. A job the split cannot take (:func:`kinema.launch.split_request`: an edit,
  keyframes, references, settings planning refuses with a split) runs in the actor itself, on its first GPU. A rank
  that dies raises :class:`~kinema.errors.RankLost`, which the store retries; an actor that dies takes its ranks
  with it (each rank exits when its launcher is gone) and its job goes back to the store by its lease, as above.
  Why not a placement group of N one-GPU bundles: the ranks are processes the actor starts, not Ray actors, so the
  bundles would only reserve GPUs, and the driver would have one more object to create, watch and remove.
* **Remote backends' hooks** (``video_job.remote_hooks``) cross the process boundary as data or relays: the provider
  callback URL and the "an earlier submit is unconfirmed" flag travel with the job; the submitting mark is polled
  from the actor and stored by the driver, which then answers (the backend waits for that before its paid submit);
  and a provider callback's "poll now" (received by the driver, or through the store's hint) is forwarded to the
  actor, whose backend then polls at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.base import CancelToken
from ..errors import Cancelled, InvalidRequest, KinemaError
from ..launch import split_request
from ..progress import ProgressEvent
from .config import ServiceConfig
from .video_job import KIND as VIDEO_KIND
from .video_job import publish_outputs, write_thumbnail
from .worker import AttemptContext, WorkerPool

if TYPE_CHECKING:
    from ..request import VideoRequest
    from .store import Job
    from .stores import Store

__all__ = [
    "RayOptions",
    "RayWorkerPool",
    "KinemaActor",
    "WorkerLost",
    "LOCAL_BACKENDS",
    "placement_of",
    "model_key",
    "forwarded_env",
    "pack_error",
    "unpack_error",
    "run_ray_worker_process",
]

log = logging.getLogger("kinema.service.ray_workers")

#: backends whose jobs need a GPU actor; a backend class can also say so with ``kind = "local"``
LOCAL_BACKENDS = frozenset({"diffusers"})
GPU, CPU = "gpu", "cpu"


@dataclass
class RayOptions:
    """How ``kinema worker --ray`` uses the cluster."""

    #: ``ray.init`` address: None starts a local Ray (or joins ``RAY_ADDRESS``), "auto" joins the running cluster
    address: str | None = None
    #: GPU actors (one GPU each, or ``gpus_per_job`` of the service's config each, on one node); None: as many as
    #: the cluster's nodes have GPUs (groups that fit on a node) when the worker starts
    gpu_actors: int | None = None
    #: CPU actors: cloud-provider jobs and the built-in model
    cpu_actors: int = 4
    #: CPUs reserved per CPU actor (a cloud job mostly waits on its provider)
    cpus_per_cpu_actor: float = 0.25
    #: CPUs reserved per GPU actor (next to its GPU; per GPU for an actor that holds several)
    cpus_per_gpu_actor: float = 1.0
    #: more backend names whose jobs go to GPU actors
    gpu_backends: tuple[str, ...] = ()
    #: models an actor is counted as keeping loaded (most recent first)
    warm_models: int = 1
    #: seconds between polls of a running actor (progress, provider task ids, cancellation)
    poll_interval: float = 0.2
    #: seconds to wait for the actors to start
    start_timeout: float = 300.0


class WorkerLost(RuntimeError):
    """The actor running an attempt died: the attempt is abandoned to its lease (the reaper re-queues the job)."""


def placement_of(backend: str, gpu_backends: tuple[str, ...] = ()) -> str:
    """``"gpu"`` for a local-model backend (``diffusers``, one in ``gpu_backends``, or a class with ``kind =
    "local"``), else ``"cpu"`` (cloud providers, the built-in model).

    >>> placement_of("diffusers"), placement_of("builtin"), placement_of("runway")
    ('gpu', 'cpu', 'cpu')
    """
    if backend in LOCAL_BACKENDS or backend in gpu_backends:
        return GPU
    if backend == "builtin":
        return CPU
    from ..backends import get_backend

    try:
        instance = get_backend(backend)
    except Exception:  # not loadable in the driver: it cannot be a local model the driver knows of
        return CPU
    return GPU if getattr(instance, "kind", None) == "local" else CPU


def model_key(job: Job) -> str:
    """What an actor has loaded after running the job: ``backend`` or ``backend/model``."""
    backend = str(job.summary.get("backend") or job.request.get("backend") or "builtin")
    model = job.request.get("model")
    if not model or model == backend:
        return backend
    return str(model) if str(model).startswith(backend + "/") else f"{backend}/{model}"


#: names of variables never copied to the actors' environment: a job's runtime env is readable by anyone who can
#: list the cluster's jobs (the dashboard), and actors need neither the store nor the webhook secret
_SECRET_NAME = re.compile(r"SECRET|KEY|TOKEN|PASSWORD|DATABASE_URL|CREDENTIAL")


def forwarded_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The driver's ``KINEMA_*`` and ``HF_*`` settings the actors get (extra backends, built-in weights, the Hugging
    Face cache, providers' base URLs), without credentials: providers' API keys belong in the nodes' environment.

    >>> forwarded_env({"KINEMA_EXTRA_BACKENDS": "x=m:C", "KINEMA_DATABASE_URL": "postgresql://u:pw@h/db",
    ...                "KINEMA_WEBHOOK_SECRET": "whsec_x", "HF_TOKEN": "hf_x", "HF_HOME": "/hf", "PATH": "/bin"})
    {'KINEMA_EXTRA_BACKENDS': 'x=m:C', 'HF_HOME': '/hf'}
    """
    return {k: v for k, v in environ.items() if k.startswith(("KINEMA_", "HF_")) and not _SECRET_NAME.search(k)}


# -- errors across the process boundary ----------------------------------------------------------------------------
def pack_error(exc: Exception) -> dict[str, Any]:
    """An exception as plain data: Kinema's errors take keyword-only arguments and do not unpickle, so Ray would
    hand the driver a system error instead of the job's own (an InvalidRequest would look like a dead actor)."""
    import pickle
    import traceback

    state: dict[str, Any] = {}
    for name, value in vars(exc).items():
        try:
            pickle.dumps(value)
            state[name] = value
        except Exception:  # an unpicklable detail (an array given as ``value``): its repr is enough for a message
            state[name] = repr(value)
    cls = type(exc)
    return {
        "cls": f"{cls.__module__}:{cls.__qualname__}",
        "args": [str(a) for a in exc.args],
        "state": state,
        "text": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def unpack_error(data: dict[str, Any]) -> Exception:
    """The exception :func:`pack_error` described, of its own class where that can be imported (a RuntimeError with
    its message otherwise); made without calling its ``__init__``.

    >>> from kinema.errors import InvalidRequest
    >>> exc = unpack_error(pack_error(InvalidRequest("steps", "too many", allowed="1-50")))
    >>> type(exc).__name__, exc.field, str(exc)
    ('InvalidRequest', 'steps', 'steps: too many (allowed: 1-50)')
    """
    import importlib

    module, _, qualname = str(data.get("cls", "")).partition(":")
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeError(qualname)
        exc = cls.__new__(cls)
        exc.args = tuple(data.get("args", ()))
        exc.__dict__.update(data.get("state", {}))
        return exc
    except Exception:
        return RuntimeError(data.get("text") or qualname)


# -- the actor ----------------------------------------------------------------------------------------------------
@dataclass
class _ActorJob:
    """One running job inside an actor: what the driver's polls read, and the driver's answers."""

    token: CancelToken = field(default_factory=CancelToken)
    progress: dict[str, Any] | None = None
    task: tuple[str, dict[str, Any]] | None = None
    task_ack: threading.Event = field(default_factory=threading.Event)
    task_ok: bool = False
    #: a submitting mark waiting for the driver to store it: (sequence number, active); None when none waits
    submitting: tuple[int, bool] | None = None
    submit_seq: int = 0
    submit_ack: threading.Event = field(default_factory=threading.Event)
    submit_ok: bool = False
    #: set by the driver when a provider callback asks the job to poll now
    poll_now: threading.Event = field(default_factory=threading.Event)


class KinemaActor:
    """Runs one generation at a time for the driver (wrapped with ``ray.remote`` by :class:`RayWorkerPool`).

    ``slot``: the driver's name for it; ``warm_models``: how many models it counts as keeping loaded; ``gpus``: the
    GPUs it holds (above 1: diffusers jobs are split over them, see the module docstring)."""

    def __init__(self, slot: str, warm_models: int = 1, gpus: int = 1) -> None:
        from .config import load_extra_backends

        load_extra_backends()  # the same backends as the driver (KINEMA_EXTRA_BACKENDS in the runtime env)
        import ray

        from .worker import apply_torch_threads

        # torch's default (every core of the node) in each of several actors on one node oversubscribes it; the
        # actor's CPU share is what it may use (a fraction for the cloud pool's actors: 1 thread). Outside an actor
        # (the object built directly, as tests do) there is no share to read: torch is left as it is
        self.torch_threads: int | None = None
        if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
            self.torch_threads = apply_torch_threads(max(1, int(cpus)))
        self.slot = slot
        self.gpus = max(1, gpus)
        self.warm_models = max(1, warm_models)
        self.loaded: list[str] = []
        self.jobs: dict[str, _ActorJob] = {}
        self.lock = threading.Lock()
        self.work = Path(tempfile.mkdtemp(prefix="kinema-ray-"))

    def info(self) -> dict[str, Any]:
        import ray

        return {
            "slot": self.slot,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
            "loaded": list(self.loaded),
            "torch_threads": self.torch_threads,
        }

    def run(
        self,
        job_id: str,
        attempt: int,
        request: dict[str, Any],
        key: str,
        resume_task_id: str | None,
        resume_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Generate; return the summary, the files' bytes and what this actor has loaded."""
        from ..engine import run
        from ..request import VideoRequest

        state = _ActorJob()
        with self.lock:
            self.jobs[job_id] = state
        work = self.work / f"{job_id}.a{attempt}.mp4"
        thumb, sidecar = work.with_suffix(".png"), Path(str(work) + ".json")

        def on_progress(event: ProgressEvent) -> None:
            state.progress = event.to_dict()

        def on_task_id(task_id: str, info: dict[str, Any]) -> None:
            # the driver stores the id, then answers: polling the provider before that could pay twice after a crash
            state.task = (task_id, info)
            if not state.task_ack.wait(120) or not state.task_ok:
                raise Cancelled("the job's lease was lost; the provider task id was not recorded")

        def on_submitting(active: bool = True) -> None:
            # as on_task_id: the mark is durable (the driver wrote it) before the backend's paid submit
            with self.lock:
                state.submit_seq += 1
                state.submit_ok = False
                state.submit_ack.clear()
                state.submitting = (state.submit_seq, active)
            if not state.submit_ack.wait(120) or not state.submit_ok:
                raise Cancelled("the job's lease was lost before the provider submit")

        from ..backends.remote import ON_SUBMITTING, POLL_NOW

        # the hooks that cannot be pickled are this actor's relays to the driver (see the module docstring)
        resume_info = {**resume_info, ON_SUBMITTING: on_submitting, POLL_NOW: state.poll_now}

        try:
            try:
                asked = VideoRequest(**request)
                split = split_request(asked, self.gpus) if self.gpus > 1 and asked.backend == "diffusers" else None
                if split is not None:
                    summary, frames = self._run_split(split, work, on_progress, state.token)
                else:
                    result = run(
                        asked,
                        output=work,
                        on_progress=on_progress,
                        cancel=state.token,
                        on_task_id=on_task_id,
                        resume_task_id=resume_task_id,
                        resume_info=resume_info,
                    )
                    frames = result.video.frames
                    summary = {
                        "seed": result.seed,
                        "recipe": result.recipe,
                        "cost": result.cost,
                        "timings": result.timings,
                        "warnings": result.warnings,
                        "provider_task_id": result.provider_task_id,
                    }
            except Exception as exc:  # the job's own error, returned as data (see pack_error)
                return {"error": pack_error(exc)}
            write_thumbnail(frames[len(frames) // 2], thumb)
            with self.lock:  # loaded: most recent first, as many as the actor keeps
                if split is None:
                    self.loaded = [key, *(k for k in self.loaded if k != key)][: self.warm_models]
                else:  # the ranks have exited, and the launcher freed this actor's diffusers pipeline for them
                    self.loaded = [k for k in self.loaded if k.partition("/")[0] != "diffusers"]
            return {
                "summary": summary,
                "video": work.read_bytes(),
                "thumbnail": thumb.read_bytes(),
                "sidecar": sidecar.read_bytes() if sidecar.exists() else None,
                "loaded": list(self.loaded),
                "pid": os.getpid(),
            }
        finally:
            with self.lock:
                self.jobs.pop(job_id, None)
            for p in (work, thumb, sidecar):
                p.unlink(missing_ok=True)

    def _run_split(
        self, split: VideoRequest, work: Path, on_progress: Callable[[ProgressEvent], None], token: CancelToken
    ) -> tuple[dict[str, Any], Any]:
        """``split`` on this actor's GPUs: its ranks write ``work``; returns the job's result and the frames."""
        from ..launch import launch
        from ..video import Video

        # no ``devices``: the ranks take 0..N-1 of what they see, which is this actor's GPUs (CUDA_VISIBLE_DEVICES)
        ranks = launch(split, gpus=self.gpus, output=work, on_progress=on_progress, cancel=token)
        summary = {
            "seed": split.seed,
            "recipe": ranks.recipe,
            "cost": None,
            "timings": {},
            "warnings": list(ranks.warnings),
            "provider_task_id": None,
        }
        return summary, Video.open(work).frames

    def poll(self, job_id: str) -> dict[str, Any] | None:
        """The job's latest progress event and a provider task id waiting to be stored (None: not running here)."""
        with self.lock:
            state = self.jobs.get(job_id)
        if state is None:
            return None
        task = state.task if state.task is not None and not state.task_ack.is_set() else None
        return {"progress": state.progress, "task": task, "submitting": state.submitting}

    def ack_submitting(self, job_id: str, seq: int, ok: bool) -> None:
        """The driver stored (``ok``) the submitting mark number ``seq``, or the attempt lost the job."""
        with self.lock:
            state = self.jobs.get(job_id)
            if state is None or state.submitting is None or state.submitting[0] != seq:
                return  # a late answer to a mark already answered
            state.submitting, state.submit_ok = None, ok
            state.submit_ack.set()

    def poll_now(self, job_id: str) -> None:
        """A provider callback for the job arrived: its backend polls the provider at once."""
        with self.lock:
            state = self.jobs.get(job_id)
        if state is not None:
            state.poll_now.set()

    def ack_task(self, job_id: str, ok: bool) -> None:
        with self.lock:
            state = self.jobs.get(job_id)
        if state is not None:
            state.task_ok = ok
            state.task_ack.set()

    def cancel(self, job_id: str, keep_provider_task: bool) -> None:
        with self.lock:
            state = self.jobs.get(job_id)
        if state is not None:
            state.token.cancel(keep_provider_task=keep_provider_task)
            state.task_ack.set()  # a backend waiting for its task id's answer stops too
            state.submit_ack.set()  # and one waiting for its submitting mark (not ok: it raises Cancelled)

    def shutdown(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


# -- the driver ---------------------------------------------------------------------------------------------------
@dataclass
class _Slot:
    """The driver's view of one actor."""

    name: str
    placement: str
    handle: Any = None
    ready_ref: Any = None  # the first info() call; the actor takes jobs once it has answered
    ready: bool = False
    busy: bool = False
    dead: bool = False
    loaded: list[str] = field(default_factory=list)
    last_used: float = 0.0
    pid: int | None = None
    torch_threads: int | None = None
    jobs: int = 0
    #: the GPU ids Ray gave the actor (several for a group actor)
    gpus: list[str] = field(default_factory=list)


class RayWorkerPool(WorkerPool):
    """A :class:`WorkerPool` whose ``video`` jobs run on Ray actors (see the module docstring)."""

    #: claim loops beyond one per actor: a claimed job of one placement may wait while the other's actors are free
    SPARE_LOOPS = 2
    #: generations run on the actors, never in the driver: it has no model to load
    WARMS_UP = False

    def __init__(
        self, store: Store, config: ServiceConfig, options: RayOptions | None = None, *, name: str | None = None
    ) -> None:
        self.options = options or RayOptions()
        # the plain pool's GPU groups (``config.gpus_per_job``) are devices of this process; here the actors hold
        # the groups, so the driver needs no GPU (its own, if any, are not the cluster's)
        super().__init__(
            store,
            dataclasses.replace(config, gpus_per_job=1),
            threads=0,
            name=name,
            kinds={VIDEO_KIND: self._run_on_actor},
        )
        self.config = config
        #: GPUs per GPU actor: ``config.gpus_per_job`` (a diffusers job is split over them)
        self.gpus_per_job = max(1, config.gpus_per_job)
        self.slots: list[_Slot] = []
        self.cond = threading.Condition()
        self.waiting = {GPU: 0, CPU: 0}
        #: (job id, actor slot, placement, actor pid) of the last attempts this driver handed to an actor, in order
        self.history: deque[tuple[str, str, str, int | None]] = deque(maxlen=1000)
        self._placements: dict[str, str] = {}
        self._owns_ray = False
        self._remote_actor: Any = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self, housekeeping: bool = True) -> None:
        try:
            import ray
        except ImportError as exc:
            from ..errors import MissingExtra

            raise MissingExtra("cluster", "ray", feature="kinema worker --ray") from exc
        from .config import load_extra_backends

        load_extra_backends()
        if not ray.is_initialized():
            env = forwarded_env(os.environ)
            ray.init(address=self.options.address, runtime_env={"env_vars": env} if env else None, log_to_driver=False)
            self._owns_ray = True
        try:
            gpus = self._gpu_actors()
        except InvalidRequest:
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
            raise
        self._remote_actor = ray.remote(KinemaActor)
        self.slots = [_Slot(f"gpu-{i}", GPU) for i in range(gpus)]
        self.slots += [_Slot(f"cpu-{i}", CPU) for i in range(self.options.cpu_actors)]
        if not self.slots:
            raise ValueError("kinema worker --ray: no actors (no GPUs in the cluster and --cpu-actors 0)")
        for slot in self.slots:
            self._spawn(slot)
        self._wait_ready()
        self.threads = len(self.slots) + self.SPARE_LOOPS
        super().start(housekeeping)

    def _gpu_actors(self) -> int:
        """How many GPU actors to start: ``gpu_actors`` if set, else as many as the nodes' GPUs hold (one per GPU,
        or per group of ``gpus_per_job`` on one node). Refused (naming ``gpus_per_job``) when GPU actors are wanted
        but no node has that many GPUs: a group is never split across nodes."""
        import ray

        n, wanted = self.gpus_per_job, self.options.gpu_actors
        if n == 1:
            return int(ray.cluster_resources().get("GPU", 0)) if wanted is None else wanted
        per_node = [int(node.get("Resources", {}).get("GPU", 0)) for node in ray.nodes() if node.get("Alive")]
        most = max(per_node, default=0)
        if most < n and wanted != 0:
            raise InvalidRequest(
                "gpus_per_job",
                f"{n} GPUs per job, but no node of the Ray cluster has that many "
                f"(the most on one node: {most}); a job's GPUs must be on one node",
                value=n,
                allowed=f"1 to {most}" if most > 1 else "1 (or --gpu-actors 0)",
            )
        return sum(g // n for g in per_node) if wanted is None else wanted

    def _spawn(self, slot: _Slot) -> None:
        opts = self.options
        gpu = slot.placement == GPU
        gpus = self.gpus_per_job if gpu else 0
        slot.handle = self._remote_actor.options(
            num_gpus=gpus,
            num_cpus=opts.cpus_per_gpu_actor * gpus if gpu else opts.cpus_per_cpu_actor,
            # the store's lease decides whether a job runs again, never Ray: no task retries, no actor restarts
            # (the driver replaces a dead actor itself, knowing the new one has nothing loaded)
            max_restarts=0,
            max_task_retries=0,
            max_concurrency=4,  # run() plus the driver's poll, ack and cancel calls while it runs
            name=None,
        ).remote(slot.name, opts.warm_models, max(1, gpus))
        slot.ready_ref = slot.handle.info.remote()
        slot.ready = slot.busy = slot.dead = False
        slot.loaded = []
        slot.pid = None

    def _check_ready(self, slot: _Slot, timeout: float = 0) -> bool:
        import ray

        if slot.ready or slot.dead:
            return slot.ready
        done, _ = ray.wait([slot.ready_ref], timeout=timeout)
        if not done:
            return False
        try:
            info = ray.get(slot.ready_ref)
        except Exception:
            log.exception("Ray actor %s did not start", slot.name)
            slot.dead = True
            return False
        slot.ready, slot.pid, slot.torch_threads = True, info["pid"], info.get("torch_threads")
        slot.gpus = list(info.get("gpus") or [])
        return True

    def _wait_ready(self) -> None:
        """All actors up, or at least one when ``start_timeout`` ends: the others (waiting for a GPU the autoscaler
        may add) take jobs once they are up."""
        deadline = time.monotonic() + self.options.start_timeout
        for slot in self.slots:
            self._check_ready(slot, max(0.0, deadline - time.monotonic()))
        late = [s.name for s in self.slots if not s.ready]
        if len(late) == len(self.slots):
            raise RuntimeError(
                f"kinema worker --ray: no actor started within {self.options.start_timeout:g} s (does the cluster "
                "have the GPUs and CPUs asked for? see --gpu-actors, --cpu-actors, --gpus-per-job)"
            )
        if late:
            log.warning("Ray actors not up yet (waiting for resources): %s", ", ".join(late))

    def stop(self, graceful: bool = True, timeout: float | None = None) -> None:
        super().stop(graceful, timeout)
        import ray

        live = [s.handle for s in self.slots if s.handle is not None and s.ready and not s.dead]
        with contextlib.suppress(Exception):  # their temporary folders; a dead or stuck actor is just killed
            ray.get([h.shutdown.remote() for h in live], timeout=5)
        for slot in self.slots:
            if slot.handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle, no_restart=True)
        if self._owns_ray:
            ray.shutdown()

    # -- claiming -------------------------------------------------------------------------------------------
    def may_claim(self) -> bool:
        """An actor is free whose placement no claimed job is already waiting for: leasing a job no actor can take
        soon would only delay it (another driver might have run it)."""
        with self.cond:
            for slot in self.slots:
                if not slot.busy and self._check_ready(slot) and self.waiting[slot.placement] == 0:
                    return True
        return False

    def placement(self, backend: str) -> str:
        found = self._placements.get(backend)
        if found is None:
            found = self._placements[backend] = placement_of(backend, self.options.gpu_backends)
        if found == GPU and not any(s.placement == GPU for s in self.slots):
            return CPU  # no GPU actors at all: a local model runs on a CPU actor (slowly) rather than never
        return found

    def _acquire(self, placement: str, key: str, ctx: AttemptContext) -> _Slot:
        """A free actor of ``placement``: one with ``key`` loaded, else an empty one, else the least recently used.
        Waits (the job's lease kept by the heartbeats) until one is free; raises Cancelled if the job is stopped."""
        with self.cond:
            self.waiting[placement] += 1
            try:
                while True:
                    if ctx.token.cancelled or ctx.lost:
                        raise Cancelled("stopped while waiting for a Ray actor")
                    free = [s for s in self.slots if s.placement == placement and not s.busy and self._check_ready(s)]
                    if free:
                        slot = min(free, key=lambda s: (key not in s.loaded, bool(s.loaded), s.last_used))
                        slot.busy = True
                        return slot
                    self.cond.wait(0.1)
            finally:
                self.waiting[placement] -= 1

    def _give_back(self, slot: _Slot) -> None:
        with self.cond:
            slot.busy = False
            slot.last_used = time.monotonic()
            if slot.dead:
                import ray

                with contextlib.suppress(Exception):
                    ray.kill(slot.handle, no_restart=True)
                if not self._stopping.is_set():
                    log.warning("Ray actor %s died; starting a new one", slot.name)
                    self._spawn(slot)
            self.cond.notify_all()

    # -- running --------------------------------------------------------------------------------------------
    def _run_on_actor(self, ctx: AttemptContext) -> None:
        """The ``video`` kind's runner: generate on an actor, publish here (like ``video_job.run_video_job``)."""
        job = ctx.job
        key = model_key(job)
        placement = self.placement(key.split("/", 1)[0])
        slot = self._acquire(placement, key, ctx)
        try:
            with self.cond:
                self.history.append((job.id, slot.name, placement, slot.pid))
                slot.jobs += 1
            out = self._drive(slot, ctx, key)
            with self.cond:  # the actor's own account: what it has loaded now
                slot.loaded = list(out["loaded"])
        finally:
            self._give_back(slot)
        self._publish(ctx, out)

    def _drive(self, slot: _Slot, ctx: AttemptContext, key: str) -> dict[str, Any]:
        """Start the job on the actor and relay until it ends: progress and task ids in, cancellation out."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        job, actor = ctx.job, slot.handle
        ref = actor.run.remote(job.id, ctx.attempt, job.request, key, job.provider_task_id, self.resume_info(ctx))
        cancel_sent = False
        while True:
            done, _ = ray.wait([ref], timeout=self.options.poll_interval)
            if ctx.poll_now.is_set():  # a provider callback (here, or via the store's hint): the actor polls now
                ctx.poll_now.clear()
                actor.poll_now.remote(job.id)
            if (ctx.token.cancelled or ctx.lost) and not cancel_sent:
                # a lost lease keeps the provider's task: the attempt that owns the job now resumes it
                actor.cancel.remote(job.id, ctx.lost or ctx.token.keep_provider_task)
                cancel_sent = True
            if not done:
                try:
                    state = ray.get(actor.poll.remote(job.id), timeout=30)
                except (RayError, GetTimeoutError):
                    state = None  # a dead actor: the run's own result says so at the next wait
                if state:
                    self._relay(ctx, actor, state)
                continue
            try:
                out = dict(ray.get(ref))
            except RayTaskError as exc:  # an error outside the generation (a bug in the actor): the job fails
                cause = getattr(exc, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise
            except RayError as exc:  # the actor died (killed, OOM, node lost): leave the job to its lease
                slot.dead = True
                ctx.lost = True  # no heartbeats, no writes: the lease expires, the reaper re-queues, a crash counted
                log.warning(
                    "job %s: Ray actor %s died (%s); the job is re-queued when its lease expires",
                    job.id,
                    slot.name,
                    type(exc).__name__,
                )
                raise WorkerLost(f"Ray actor {slot.name} died") from exc
            if "error" in out:  # the job's own error, raised here as itself: Cancelled, ProviderError (retried)...
                error = unpack_error(out["error"])
                if not isinstance(error, KinemaError):
                    log.warning("job %s failed on Ray actor %s:\n%s", job.id, slot.name, out["error"]["traceback"])
                raise error
            return out

    def resume_info(self, ctx: AttemptContext) -> dict[str, Any]:
        """What the actor's ``run()`` gets as ``resume_info``: the job's client token (providers that take one find
        a lost submit by it, as in ``run_video_job``), its provider info and the remote hooks that are data (the
        callback URL, the unconfirmed-submit flag); the actor adds its relays for the submitting mark and poll-now."""
        from ..backends.remote import ON_SUBMITTING, POLL_NOW
        from .video_job import remote_hooks

        hooks = {k: v for k, v in remote_hooks(ctx).items() if k not in (ON_SUBMITTING, POLL_NOW)}
        return {"client_token": ctx.job.id, **(ctx.job.provider_info or {}), **hooks}

    def _relay(self, ctx: AttemptContext, actor: Any, state: dict[str, Any]) -> None:
        marked = state.get("submitting")
        if marked and ctx.extra.get("submit_seq") != marked[0]:  # once per mark, though polls may see it twice
            ctx.extra["submit_seq"] = marked[0]
            try:
                ctx.on_submitting(bool(marked[1]))
                ok = True
            except Cancelled:
                ok = False
            actor.ack_submitting.remote(ctx.job.id, marked[0], ok)
        if state.get("progress"):
            p = state["progress"]
            ctx.progress(
                ProgressEvent(
                    p["stage"], p["step"], p["total"], p["fraction"], p["eta"], p.get("message"), p.get("info") or {}
                )
            )
        if state.get("task"):
            task_id, info = state["task"]
            try:
                ctx.on_task_id(task_id, info)
                ok = True
            except Cancelled:
                ok = False
            actor.ack_task.remote(ctx.job.id, ok)

    def _publish(self, ctx: AttemptContext, out: dict[str, Any]) -> None:
        """Write the actor's files to the work dir and complete the job, publishing them in the same transaction."""
        work = self.config.work_dir / f"{ctx.job.id}.a{ctx.attempt}.{self.name_slug}.mp4"
        thumb_work = work.with_suffix(".png")
        work.write_bytes(out["video"])
        thumb_work.write_bytes(out["thumbnail"])
        if out.get("sidecar") is not None:
            Path(str(work) + ".json").write_bytes(out["sidecar"])
        publish_outputs(ctx, work, thumb_work, out["summary"])

    def start_info(self, store: str) -> dict[str, Any]:
        """What ``kinema worker --ray`` serves, once the actors are up: its start line's facts (``--json``)."""
        return {
            "store": store,
            "ray": True,
            "gpu_actors": sum(s.placement == GPU for s in self.slots),
            "gpus_per_job": self.gpus_per_job,
            "cpu_actors": sum(s.placement == CPU for s in self.slots),
            "lease_seconds": self.config.lease_seconds,
            "kinds": sorted(self.kinds),
        }

    def start_line(self, store: str) -> str:
        """``kinema worker: Ray, 2 GPU actors + 4 CPU actors (video) on STORE, lease 30 s`` (``2 GPU actors of 4
        GPUs`` with ``--gpus-per-job 4``)."""
        i = self.start_info(store)
        each = f" of {i['gpus_per_job']} GPUs" if i["gpus_per_job"] > 1 else ""
        return (
            f"kinema worker: Ray, {i['gpu_actors']} GPU actor{'s' if i['gpu_actors'] != 1 else ''}{each} + "
            f"{i['cpu_actors']} CPU actor{'s' if i['cpu_actors'] != 1 else ''} ({', '.join(i['kinds'])}) on "
            f"{store}, lease {i['lease_seconds']:g} s"
        )

    def describe(self) -> dict[str, Any]:
        """The actors: name, placement, pid, the GPU ids Ray gave it, what each has loaded, jobs handed to it."""
        with self.cond:
            return {
                s.name: {
                    "placement": s.placement,
                    "pid": s.pid,
                    "gpus": list(s.gpus),
                    "loaded": list(s.loaded),
                    "jobs": s.jobs,
                    "busy": s.busy,
                    "torch_threads": s.torch_threads,
                }
                for s in self.slots
            }


def run_ray_worker_process(
    config: ServiceConfig,
    options: RayOptions,
    *,
    senders: bool = True,
    on_start: Callable[[RayWorkerPool], None] | None = None,
) -> int:
    """``kinema worker --ray``: a :class:`RayWorkerPool` until SIGTERM/SIGINT (first: finish running jobs; second:
    abort and release them). Exit code 0 after a graceful stop, 1 after an abort. ``on_start(pool)`` is called
    once the actors are up (the CLI prints what it serves then)."""
    from .stores import open_store
    from .worker import run_worker_process

    pool = RayWorkerPool(open_store(config.store_location), config, options)
    return run_worker_process(config, senders=senders, pool=pool, on_start=on_start)  # type: ignore[arg-type]
