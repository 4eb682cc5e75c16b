"""A real, throwaway PostgreSQL server for the tests: ``initdb`` into a temp dir, started once per test session on a
Unix socket (no TCP), without fsync (tests only), as the ``postgres`` OS user when the tests run as root (PostgreSQL
refuses to run as root). Each test gets a fresh database (:meth:`PgServer.new_database`).

Light on imports on purpose: spawned test processes import it (:func:`claim_until_empty`).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def find_bindir() -> Path | None:
    """PostgreSQL's server binaries: ``initdb`` on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def why_not() -> str | None:
    """Why a PostgreSQL test server cannot run here, or None when it can."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        return f"the PostgreSQL store's driver is not installed ({exc}): pip install -e '.[cluster]'"
    if find_bindir() is None:
        return "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): .ci/system-packages"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _uid_of("postgres") is None):
        return "running as root, PostgreSQL needs the 'postgres' OS user and runuser to start"
    return None


def _uid_of(user: str) -> tuple[int, int] | None:
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


@dataclass
class PgServer:
    bindir: Path
    base: Path
    as_user: str | None
    startup_seconds: float = 0.0
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql:///{dbname}?host={self.socket_dir}&user=postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base)
        if out.returncode != 0:
            log = self.base / "log"
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({out.returncode}): {out.stdout}{out.stderr}"
                f"{log.read_text() if log.exists() else ''}"
            )

    def start(self) -> None:
        began = time.monotonic()
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        options = (
            f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            " -c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "log"), "-w", "-t", "60", "start"
        )
        self.startup_seconds = time.monotonic() - began
        self._watch()

    def _stop_command(self) -> list[str]:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        return ["runuser", "-u", self.as_user, "--", *cmd] if self.as_user else cmd

    def _watch(self) -> None:
        """A watchdog that stops the server and removes its files if this process dies without stopping it (a test
        run killed with SIGKILL would otherwise leave a postgres running)."""
        import shlex

        stop, base = shlex.join(self._stop_command()), shlex.quote(str(self.base))
        script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {base}"
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY file_copy")
        return self.url(name)

    def new_schema(self, prefix: str = "s") -> str:
        """A fresh, empty schema in the server's ``postgres`` database; returns a URL whose connections use it
        (``search_path``). Much cheaper than a database (CREATE DATABASE checkpoints: ~0.3 s on a busy machine)."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE SCHEMA {name}")
        return self.url() + f"&options=-csearch_path%3D{name}"

    def drop_schema(self, url: str) -> None:
        import psycopg

        name = url.rsplit("%3D", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.split("///", 1)[1].split("?", 1)[0]
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_server() -> PgServer:
    """Start a PostgreSQL server in a new temp dir (the caller stops it)."""
    bindir = find_bindir()
    assert bindir is not None, why_not()
    # under /tmp itself (not pytest's 0700 tmp dirs, which the postgres user cannot enter), and short: a Unix
    # socket's path must stay under 108 bytes
    base = Path(tempfile.mkdtemp(prefix="kinema-pg-"))
    as_user = None
    if os.geteuid() == 0:
        as_user = "postgres"
        ids = _uid_of(as_user)
        assert ids is not None
        os.chown(base, *ids)
    server = PgServer(bindir=bindir, base=base, as_user=as_user)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return server


def claim_until_empty(url: str, worker: str, ready: Any, results: Any) -> None:
    """A claimer process of the concurrency test: open the store, wait at the barrier until all claimers are ready,
    claim until the queue is empty, put (worker, claimed ids) on the results queue."""
    from kinema.service.stores import open_store

    store = open_store(url)
    try:
        ready.wait(120)
        claimed: list[str] = []
        while (job := store.claim(worker, lease_seconds=60)) is not None:
            claimed.append(job.id)
        results.put((worker, claimed))
    finally:
        store.close()


def submit_until_refused(url: str, tries: int, max_queued: int, ready: Any, results: Any) -> None:
    """A submitter process of the admission test: open the store, wait at the barrier, then submit ``tries`` jobs
    from 4 threads with ``max_queued`` as the bound; put (accepted, refused) on the results queue."""
    import threading

    from kinema.service.stores import AdmissionLimits, AdmissionRefused, open_store

    store = open_store(url)
    counts = {"accepted": 0, "refused": 0}
    lock = threading.Lock()

    def submit(n: int) -> None:
        for i in range(n):
            try:
                store.submit_job(
                    owner="o", request={"prompt": f"p{i}"}, summary={}, limits=AdmissionLimits(max_queued=max_queued)
                )
                outcome = "accepted"
            except AdmissionRefused:
                outcome = "refused"
            with lock:
                counts[outcome] += 1

    try:
        ready.wait(120)
        threads = [threading.Thread(target=submit, args=(tries // 4,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.put((counts["accepted"], counts["refused"]))
    finally:
        store.close()


def _main(args: Any = None) -> None:  # python tests/service/pg.py: start one, time it, stop it
    server = start_server()
    try:
        print(f"started in {server.startup_seconds:.2f}s at {server.url()}")
        began = time.monotonic()
        url = server.new_database()
        print(f"a fresh database in {time.monotonic() - began:.3f}s: {url}")
    finally:
        server.stop()


if __name__ == "__main__":
    _main()
