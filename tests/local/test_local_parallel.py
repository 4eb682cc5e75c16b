"""One video split over several processes (context parallelism), run here as CPU ranks with gloo on the tiny Wan.

The split run must give the single-process frames; bad settings are refused before any rank starts; a cancel stops
every rank; a killed rank stops the group and fails the run instead of leaving it hanging.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kinema
from kinema.backends import get_backend
from kinema.backends.base import CancelToken
from kinema.backends.parallel import check_parallel, parse_parallel
from kinema.builtin.evaluate import psnr
from kinema.errors import Cancelled, InvalidRequest, RankLost
from kinema.launch import launch
from kinema.video import Video

Tiny = Callable[[str], Path]


def request(tiny_checkpoint: Tiny, steps: int = 2, **options: Any) -> kinema.VideoRequest:
    return kinema.VideoRequest(
        prompt="a red ball on the sea",
        backend="diffusers",
        model=str(tiny_checkpoint("wan-t2v")),
        width=32,
        height=32,
        num_frames=5,
        num_inference_steps=steps,
        seed=7,
        options={"device": "cpu", "max_sequence_length": 32, **options},
    )


def test_ulysses_2_gives_the_single_process_frames(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    single = kinema.run(request(tiny_checkpoint), output=tmp_path / "one.png")
    events: list[Any] = []
    run = launch(request(tiny_checkpoint, ulysses=2), gpus=2, output=tmp_path / "two.png", on_progress=events.append)
    assert run.path is not None and Path(run.path).exists()
    split = Video.open(run.path).frames.astype(np.int16)
    assert np.abs(split - single.video.frames.astype(np.int16)).max() <= 1  # equal up to float rounding
    assert run.recipe["options"]["ulysses"] == 2  # the split is part of the recipe
    assert [e.step for e in events if e.stage == "denoising"] == [1, 2]  # rank 0 alone reports


def test_cancel_reaches_every_rank(tiny_checkpoint: Tiny) -> None:
    token = CancelToken()
    started = time.monotonic()

    def on_progress(event: Any) -> None:
        if event.stage == "denoising":
            token.cancel()

    with pytest.raises(Cancelled):
        launch(request(tiny_checkpoint, steps=50, ulysses=2), gpus=2, on_progress=on_progress, cancel=token)
    assert time.monotonic() - started < 120


def test_a_killed_rank_stops_the_group(tiny_checkpoint: Tiny) -> None:
    import multiprocessing

    killed: list[int] = []

    def kill_a_rank_once_denoising(event: Any) -> None:
        if event.stage == "denoising" and not killed:
            ranks = [p for p in multiprocessing.active_children() if p.pid is not None]
            killed.append(ranks[-1].pid)  # type: ignore[arg-type]
            os.kill(ranks[-1].pid, signal.SIGKILL)  # type: ignore[arg-type]

    with pytest.raises(RankLost, match="rank"):  # a death, not the model's own failure: worth another attempt
        launch(request(tiny_checkpoint, steps=200, ulysses=2), gpus=2, on_progress=kill_a_rank_once_denoising)
    assert killed
    assert not multiprocessing.active_children(), "the other rank was stopped too"


diffusers = pytest.importorskip("diffusers")
_Wan = diffusers.WanTransformer3DModel  # the real classes: whether a plan exists is the installed diffusers' to say
_Hunyuan = diffusers.HunyuanVideoTransformer3DModel


def opts(**kw: Any) -> dict[str, Any]:
    out = {"ulysses": 1, "ring": 1, "offload": "none", "attention": "sdpa", **kw}
    parse_parallel(out)
    return out


@pytest.mark.parametrize(
    ("cls", "config", "options", "group", "field", "allowed"),
    [
        (_Wan, {"num_attention_heads": 12}, {"ulysses": 3}, 2, "options.ulysses", "product is 2"),
        (_Wan, {"num_attention_heads": 12}, {"ulysses": 5}, 5, "options.ulysses", "divisor of 12"),
        (_Hunyuan, {"num_attention_heads": 24}, {"ulysses": 2}, 2, "options.ulysses", "Wan or LTX"),
        (_Wan, {"num_attention_heads": 12}, {"ulysses": 2, "offload": "model"}, 2, "options.offload", "none"),
        (_Wan, {"num_attention_heads": 12}, {"ring": 2, "attention": "sage"}, 2, "options.attention", "sdpa"),
        (_Wan, {"num_attention_heads": 12}, {"ring": 2}, 2, "options.attention", "flash or flash3"),
        (_Wan, {"num_attention_heads": 12}, {"ulysses": 2, "ring": 2}, 4, "options.attention", "flash or flash3"),
        (_Wan, {"num_attention_heads": 12}, {"ulysses_anything": True}, 1, "options.ulysses_anything", "ulysses=N"),
        (_Wan, {"num_attention_heads": 12}, {"ulysses": "two"}, 2, "options.ulysses", "integer"),
    ],
)
def test_bad_parallel_settings_are_refused(
    cls: Any, config: dict[str, Any], options: dict[str, Any], group: int, field: str, allowed: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_parallel(cls, config, opts(**options), group)
    assert info.value.field == field and allowed in str(info.value.allowed)


def test_ulysses_anything_lifts_the_head_rule() -> None:
    check_parallel(_Wan, {"num_attention_heads": 12}, opts(ulysses=5, ulysses_anything=True), 5)


def test_launch_refuses_a_mismatched_group_before_starting(tiny_checkpoint: Tiny) -> None:
    with pytest.raises(InvalidRequest) as info:
        launch(request(tiny_checkpoint, ulysses=2), gpus=4)
    assert info.value.field == "options.ulysses"


# -- the job service's split worker (kinema worker --gpus-per-job N) ------------------------------------------------


def _service(tmp_path: Path, **overrides: Any) -> tuple[Any, Any]:
    from kinema.service.config import ServiceConfig
    from kinema.service.store import Store

    cfg = ServiceConfig(
        data_dir=tmp_path / "data",
        workers=1,
        lease_seconds=30.0,
        heartbeat_seconds=0.5,
        reap_interval=0.5,
        warm_up=False,
        gpus_per_job=2,
        **overrides,
    )
    cfg.ensure_dirs()
    return cfg, Store(cfg.db_path)


def _wait(store: Any, job_id: str, done: Callable[[Any], bool], timeout: float = 240.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if done(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {store.get(job_id).status}")


def test_a_split_worker_runs_a_diffusers_job_over_its_group(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    from kinema.service.worker import WorkerPool

    cfg, store = _service(tmp_path)
    single = Video.open(kinema.run(request(tiny_checkpoint), output=tmp_path / "one.mp4").path).frames  # type: ignore[arg-type]
    backend: Any = get_backend("diffusers")
    assert backend._loaded is not None  # this process now holds the model, as after a worker's unsplit job
    asked = request(tiny_checkpoint).model_dump(mode="json", exclude_none=True)
    job = store.submit_job(owner="o", request=asked, summary={})
    pool = WorkerPool(store, cfg, threads=1)
    pool.start(housekeeping=False)
    try:
        done = _wait(store, job.id, lambda j: j.status in ("completed", "failed"))
    finally:
        pool.stop()
    assert done.status == "completed", done.error
    assert done.result["recipe"]["options"]["ulysses"] == 2  # split over the worker's group, recorded
    served = Video.open(done.output_path).frames
    # the single-process frames, both through the same MP4 encoder (the split equals them up to float rounding)
    assert psnr(served, single) > 40
    assert pool.gpu_groups is not None and pool.gpu_groups.qsize() == 1  # the group is free again
    # the ranks loaded their own copies; the one held here was let go before they started, not kept beside them
    assert backend._loaded is None


def test_a_split_run_frees_a_pipeline_held_on_its_gpus_only(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    """A group actor kept an unsplit job's pipeline on its first GPU while a split job's rank 0 loaded another."""
    import dataclasses

    kinema.run(request(tiny_checkpoint), output=tmp_path / "one.mp4")
    backend: Any = get_backend("diffusers")
    held = backend._loaded
    for device, gpus, freed in (
        ("cuda:1", [2, 3], False),
        ("cpu", [0, 1], False),
        ("cuda", [0, 1], True),  # bare "cuda" is device 0
        ("cuda:3", [2, 3], True),
        ("cpu", None, True),  # None: wherever it is (CPU ranks)
    ):
        backend._loaded = dataclasses.replace(held, key=(*held.key[:2], device, *held.key[3:]))
        assert backend.release(gpus) is freed, (device, gpus)
        assert (backend._loaded is None) is freed
    assert backend.release(None) is False  # nothing held


def test_a_rank_killed_under_a_service_job_is_retried(tiny_checkpoint: Tiny, tmp_path: Path) -> None:
    import multiprocessing

    from kinema.service.worker import WorkerPool

    cfg, store = _service(tmp_path, retry_backoff=0.1)
    asked = request(tiny_checkpoint, steps=60).model_dump(mode="json", exclude_none=True)
    job = store.submit_job(owner="o", request=asked, summary={}, max_attempts=3)
    pool = WorkerPool(store, cfg, threads=1)
    pool.start(housekeeping=False)
    try:
        _wait(store, job.id, lambda j: j.progress > 0)
        ranks = [p for p in multiprocessing.active_children() if p.pid is not None]
        assert len(ranks) >= 2
        os.kill(ranks[-1].pid, signal.SIGKILL)  # type: ignore[arg-type]
        done = _wait(store, job.id, lambda j: j.status in ("completed", "failed"))
    finally:
        pool.stop()
    assert done.status == "completed" and done.attempts == 2, (done.status, done.error)
    first = store.attempts_of(job.id)[0]
    assert first["outcome"] == "retry" and "rank" in str(first.get("error"))  # RankLost: retried, not failed


def test_a_group_actor_reports_the_pipeline_a_split_run_freed(
    tiny_checkpoint: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver prefers an actor that reports the job's model loaded; after a split run freed it, the actor must
    not report it still there. The actor class run in this process (Ray only wraps it), on CPU ranks."""
    pytest.importorskip("ray")
    import kinema.service.ray_workers as ray_workers

    asked = request(tiny_checkpoint).model_dump(mode="json", exclude_none=True)
    real_split = ray_workers.split_request
    unsplit = iter([True, False])  # the first job as one the split cannot take (an edit, say), then a split one
    monkeypatch.setattr(ray_workers, "split_request", lambda req, n: None if next(unsplit) else real_split(req, n))
    actor = ray_workers.KinemaActor("gpu-0", warm_models=2, gpus=2)
    try:
        first = actor.run("j1", 1, asked, "diffusers/tiny", None, {})
        assert "error" not in first, first.get("error")
        assert first["loaded"] == ["diffusers/tiny"]
        backend: Any = get_backend("diffusers")
        assert backend._loaded is not None
        second = actor.run("j2", 1, asked, "diffusers/tiny", None, {})
        assert "error" not in second, second.get("error")
        assert second["summary"]["recipe"]["options"]["ulysses"] == 2  # it was split
        assert second["loaded"] == [] and backend._loaded is None
    finally:
        actor.shutdown()
