"""The job service's settings: where its data lives and the limits it enforces.

One :class:`ServiceConfig` is shared by the HTTP app, the in-process worker pool and ``kinema worker`` processes on
the same data directory. Defaults suit one machine; every limit can be changed from the command line or in code.

>>> from kinema.service.config import ServiceConfig
>>> cfg = ServiceConfig(data_dir="/tmp/kinema-doc")
>>> cfg.db_path.name
'kinema.sqlite3'
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ServiceConfig", "check_public_url", "default_data_dir", "is_loopback_host", "load_extra_backends"]


def default_data_dir() -> Path:
    """``KINEMA_DATA_DIR`` if set, else the platform's user-data folder (``~/.local/share/kinema`` on Linux)."""
    env = os.environ.get("KINEMA_DATA_DIR")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_data_dir("kinema", appauthor=False))
    except ImportError:  # pragma: no cover - platformdirs is in the server extra
        return Path.home() / ".local" / "share" / "kinema"


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": the only binds where ``--no-auth`` is allowed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_extra_backends() -> None:
    """Register backends named in ``KINEMA_EXTRA_BACKENDS`` ("name=module:Class,..."), in the app and in workers.

    The entry-point group ``kinema.backends`` is the normal way; this variable lets a deployment (or a test) add one
    to a server and its worker processes without installing a package.
    """
    spec = os.environ.get("KINEMA_EXTRA_BACKENDS", "").strip()
    if not spec:
        return
    from ..backends import register_backend

    for item in spec.split(","):
        name, sep, target = item.strip().partition("=")
        if sep and name and ":" in target:
            register_backend(name.strip(), target.strip())


def check_public_url(url: str) -> str:
    """``url`` as a base URL providers can call (http(s), a host, no query, fragment or credentials), without its
    trailing slash; else InvalidRequest naming ``public_url``.

    >>> check_public_url("https://kinema.example.com/")
    'https://kinema.example.com'
    """
    from urllib.parse import urlsplit

    from ..errors import InvalidRequest

    parts = urlsplit(url.strip())
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or (parts.username or parts.password)
    ):
        raise InvalidRequest(
            "public_url",
            f"{url!r} is not a public base URL",
            value=url,
            allowed="http(s)://host[:port][/path], without query, fragment or credentials",
        )
    return url.strip().rstrip("/")


@dataclass
class ServiceConfig:
    """Settings of one service (HTTP app + workers) on one data directory."""

    data_dir: Path | str = field(default_factory=default_data_dir)
    #: require ``Authorization: Bearer``; False only when bound to loopback (checked by ``kinema serve``)
    auth: bool = True
    #: in-process workers started with the app (``kinema serve --workers``); 0 = submit only
    workers: int = 1
    #: load the default backend's model in the background when workers start, so the first job does not wait for it
    warm_up: bool = True
    #: GPUs each diffusers job is split over (context parallelism, ``kinema worker --gpus-per-job``); 1 = no split.
    #: Each of the ``workers`` claim loops takes its own group of this many GPUs (docs/cluster.md)
    gpus_per_job: int = 1
    #: the job store: ``postgresql://...`` for several API replicas and workers (docs/cluster.md); default
    #: ``KINEMA_DATABASE_URL``, else SQLite in the data dir
    database_url: str | None = None
    # -- durability and retries ------------------------------------------------------------------------------
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    reap_interval: float = 2.0
    max_attempts: int = 3
    #: a job that fails for a transient provider reason waits this long (times 2**attempt) before it runs again
    retry_backoff: float = 5.0
    #: first SIGTERM: wait this long for running jobs before releasing them
    shutdown_grace: float = 30.0
    #: how long outputs stay downloadable after completion
    retention_hours: float = 24 * 7
    # -- admission --------------------------------------------------------------------------------------------
    max_queued: int = 1000
    max_active_per_key: int = 200
    #: token buckets per API key: (requests per second, burst) for job creation and for everything else
    submit_rate: tuple[float, float] = (50.0, 100.0)
    read_rate: tuple[float, float] = (500.0, 1000.0)
    max_body_bytes: int = 25 * 2**20
    max_json_bytes: int = 2**20
    max_image_bytes: int = 20 * 2**20
    max_image_pixels: int = 40_000_000
    #: an uploaded clip (edits, extensions, characters): at most this many bytes (multipart bodies are limited by
    #: ``max_body_bytes`` too) ...
    max_video_bytes: int = 20 * 2**20
    #: ... and at most this many pixels over all its frames once decoded (frames x width x height): the worker holds
    #: the decoded clip in memory (2**28 pixels is 768 MiB of RGB)
    max_video_pixels: int = 2**28
    idempotency_ttl_hours: float = 24.0
    # -- slow and oversized requests: enforced before any key is checked (kinema.service.limits) ---------------
    #: the request line and headers together, in bytes; more gets 431
    max_header_bytes: int = 32 * 2**10
    #: seconds from a connection's opening (or a later request's first byte) to the end of the headers; then 408
    header_timeout: float = 10.0
    #: seconds from the end of the headers to the end of the body; then 408 (25 MiB in 60 s needs ~3.5 Mbit/s)
    body_timeout: float = 60.0
    #: a folder whose models clients may name by path (``diffusers/<path>``); None: no local path over HTTP
    model_dir: Path | str | None = None
    #: GET /metrics needs an API key (any key: the counts cover every tenant) when ``auth`` is on; False: open, for a
    #: scrape port only Prometheus reaches
    metrics_auth: bool = True
    # -- outbound requests ------------------------------------------------------------------------------------
    #: hosts or CIDR ranges trusted although not public (input images and webhooks may target them)
    allow_hosts: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_timeout: float = 15.0
    webhook_max_attempts: int = 8
    #: retry schedule in seconds (Standard Webhooks' example, shortened); jitter of +-20% is added
    webhook_schedule: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 18000)
    #: at most one progress webhook per this many seconds per job
    webhook_progress_interval: float = 2.0
    # -- provider callbacks (kinema.service.provider_callbacks) ------------------------------------------------
    #: the service's public base URL (``https://kinema.example.com``); set, providers that take a webhook are asked
    #: to call ``<public_url>/v1/provider-callbacks/...`` back, which makes the job poll at once. None: poll only.
    #: Default ``KINEMA_PUBLIC_URL`` (so ``kinema worker`` processes, which make the submits, know it too)
    public_url: str | None = field(default_factory=lambda: os.environ.get("KINEMA_PUBLIC_URL") or None)
    #: Replicate's webhook signing secret (``whsec_...``; default ``REPLICATE_WEBHOOK_SECRET``); without it
    #: Replicate jobs are polled only, since their callbacks could not be verified
    replicate_webhook_secret: str | None = None
    #: fal's JWKS (a dict, or a callable returning one); None: fetched from ``fal_jwks_url`` and cached 24 h
    fal_jwks: Any = None
    fal_jwks_url: str = "https://rest.fal.ai/.well-known/jwks.json"

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        self.allow_hosts = tuple(self.allow_hosts)
        if self.public_url is not None:
            self.public_url = check_public_url(self.public_url)

    def resolved_replicate_webhook_secret(self) -> str | None:
        """``replicate_webhook_secret``, else ``REPLICATE_WEBHOOK_SECRET``, else None."""
        return self.replicate_webhook_secret or os.environ.get("REPLICATE_WEBHOOK_SECRET") or None

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.root / "kinema.sqlite3"

    @property
    def store_location(self) -> str:
        """Where the job store is: ``database_url``, else ``KINEMA_DATABASE_URL``, else the SQLite file."""
        return self.database_url or os.environ.get("KINEMA_DATABASE_URL") or str(self.db_path)

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def work_dir(self) -> Path:
        """Temporary files of running attempts; renamed into ``outputs`` only by the lease owner."""
        return self.root / "work"

    @property
    def inputs_dir(self) -> Path:
        return self.root / "inputs"

    def ensure_dirs(self) -> None:
        for d in (self.root, self.outputs_dir, self.work_dir, self.inputs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def resolved_webhook_secret(self) -> str:
        """``webhook_secret``, else ``KINEMA_WEBHOOK_SECRET``, else one made once and kept in the data dir."""
        if self.webhook_secret:
            return self.webhook_secret
        env = os.environ.get("KINEMA_WEBHOOK_SECRET")
        if env:
            return env
        from .webhooks import new_secret

        path = self.root / "webhook_secret"
        self.ensure_dirs()
        if not path.is_file():
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(new_secret())
            try:
                os.link(tmp, path)  # fails if another process won the race: keep theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        self.webhook_secret = path.read_text().strip()
        return self.webhook_secret
