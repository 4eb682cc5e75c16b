"""Fixtures of the Ray worker tests: one local Ray per test session (2 CPUs, 2 logical GPUs), a config on a temp
data dir, a store (SQLite, or a fresh PostgreSQL database) and a started :class:`RayWorkerPool`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from kinema.service.config import ServiceConfig  # noqa: E402
from kinema.service.ray_workers import RayOptions, RayWorkerPool  # noqa: E402
from kinema.service.stores import Store, open_store  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # ray_fake_backend, as KINEMA_EXTRA_BACKENDS names it (a top-level module)


@pytest.fixture(scope="session")
def ray_session(builtin_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Ray started once for the session; yields the fake backend's log file (truncated by each test)."""
    log = tmp_path_factory.mktemp("ray") / "fake.log"
    env = {
        # the actors are processes of their own: they import the fake backend and see the same weights and log
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "KINEMA_EXTRA_BACKENDS": "fakelocal=ray_fake_backend:FakeLocalBackend",
        "KINEMA_BUILTIN_WEIGHTS": os.environ.get("KINEMA_BUILTIN_WEIGHTS", str(builtin_weights)),
        "KINEMA_RAY_LOG": str(log),
        "KINEMA_FAKE_STEP_DELAY": "0.05",
        "HF_HUB_OFFLINE": "1",
    }
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})  # the driver (this process) too
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        yield log
    finally:
        ray.shutdown()


@pytest.fixture
def fake_log(ray_session: Path) -> Path:
    ray_session.write_text("")
    return ray_session


def make_config(tmp_path: Path, **overrides: Any) -> ServiceConfig:
    base: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        workers=1,
        lease_seconds=2.0,
        heartbeat_seconds=0.2,
        reap_interval=0.2,
        shutdown_grace=5.0,
        webhook_secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    base.update(overrides)
    return ServiceConfig(**base)


@pytest.fixture
def config(tmp_path: Path) -> ServiceConfig:
    cfg = make_config(tmp_path)
    cfg.ensure_dirs()
    return cfg


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server (tests/service/pg.py), once per session; skipped where it cannot run."""
    sys.path.insert(0, str(HERE.parent / "service"))
    import pg

    reason = pg.why_not()
    if reason:
        pytest.skip(reason)
    server = pg.start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, config: ServiceConfig) -> Iterator[Store]:
    if request.param == "sqlite":
        st = open_store(config.store_location)
        yield st
        st.close()
        return
    server = request.getfixturevalue("pg_server")
    url = server.new_database("ray")
    st = open_store(url)
    try:
        yield st
    finally:
        st.close()
        server.drop_database(url)


@pytest.fixture
def start_pool(ray_session: Path, store: Store, config: ServiceConfig) -> Iterator[Callable[..., RayWorkerPool]]:
    """Start a pool on the store (2 GPU actors without CPUs of their own, 2 CPU actors of half a CPU)."""
    pools: list[RayWorkerPool] = []

    def start(**options: Any) -> RayWorkerPool:
        opts = dict(gpu_actors=2, cpu_actors=2, cpus_per_gpu_actor=0.0, cpus_per_cpu_actor=0.5, start_timeout=120)
        opts.update(options)
        pool = RayWorkerPool(store, config, RayOptions(**opts))
        pool.start()
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop(graceful=False, timeout=10)


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Wan of tests/local/tiny_checkpoints.py, in the diffusers layout, built once per session
    (the actors load it from this folder, as a node reads a pulled model)."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    import importlib.util

    # by its path: tests/local is not a package, and putting it on sys.path would expose its conftest by name
    spec = importlib.util.spec_from_file_location("tiny_checkpoints", HERE.parent / "local" / "tiny_checkpoints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.build("wan-t2v", tmp_path_factory.mktemp("tiny-wan") / "wan-t2v")
    return path
