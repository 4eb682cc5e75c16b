"""``kinema worker --ray --gpus-per-job N``: a diffusers job split over a group actor's GPUs on Ray.

One local Ray for the session (2 CPUs, 2 logical GPUs, tests/cluster/conftest.py): the pool starts one group actor
holding both logical GPUs; without CUDA its ranks are gloo CPU processes on the tiny Wan. A killed rank gives a
second attempt, completed, whose frames equal the single-process ones and whose recipe records the split; a killed
actor takes its ranks with it and the job runs again on a new one (completing such a retry is
test_ray_workers.py's); a cancel ends every rank; a group no node can hold is refused at start. Each launch starts
rank processes that import torch and diffusers, so the tests share one pool and as few launches as they can.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kinema
from kinema import VideoRequest, plan
from kinema.builtin.evaluate import psnr
from kinema.errors import InvalidRequest
from kinema.service.ray_workers import RayOptions, RayWorkerPool
from kinema.service.stores import Store, open_store
from kinema.video import Video

from .conftest import make_config

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the ranks through /proc")


def wan_request(tiny_wan: Path, steps: int = 2) -> dict[str, Any]:
    return {
        "prompt": "a red ball on the sea",
        "backend": "diffusers",
        "model": str(tiny_wan),
        "width": 32,
        "height": 32,
        "num_frames": 5,
        "num_inference_steps": steps,
        "seed": 7,
        "format": "mp4",
        "options": {"max_sequence_length": 32},
    }


def submit(store: Store, request: dict[str, Any]) -> str:
    plan(VideoRequest(**request))  # as the API checks it
    return store.submit_job(owner="t", request=request, summary={"backend": "diffusers"}, max_attempts=3).id


def wait_for(store: Store, job_id: str, done: Callable[[Any], bool], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job is not None and done(job):
            return job
        time.sleep(0.1)
    job = store.get(job_id)
    raise AssertionError(f"job {job_id}: {job and (job.status, job.progress, job.error)} after {timeout} s")


def finished(job: Any) -> bool:
    return job.status in ("completed", "failed", "cancelled")


def ranks_of(pid: int | None) -> list[int]:
    """The live rank processes an actor started (``kinema.launch`` spawns them: ``multiprocessing.spawn``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while still := [p for p in pids if alive(p)]:
        assert time.monotonic() < deadline, f"processes {still} still run after {timeout} s"
        time.sleep(0.1)


def wait_ranks(pid: int | None, count: int, timeout: float = 30) -> list[int]:
    """Wait until the actor has exactly ``count`` ranks (0: all gone)."""
    deadline = time.monotonic() + timeout
    while (found := ranks_of(pid)) and len(found) != count or not found and count:
        if time.monotonic() > deadline:
            raise AssertionError(f"actor {pid}: ranks {found}, expected {count}")
        time.sleep(0.1)
    return found


@pytest.fixture(scope="module")
def group_pool(ray_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RayWorkerPool, Store]]:
    """A pool with one group actor holding both logical GPUs (``gpus_per_job=2``) and no CPU actors, shared by the
    module's tests (an actor, and its first plan, take seconds to start)."""
    config = make_config(tmp_path_factory.mktemp("group"), gpus_per_job=2, retry_backoff=0.1)
    config.ensure_dirs()
    store = open_store(config.store_location)
    pool = RayWorkerPool(store, config, RayOptions(cpu_actors=0, cpus_per_gpu_actor=0.0, start_timeout=120))
    pool.start()
    try:
        yield pool, store
    finally:
        pool.stop(graceful=False, timeout=10)
        store.close()


def test_a_split_job_survives_a_killed_rank_and_gives_the_single_process_frames(
    group_pool: tuple[RayWorkerPool, Store], tiny_wan: Path, tmp_path: Path
) -> None:
    pool, store = group_pool
    job_id = submit(store, wan_request(tiny_wan, steps=40))
    wait_for(store, job_id, lambda j: j.progress > 0 and j.stage == "denoising")  # relayed from rank 0
    actors = pool.describe()
    assert list(actors) == ["gpu-0"] and len(actors["gpu-0"]["gpus"]) == 2, actors  # one actor, both GPUs
    actor = actors["gpu-0"]["pid"]
    ranks = wait_ranks(actor, 2)
    os.kill(ranks[-1], signal.SIGKILL)
    single = kinema.run(VideoRequest(**wan_request(tiny_wan, steps=40)), output=tmp_path / "one.mp4")  # meanwhile
    job = wait_for(store, job_id, finished, timeout=150)
    assert job.status == "completed" and job.attempts == 2, (job.status, job.error)
    first, second = store.attempts_of(job_id)
    assert first["outcome"] == "retry" and "rank" in str(first.get("error")), first  # RankLost: retried
    assert second["outcome"] == "completed" and job.crashes == 0
    recipe = job.result["recipe"]
    assert recipe["options"]["ulysses"] == 2 and recipe["seed"] == 7, recipe["options"]  # the split, recorded
    # both through the same MP4 encoder (the split equals the single process up to float rounding, as in
    # tests/local/test_local_parallel.py)
    served = Video.open(job.output_path).frames
    assert served.shape == single.video.frames.shape
    assert psnr(served, Video.open(single.path).frames) > 40  # type: ignore[arg-type]
    assert job.thumbnail_path and Path(job.thumbnail_path).stat().st_size > 0
    assert not ranks_of(actor), "no rank of either attempt left"


def test_a_killed_group_actor_takes_its_ranks_and_a_cancel_ends_every_rank(
    group_pool: tuple[RayWorkerPool, Store], tiny_wan: Path
) -> None:
    pool, store = group_pool
    job_id = submit(store, wan_request(tiny_wan, steps=400))
    slot = pool.slots[0]
    killed = slot.pid
    ranks = wait_ranks(killed, 2, timeout=60)  # the job is on the actor: its ranks are starting
    # the OOM killer's way, not ray.kill (whose exit path kills the actor's children itself): nothing of the actor
    # runs to stop its ranks, so each rank must see its launcher gone
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    wait_gone(ranks, timeout=10)
    # the lease expires, the reaper re-queues the job (a crash counted), a new actor runs it again
    job = wait_for(store, job_id, lambda j: j.attempts == 2 and j.progress > 0 and j.stage == "denoising", timeout=150)
    assert job.crashes == 1 and [a["outcome"] for a in store.attempts_of(job_id)][0] == "lost"
    actor = pool.slots[0].pid
    assert actor != killed and len(wait_ranks(actor, 2)) == 2
    store.request_cancel(job_id, "t")
    job = wait_for(store, job_id, finished, timeout=60)
    assert job.status == "cancelled", (job.status, job.error)
    assert job.progress < 99, "cancelled mid-run, not after the last step"
    wait_ranks(actor, 0, timeout=10)  # every rank stopped (at the same step: none waits in a collective)


def test_a_group_no_node_can_hold_is_refused_at_start(ray_session: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, gpus_per_job=4)  # the session's one node has 2 logical GPUs
    store = open_store(config.store_location)
    try:
        with pytest.raises(InvalidRequest) as info:
            RayWorkerPool(store, config, RayOptions(cpu_actors=0)).start()
    finally:
        store.close()
    assert info.value.field == "gpus_per_job" and "the most on one node: 2" in str(info.value), str(info.value)
    assert ray.is_initialized(), "a pool that did not start Ray leaves it running"


def test_ranks_exit_when_their_launcher_is_killed(tiny_wan: Path, tmp_path: Path) -> None:
    """The launcher's side of "an actor that dies takes its ranks with it", outside Ray (whose own clean-up of a
    dead worker's children would hide it): a launcher killed while its ranks start cannot stop them (torch's
    parent-death signal is set only once a rank's bootstrap is done), so each rank must leave by itself."""
    out = tmp_path / "never.mp4"
    request = VideoRequest(
        **{**wan_request(tiny_wan, steps=3), "options": {"max_sequence_length": 32, "ulysses": 2, "device": "cpu"}}
    )
    code = (
        "import sys; from kinema import VideoRequest; from kinema.launch import launch; "
        "launch(VideoRequest.model_validate_json(sys.argv[1]), gpus=2, output=sys.argv[2])"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", code, request.model_dump_json(), str(out)], stderr=subprocess.DEVNULL
    )
    try:
        ranks = wait_ranks(launcher.pid, 2, timeout=60)
    finally:
        launcher.kill()
        launcher.wait()
    wait_gone(ranks, timeout=90)
    assert not out.exists(), "the ranks ran the request with nobody to hand it to"
