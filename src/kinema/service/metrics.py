"""``GET /metrics``: the job service's numbers for Prometheus, in the text exposition format 0.0.4.

What is exported:

* from the store (shared by every replica, so any replica's scrape gives the same values): jobs by ``status`` and
  ``kind``, the queue depth, the age of the oldest queued job, the attempts and crashes recorded on the jobs in the
  store, and the leases in flight (per worker, and those expired but not yet reaped: a worker that died);
* from this process: HTTP requests by method, route and status code (a counter), its in-process workers and how
  many are busy.

The store's numbers come from its ``job_stats()`` (two ``GROUP BY`` queries; :func:`collect_job_stats`), and the
queue depth from ``queue_depth()``. A scrape's answer is kept :data:`CACHE_SECONDS`, so several scrapers cost one
collection.

Wiring (in ``create_app``, before the web page is mounted)::

    install_metrics(app, state)

>>> print(render([Sample("kinema_queue_depth", "gauge", "Jobs waiting.", {}, 3)]), end="")
# HELP kinema_queue_depth Jobs waiting.
# TYPE kinema_queue_depth gauge
kinema_queue_depth 3
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from .auth import SECURED, authenticate_request
from .errors import ERROR_RESPONSES
from .store import JobStats

if TYPE_CHECKING:
    from .state import ServiceState
    from .stores import Store

__all__ = [
    "CONTENT_TYPE",
    "CACHE_SECONDS",
    "JobStats",
    "RequestCounts",
    "CountRequests",
    "Sample",
    "collect_job_stats",
    "scan_job_stats",
    "install_metrics",
    "metrics_routes",
    "render",
    "route_label",
    "service_samples",
]

#: the exposition format's content type (Prometheus 0.0.4 text)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: a collection is reused this long: Prometheus servers in HA pairs scrape the same target twice per interval
CACHE_SECONDS = 1.0
#: the statuses a job has (always exported, zero included: a missing series would read as "no data", not 0)
STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
#: jobs read per page when the store has to be scanned
SCAN_PAGE = 500


def collect_job_stats(store: Store, owners: Iterable[str] = (), now: float | None = None) -> JobStats:
    """The store's :class:`JobStats` at ``now`` (default: the current time): ``store.job_stats()``, a few aggregate
    queries (both of Kinema's stores have it), else, for a store object without it, :func:`scan_job_stats` with
    ``owners``."""
    job_stats = getattr(store, "job_stats", None)
    if callable(job_stats):
        return cast(JobStats, job_stats() if now is None else job_stats(now))
    return scan_job_stats(store, owners, now)


def scan_job_stats(store: Store, owners: Iterable[str] = (), now: float | None = None) -> JobStats:
    """:class:`JobStats` by reading every job of every owner (API keys, ``owners``, and "local", the owner without
    auth and of MCP's jobs) a page at a time through the protocol's ``list_jobs``: O(jobs in the store) per call
    (about 0.5 to 1 s at 10,000 jobs on either store, 15 to 80 times ``job_stats()``'s time; docs/cluster.md).
    Kept for stores written against an older protocol, and to check ``job_stats()`` against."""
    now = time.time() if now is None else now
    stats = JobStats()
    everyone = {"local", *owners, *(str(k["id"]) for k in store.list_keys())}
    for owner in sorted(everyone):
        _add(stats, _scan_owner(store, owner, now))
    return stats


def _scan_owner(store: Store, owner: str, now: float, tries: int = 3) -> JobStats:
    for _ in range(tries):
        stats, after = JobStats(), None
        try:
            while True:
                page, more = store.list_jobs(owner, after=after, limit=SCAN_PAGE, order="asc")
                for job in page:
                    key = (job.status, job.kind)
                    stats.jobs[key] = stats.jobs.get(key, 0) + 1
                    stats.attempts += job.attempts
                    stats.crashes += job.crashes
                    if job.status == "queued" and (
                        stats.oldest_queued_at is None or job.created_at < stats.oldest_queued_at
                    ):
                        stats.oldest_queued_at = job.created_at
                    if job.status == "in_progress" and job.worker:
                        if job.lease_until is not None and job.lease_until >= now:
                            stats.leases[job.worker] = stats.leases.get(job.worker, 0) + 1
                        else:
                            stats.expired_leases += 1
                if not more or not page:
                    return stats
                after = page[-1].id
        except KeyError:  # the cursor job was deleted between two pages: count this owner again from the start
            continue
    return stats  # still racing deletes: what the last try saw


def _add(total: JobStats, part: JobStats) -> None:
    for key, n in part.jobs.items():
        total.jobs[key] = total.jobs.get(key, 0) + n
    for worker, n in part.leases.items():
        total.leases[worker] = total.leases.get(worker, 0) + n
    total.attempts += part.attempts
    total.crashes += part.crashes
    total.expired_leases += part.expired_leases
    if part.oldest_queued_at is not None and (
        total.oldest_queued_at is None or part.oldest_queued_at < total.oldest_queued_at
    ):
        total.oldest_queued_at = part.oldest_queued_at


# -- the exposition format ------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One sample of one metric family: ``name{labels} value``."""

    name: str
    kind: str  # counter | gauge
    help: str
    labels: Mapping[str, str]
    value: float


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def render(samples: Iterable[Sample]) -> str:
    """The samples as exposition text: one HELP and TYPE per family, families in first-seen order, its samples
    together (the format requires a family's lines to be contiguous)."""
    families: dict[str, list[Sample]] = {}
    for sample in samples:
        families.setdefault(sample.name, []).append(sample)
    lines: list[str] = []
    for name, group in families.items():
        help_text = group[0].help.replace("\\", "\\\\").replace("\n", "\\n")
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {group[0].kind}"]
        for s in group:
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in s.labels.items())
            lines.append(f"{name}{{{labels}}} {_number(s.value)}" if labels else f"{name} {_number(s.value)}")
    return "\n".join(lines) + "\n"


# -- this process's HTTP requests -----------------------------------------------------------------------------------
_ID = r"[^/]+"
#: path patterns -> the route label; anything else is "other" (a label per raw path would let clients create
#: unbounded series)
_ROUTES = [
    (re.compile(f"^{pattern}$"), label)
    for pattern, label in (
        ("/v1/videos", "/v1/videos"),
        (f"/v1/videos/{_ID}", "/v1/videos/{id}"),
        (f"/v1/videos/{_ID}/(content|events|cancel|retry)", "/v1/videos/{id}/{action}"),
        ("/v1/storyboards", "/v1/storyboards"),
        ("/v1/models", "/v1/models"),
        ("/v1/usage", "/v1/usage"),
        ("/v1/prompt-library", "/v1/prompt-library"),
        ("/v1/prompts", "/v1/prompts"),
        (f"/v1/provider-callbacks/{_ID}/{_ID}", "/v1/provider-callbacks/{provider}/{id}"),
        ("/healthz", "/healthz"),
        ("/metrics", "/metrics"),
        ("/openapi.json", "/openapi.json"),
    )
]
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(path: str) -> str:
    """The bounded route label of a request path.

    >>> route_label("/v1/videos/video_abc/content"), route_label("/v1/videos/x/y/z")
    ('/v1/videos/{id}/content', 'other')
    """
    for pattern, label in _ROUTES:
        match = pattern.match(path)
        if match:
            return label.replace("{action}", match.group(1)) if "{action}" in label else label
    return "other"


class RequestCounts:
    """Requests answered by this process, by (method, route, status code). Thread-safe: the route that renders them
    runs in a worker thread while the event loop counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}

    def add(self, method: str, route: str, code: int) -> None:
        key = (method if method in _METHODS else "other", route, str(code))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)


class CountRequests:
    """ASGI middleware counting each HTTP response into a :class:`RequestCounts` (add it last, so it is outermost
    and sees the JSON fast path's answers too). Its cost is a regex match and a locked increment per request."""

    def __init__(self, app: ASGIApp, counts: RequestCounts) -> None:
        self.app, self.counts = app, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 0}

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:  # a request whose app raised before answering is counted as a 500, as the server answers it
            self.counts.add(scope.get("method", ""), route_label(scope.get("path", "")), status["code"] or 500)


# -- the samples and the route --------------------------------------------------------------------------------------
def service_samples(
    state: ServiceState,
    stats: JobStats,
    counts: RequestCounts | None = None,
    now: float | None = None,
    collect_seconds: float | None = None,
) -> list[Sample]:
    """Every sample of one scrape, from the store's ``stats`` and this process's state."""
    now = time.time() if now is None else now
    out = [Sample("kinema_build_info", "gauge", "The running Kinema version (always 1).", {"version": __version__}, 1)]
    kinds = sorted({kind for _, kind in stats.jobs} | set(state.pool.kinds))
    statuses = [*STATUSES, *sorted({s for s, _ in stats.jobs} - set(STATUSES))]
    for kind in kinds:
        for status in statuses:
            out.append(
                Sample(
                    "kinema_jobs",
                    "gauge",
                    "Jobs in the store by status and kind.",
                    {"status": status, "kind": kind},
                    stats.jobs.get((status, kind), 0),
                )
            )
    out.append(
        Sample("kinema_queue_depth", "gauge", "Jobs waiting in the queue (every kind).", {}, state.store.queue_depth())
    )
    age = max(0.0, now - stats.oldest_queued_at) if stats.oldest_queued_at is not None else 0.0
    out.append(
        Sample(
            "kinema_oldest_queued_job_age_seconds",
            "gauge",
            "Seconds the oldest queued job has waited (0: none queued).",
            {},
            round(age, 3),
        )
    )
    out.append(
        Sample(
            "kinema_store_job_attempts",
            "gauge",
            "Attempts recorded on the jobs now in the store (deleting a job removes its attempts).",
            {},
            stats.attempts,
        )
    )
    out.append(
        Sample(
            "kinema_store_job_crashes",
            "gauge",
            "Attempts lost to crashed workers, recorded on the jobs now in the store.",
            {},
            stats.crashes,
        )
    )
    out.append(
        Sample(
            "kinema_leases_in_flight",
            "gauge",
            "Running jobs whose worker's lease is live.",
            {},
            sum(stats.leases.values()),
        )
    )
    for worker, n in sorted(stats.leases.items()):
        out.append(
            Sample("kinema_worker_leases", "gauge", "Live leases by worker (host:pid:id).", {"worker": worker}, n)
        )
    out.append(
        Sample(
            "kinema_leases_expired",
            "gauge",
            "Running jobs whose lease has passed (a lost worker; the reaper re-queues them).",
            {},
            stats.expired_leases,
        )
    )
    out.append(
        Sample("kinema_process_workers", "gauge", "In-process workers of this API process.", {}, state.pool.threads)
    )
    out.append(
        Sample("kinema_process_workers_busy", "gauge", "In-process workers running a job now.", {}, state.pool.busy)
    )
    if collect_seconds is not None:
        out.append(
            Sample(
                "kinema_metrics_collect_seconds",
                "gauge",
                "How long reading the store for this scrape took.",
                {},
                round(collect_seconds, 6),
            )
        )
    if counts is not None:
        for (method, route, code), n in sorted(counts.snapshot().items()):
            out.append(
                Sample(
                    "kinema_http_requests_total",
                    "counter",
                    "HTTP requests answered by this process.",
                    {"method": method, "route": route, "code": code},
                    n,
                )
            )
    return out


def metrics_routes(state: ServiceState, counts: RequestCounts | None = None) -> APIRouter:
    """``GET /metrics``. It needs an API key (any key: the numbers are the whole service's, not the key's) when the
    service has auth on, unless ``config.metrics_auth`` is False (a scrape port nobody else reaches)."""
    router = APIRouter(tags=["service"])
    needs_key = state.config.auth and state.config.metrics_auth
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    # response_class=Response (no media type of its own): the error answers stay documented as JSON, 200 as text
    @router.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics (text format 0.0.4)",
        responses={
            200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}},
            **(ERROR_RESPONSES if needs_key else {}),
        },
        openapi_extra=SECURED if needs_key else None,
    )
    def metrics(request: Request) -> Response:
        if needs_key:
            authenticate_request(state, request)
        with lock:  # one collection at a time; the others wait and reuse it
            now = time.monotonic()
            if "stats" not in cache or now - cache["at"] >= CACHE_SECONDS:
                began = time.perf_counter()
                cache["stats"] = collect_job_stats(state.store)
                cache["seconds"], cache["at"] = time.perf_counter() - began, now
            stats, seconds = cache["stats"], cache["seconds"]
        body = render(service_samples(state, stats, counts, collect_seconds=seconds))
        return Response(body, media_type=CONTENT_TYPE)

    return router


def install_metrics(app: FastAPI, state: ServiceState) -> RequestCounts:
    """Add ``GET /metrics`` and the request counter to ``app`` (call it after the other middlewares, before the
    web page's mount); returns the counter."""
    counts = RequestCounts()
    app.add_middleware(CountRequests, counts=counts)
    app.include_router(metrics_routes(state, counts))
    return counts
