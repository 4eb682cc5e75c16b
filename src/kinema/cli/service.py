"""``kinema serve``, ``kinema worker``, ``kinema keys`` and ``kinema jobs``: the job service from the command line.

kinema keys create --name ci          # prints the new key once
kinema serve --port 8000 --workers 1  # API + in-process workers
kinema worker --workers 2             # more workers, same data dir, another process
kinema jobs retry video_...           # queue a failed job again
kinema status --json                  # the store, the queue, running, failed and quarantined jobs
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the job store and outputs live (default: the platform's user-data dir, or KINEMA_DATA_DIR).",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="The job store: postgresql://... for many replicas and workers (default: "
        "KINEMA_DATABASE_URL, else SQLite in the data dir; docs/cluster.md).",
    ),
]


def _config(data_dir: Path | None, **kwargs: Any) -> Any:
    from ..service.config import ServiceConfig, default_data_dir

    return ServiceConfig(data_dir=data_dir or default_data_dir(), **kwargs)


@contextlib.contextmanager
def _key_store(data_dir: Path | None, database_url: str | None = None) -> Iterator[Any]:
    """The job store the ``keys`` and ``jobs`` commands act on (``--database-url``, else ``KINEMA_DATABASE_URL``,
    else the data dir's), closed after use (a PostgreSQL pool left to the garbage collector warns)."""
    from ..service.stores import open_store

    cfg = _config(data_dir, database_url=database_url)
    cfg.ensure_dirs()
    store = open_store(cfg.store_location)
    try:
        yield store
    finally:
        store.close()


def _need_server_extra() -> None:
    import importlib.util

    from ..backends.base import require_module

    # python-multipart's new name; importing the old one ("multipart") warns that it is deprecated
    form = "python_multipart" if importlib.util.find_spec("python_multipart") else "multipart"
    for module in ("fastapi", "uvicorn", form, "httpx", "PIL"):
        require_module(module, "server")


def _check_limits(max_header_bytes: int, header_timeout: float, body_timeout: float) -> None:
    from ..errors import InvalidRequest

    if max_header_bytes < 1024:
        raise InvalidRequest(
            "--max-header-bytes",
            f"must be at least 1024, got {max_header_bytes}",
            allowed="1024 or more (a request line and a few headers need that much)",
        )
    for name, value in (("--header-timeout", header_timeout), ("--body-timeout", body_timeout)):
        if not value > 0:
            raise InvalidRequest(name, f"must be more than 0 seconds, got {value:g}", allowed="a positive number")


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option("--workers", help="In-process workers (0: only accept jobs).")] = 1,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Allow requests without an API key (loopback only).")
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host", help="Trust this internal host or CIDR for input images and webhooks (repeatable)."
        ),
    ] = None,
    max_queued: Annotated[int, typer.Option("--max-queued", help="Queued jobs before new ones get 429.")] = 1000,
    max_header_bytes: Annotated[
        int, typer.Option("--max-header-bytes", help="Request line and headers, in bytes; more gets 431.")
    ] = 32 * 2**10,
    header_timeout: Annotated[
        float, typer.Option("--header-timeout", help="Seconds a client has to send a request's headers (then 408).")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option("--body-timeout", help="Seconds a client has to send a request's body (then 408).")
    ] = 60.0,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request (costs CPU per request).")
    ] = False,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="This service's public base URL: providers that can are asked to call "
            "it back when a task changes, so jobs finish without waiting for the next poll.",
        ),
    ] = None,
) -> None:
    """Run the HTTP job service (OpenAI-style /v1/videos API) with a pool of workers."""
    from .console import err, fail

    try:
        _need_server_extra()
        from ..service.config import is_loopback_host

        if no_auth and not is_loopback_host(host):
            from ..errors import InvalidRequest

            raise InvalidRequest(
                "--no-auth",
                f"is only allowed when bound to loopback, not {host!r}",
                allowed="--host 127.0.0.1, ::1 or localhost",
            )
        if workers < 0:
            from ..errors import InvalidRequest

            raise InvalidRequest("--workers", f"must be 0 or more, got {workers}")
        _check_limits(max_header_bytes, header_timeout, body_timeout)
        import uvicorn

        from ..service.app import create_app
        from ..service.limits import uvicorn_options

        cfg = _config(
            data_dir,
            database_url=database_url,
            auth=not no_auth,
            workers=workers,
            allow_hosts=tuple(allow_host or ()),
            max_queued=max_queued,
            max_header_bytes=max_header_bytes,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
        )
        if public_url is not None:
            from ..errors import InvalidRequest
            from ..service.config import check_public_url

            try:
                cfg.public_url = check_public_url(public_url)
            except InvalidRequest as exc:
                raise InvalidRequest(
                    "--public-url", exc.message.removeprefix("public_url: "), allowed=exc.allowed
                ) from None
        app = create_app(cfg)
        err.print(
            f"kinema service on http://{host}:{port}  data: {cfg.root}  workers: {workers}"
            + ("  [no auth]" if no_auth else ""),
            highlight=False,
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=int(cfg.shutdown_grace),
            **uvicorn_options(cfg),
        )
    except Exception as exc:
        fail(exc)


def worker(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option("--workers", help="Jobs run at once by this process.")] = 1,
    lease: Annotated[
        float, typer.Option("--lease", help="Lease length in seconds (heartbeats keep it alive).")
    ] = 30.0,
    allow_host: Annotated[
        list[str] | None,
        typer.Option("--allow-host", help="Trust this internal host or CIDR for webhooks (repeatable)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing at start.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what it serves as one JSON object on stdout instead.")
    ] = False,
    ray: Annotated[
        bool, typer.Option("--ray", help="Run jobs on Ray actors: one per GPU, plus a CPU pool (docs/cluster.md).")
    ] = False,
    address: Annotated[
        str | None, typer.Option("--address", help="With --ray: the Ray cluster to join ('auto': this host's).")
    ] = None,
    gpu_actors: Annotated[
        int | None,
        typer.Option(
            "--gpu-actors",
            help="With --ray: GPU actors (default: one per cluster GPU; with "
            "--gpus-per-job N, each holds N GPUs on one node).",
        ),
    ] = None,
    cpu_actors: Annotated[
        int, typer.Option("--cpu-actors", help="With --ray: CPU actors, for cloud and built-in jobs.")
    ] = 4,
    gpus_per_job: Annotated[
        int,
        typer.Option(
            "--gpus-per-job",
            min=1,
            help="Split each diffusers job over this many GPUs (Ulysses; each --workers loop takes its own group; "
            "with --ray, each GPU actor holds this many GPUs of one node; docs/cluster.md). 1: no split.",
        ),
    ] = 1,
    torch_threads: Annotated[
        int | None,
        typer.Option(
            "--torch-threads",
            min=1,
            help="Threads PyTorch uses in this process (default: OMP_NUM_THREADS, else this machine's usable cores "
            "/ --workers). Several worker processes on one machine: give each cores / processes.",
        ),
    ] = None,
) -> None:
    """Run workers in this process against a service's data dir (SIGTERM: finish or release; twice: abort)."""
    from .console import err, fail

    try:
        _need_server_extra()
        import logging

        from ..service.job_kinds import default_job_kinds
        from ..service.stores import describe_store
        from ..service.worker import apply_torch_threads, default_torch_threads, run_worker_process

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        cfg = _config(
            data_dir,
            database_url=database_url,
            workers=workers,
            lease_seconds=lease,
            gpus_per_job=gpus_per_job,
            heartbeat_seconds=max(0.1, lease / 5),
            reap_interval=max(0.2, min(2.0, lease / 4)),
            allow_hosts=tuple(allow_host or ()),
        )
        threads, kinds = max(1, workers), sorted(default_job_kinds())
        # before any model loads (the pool's warm-up): torch's default, a thread per core for each job at once,
        # made several worker processes on one machine about 10x slower (docs/cluster.md)
        torch_threads = apply_torch_threads(torch_threads or default_torch_threads(threads))
        store = describe_store(cfg.store_location)
        # one line, so an operator (or a supervisor's log) sees which store this process drains, and how hard
        if ray:  # actors, not threads: what it serves is said once they are up (the cluster decides how many)
            from ..service.ray_workers import RayOptions, RayWorkerPool, run_ray_worker_process

            def started(pool: RayWorkerPool) -> None:
                if as_json:
                    sys.stdout.write(json.dumps(pool.start_info(store)) + "\n")
                    sys.stdout.flush()
                elif not quiet:
                    err.print(pool.start_line(store), highlight=False, soft_wrap=True)

            options = RayOptions(address=address, gpu_actors=gpu_actors, cpu_actors=cpu_actors)
            code = run_ray_worker_process(cfg, options, on_start=started)
        elif as_json:
            sys.stdout.write(
                json.dumps(
                    {
                        "store": store,
                        "workers": threads,
                        "lease_seconds": lease,
                        "kinds": kinds,
                        "torch_threads": torch_threads,
                    }
                )
                + "\n"
            )
            sys.stdout.flush()
        elif not quiet:
            err.print(
                f"kinema worker: {threads} worker{'s' if threads != 1 else ''} ({', '.join(kinds)}) on "
                f"{store}, lease {lease:g} s" + (f", torch threads {torch_threads}" if torch_threads else ""),
                highlight=False,
                soft_wrap=True,
            )
        if not ray:
            code = run_worker_process(cfg, threads=threads)
    except Exception as exc:
        fail(exc)
    _exit_past_lingering_threads(code)
    raise typer.Exit(code)


def _exit_past_lingering_threads(code: int) -> None:
    """Exit now when a thread still runs after the pool stopped (a model load that outlived the wait): the
    interpreter's shutdown would abort the process under it (SIGABRT from torch), and every job is already released
    in the store."""
    import logging
    import os
    import threading

    if any(t is not threading.main_thread() and t.is_alive() for t in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


keys_app = typer.Typer(help="API keys of the job service.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    budget: Annotated[
        str | None,
        typer.Option("--budget", help="What the key's paid jobs may cost in all, in USD (10USD); then 402."),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Make an API key; it is printed once and only its hash is stored."""
    from .console import err, fail

    try:
        from ..errors import InvalidRequest
        from ..service.usage import parse_budget

        try:
            limit = parse_budget(budget) if budget is not None else None
        except InvalidRequest as exc:
            raise InvalidRequest("--budget", exc.message.removeprefix("budget: "), allowed=exc.allowed) from None
        with _key_store(data_dir, database_url) as store:
            key_id, secret = store.create_key(name, budget=limit)
    except Exception as exc:
        fail(exc)
    if as_json:
        shown = {"amount": limit[0], "currency": limit[1]} if limit else None
        sys.stdout.write(json.dumps({"id": key_id, "name": name, "key": secret, "budget": shown}) + "\n")
    else:
        sys.stdout.write(secret + "\n")
        err.print(f"key {key_id} created; it is shown only now, store it safely", highlight=False)


@keys_app.command("list")
def keys_list(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List API keys (ids, names, prefixes; never the keys)."""
    from .console import fail, out

    try:
        with _key_store(data_dir, database_url) as store:
            keys = store.list_keys()
    except Exception as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps({"keys": keys}) + "\n")
        return
    from rich.table import Table

    table = Table("id", "name", "prefix", "created", "status", "budget")
    import datetime as _dt

    for k in keys:
        created = _dt.datetime.fromtimestamp(k["created_at"]).isoformat(timespec="seconds")
        budget = f"{k['budget_amount']:g} {k['budget_currency']}" if k.get("budget_amount") is not None else "-"
        table.add_row(
            k["id"], k["name"], k["prefix"] + "…", created, "revoked" if k["revoked_at"] else "active", budget
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see 'kinema keys list').")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an API key; requests with it get 401 within seconds."""
    from ..errors import InvalidRequest
    from .console import err, fail

    try:
        with _key_store(data_dir, database_url) as store:
            revoked = store.revoke_key(key_id)
        if not revoked:
            raise InvalidRequest("key_id", f"no active key {key_id!r}", value=key_id, allowed="see 'kinema keys list'")
    except Exception as exc:
        fail(exc)
    err.print(f"key {key_id} revoked", highlight=False)


jobs_app = typer.Typer(help="Jobs of the job service, for operators.", no_args_is_help=True)


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[str, typer.Argument(help="The failed job's id (video_...).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job's video object as JSON.")] = False,
) -> None:
    """Queue a failed job again, its attempt and crash budgets renewed (as POST /v1/videos/{id}/retry does for its
    owner); any key's job, since an operator runs it."""
    from ..errors import InvalidRequest
    from .console import err, fail

    try:
        with _key_store(data_dir, database_url) as store:
            job = store.get(job_id)
            if job is None:
                raise InvalidRequest(
                    "job_id",
                    f"no job {job_id!r} in {_where(store)}",
                    value=job_id,
                    allowed="the id of a failed job (video_...)",
                )
            if job.status != "failed":
                raise InvalidRequest(
                    "job_id",
                    f"the job is {job.status}; only a failed one can be retried",
                    value=job_id,
                    allowed="a failed job",
                )
            again = store.requeue(job_id)
        if again is None:  # it changed under us (deleted, or retried by someone else)
            raise InvalidRequest("job_id", "the job is no longer failed", value=job_id, allowed="a failed job")
    except Exception as exc:
        fail(exc)
    if as_json:
        from ..service.schemas import video_object

        sys.stdout.write(json.dumps(video_object(again)) + "\n")
    else:
        err.print(f"job {job_id} queued again (attempt {again.attempts + 1} next)", highlight=False)


def status(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What an operator checks first: the store, jobs by status, the queue, running jobs and their lease holders,
    failures of the last hour by error code, and quarantined (poison) jobs."""
    import time

    from ..errors import InvalidRequest
    from ..service.stores import describe_store
    from .console import fail, out

    try:
        cfg = _config(data_dir, database_url=database_url)
        location = cfg.store_location
        if "://" not in location and not Path(location).is_file():
            # an empty store made here would only hide a mistyped --data-dir
            raise InvalidRequest(
                "--data-dir",
                f"no job store at {location}",
                value=str(cfg.root),
                allowed="the data dir of a 'kinema serve' (or --database-url)",
            )
        from ..service.stores import open_store

        store = open_store(location)
        try:
            summary = store.status_summary(time.time() - 3600)
        finally:
            store.close()
    except Exception as exc:
        fail(exc)
    kind, _, where = describe_store(location).partition(" ")
    report = {"store": {"kind": kind.lower(), "location": where}, **summary}
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    out.print(_status_text(report), highlight=False, soft_wrap=True)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _status_text(r: dict[str, Any]) -> str:
    jobs, queue, failed, poison = r["jobs"], r["queue"], r["failed_recently"], r["quarantined"]
    lines = [
        f"store:        {r['store']['kind']} {r['store']['location']}",
        "jobs:         " + ", ".join(f"{n} {status}" for status, n in jobs.items()),
        f"queue:        {queue['depth']} queued, oldest {_age(queue['oldest_age_seconds'])}",
        f"running:      {len(r['running'])}",
    ]
    for job in r["running"]:
        lines.append(
            f"  {job['id']} ({job['kind']}, attempt {job['attempt']}) on {job['worker']}: running "
            f"{_age(job['running_seconds'])}, lease {job['lease_left_seconds']:g} s left"
        )
    codes = ", ".join(f"{n} {code}" for code, n in failed["by_code"].items())
    lines.append(f"failed (1 h): {failed['total']}" + (f" ({codes})" if codes else ""))
    lines.append(f"quarantined:  {poison['total']}" + (" (re-queue: kinema jobs retry ID)" if poison["total"] else ""))
    for job in poison["jobs"]:
        times = f"{job['crashes']} time{'s' if job['crashes'] != 1 else ''}"
        lines.append(f"  {job['id']} ({job['kind']}, owner {job['owner']}): lost its worker {times}")
    return "\n".join(lines)


def _where(store: Any) -> str:
    from ..service.stores import describe_store

    where = getattr(store, "path", None) or getattr(store, "url", None)
    return describe_store(where) if where is not None else "the job store"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("status")(status)
    app.add_typer(keys_app, name="keys")
    app.add_typer(jobs_app, name="jobs")
