"""The shared remote-task loop every cloud backend runs: submit, record, poll, download.

Every commercial video API has the same shape: a paid ``submit`` returns a task id, the task is polled until it is
done, and the result is a file at a (usually expiring) URL. The pains are the same too, so they are solved here once:

* the provider's task id is put in the Result and handed to the caller's ``on_task_id`` hook *before* polling
  starts, so a crash, a Ctrl-C or a deadline never loses a paid generation: ``kinema resume`` (or the job service)
  hands the id back as ``resume_task_id`` and the loop re-attaches without submitting again;
* polling starts at the provider's recommended interval and backs off exponentially with jitter, up to a deadline;
  429s (and other transient errors) are waited out, honouring ``Retry-After``;
* the download has its own retries: a failed download is retried as a download, never as a new generation, and an
  expired output URL is refreshed by fetching the task again;
* the provider's failures map onto Kinema's errors (:class:`~kinema.ContentRejected` for moderation,
  :class:`~kinema.RateLimited`, :class:`~kinema.ProviderTimeout`, :class:`~kinema.ProviderError` with the
  provider's own code and message), and API keys never appear in them.

A provider file subclasses :class:`RemoteBackend` and implements four small methods: ``submit``, ``fetch``,
``translate_error`` (an SDK exception -> a Kinema error) and, when the output is not a plain URL, ``download``;
where the provider offers them, ``cancel`` (called once when the generation is cancelled while the task runs) and
``find_submitted`` (the task created with this generation's client token, after a submit whose answer was lost).
Cost: what the provider reports, plus a USD estimate from :mod:`kinema.backends.prices` where it reports none.

Provider callbacks (the job service): a caller that can be called back puts ``callback_url`` (where the provider
should POST when the task changes) and ``poll_now`` (a :class:`threading.Event`) in ``resume_info``. Providers that
take a webhook send :meth:`RemoteBackend.callback_url` with the submit; setting the event makes the poll loop poll
at once instead of sleeping out its interval. The callback is only a hint: the poll stays the source of truth.
``on_submitting`` (a callable) is called with True right before the paid submit (False after a submit the provider
refused, so no task exists), and ``submit_unconfirmed`` (true) says an earlier attempt was marked submitting but
never recorded a task id: the task is then looked up by the client token, or, where the provider cannot do that,
the generation fails with ``submit_unconfirmed`` rather than pay twice.

Loop settings come from request options (``poll_interval``, ``max_poll_interval``, ``timeout``,
``download_retries``, ``request_timeout``) or the environment (``KINEMA_POLL_INTERVAL``, ``KINEMA_REMOTE_TIMEOUT``),
so tests against local fakes run in milliseconds::

    kinema.generate("a fox", backend="runway", options={"poll_interval": 0.05, "timeout": 30})
"""

from __future__ import annotations

import base64
import contextvars
import email.utils
import io
import logging
import math
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    Cancelled,
    ContentRejected,
    InvalidRequest,
    KinemaError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    UrlExpired,
)
from ..request import ASPECT_RATIOS, VideoRequest
from .base import BackendOutput, BaseBackend, GenerationContext, GenerationParams, check_option_names

__all__ = [
    "STATUSES",
    "CALLBACK_URL",
    "POLL_NOW",
    "ON_SUBMITTING",
    "SUBMIT_UNCONFIRMED",
    "TaskStatus",
    "LoopOptions",
    "RemoteBackend",
    "UrlExpired",
    "http_error",
    "body_message",
    "stainless_error",
    "looks_moderated",
    "parse_retry_after",
    "ratio_sizes",
    "ratio_of",
    "encode_png",
    "data_uri",
    "fitted_data_uri",
    "is_url",
    "probe_source_video",
    "source_video_uri",
    "is_lost_answer",
    "env_base_url",
    "resume_file_for",
    "write_resume_file",
    "read_resume_file",
]

log = logging.getLogger("kinema.remote")

#: Kinema's task statuses; every provider's own statuses map onto these
STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
#: options every remote backend understands (the loop's settings)
LOOP_OPTIONS = ("poll_interval", "max_poll_interval", "timeout", "download_retries", "request_timeout")
_MODERATION_WORDS = re.compile(
    r"moderat|safety|content[ _-]?polic|nsfw|not allowed|inappropriate|sensitive|flagged|blocked|prohibited|"
    r"violat|harmful|rai[ _-]?filter|responsible ai|risk[ _-]?control",
    re.I,
)
#: transport failures of the HTTP stacks the SDKs use (httpx, httpx2, requests, urllib3), by class name
_TRANSPORT = {
    "ReadTimeout",
    "ConnectTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "TimeoutException",
    "ConnectError",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "NetworkError",
    "ConnectionError",
    "Timeout",
}
#: transport failures before the request was sent (no connection was made): a submit that failed so was not made
_NOT_SENT = {"ConnectError", "ConnectTimeout", "ConnectionRefusedError"}
_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
#: resume_info keys of the job service's hooks (see the module docstring)
CALLBACK_URL, POLL_NOW, ON_SUBMITTING, SUBMIT_UNCONFIRMED = (
    "callback_url",
    "poll_now",
    "on_submitting",
    "submit_unconfirmed",
)
# the callback URL of the submit running in this thread: submit() has no context argument, and backends are shared
_CALLBACK: contextvars.ContextVar[str | None] = contextvars.ContextVar("kinema_callback_url", default=None)


@dataclass
class TaskStatus:
    """One look at a provider's task, in Kinema's words.

    ``status`` is one of :data:`STATUSES`; ``raw_status`` is the provider's own word (``THROTTLED``, ``dreaming``).
    ``output_urls`` are where the result can be downloaded; ``data`` carries what a provider's ``download`` needs
    besides (inline bytes, an asset id). ``poll_after`` is the provider's hint for the next poll, in seconds.
    """

    status: str
    raw_status: str | None = None
    progress: float | None = None
    output_urls: list[str] = field(default_factory=list)
    cost: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    moderated: bool | None = None  # None: judged by the failure's wording; False: not moderation, whatever it says
    eta: float | None = None
    poll_after: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")


@dataclass(frozen=True)
class LoopOptions:
    """How patiently to wait: the first poll interval, its cap, the deadline and the download retries."""

    poll_interval: float
    max_poll_interval: float
    timeout: float
    download_retries: int
    request_timeout: float
    backoff: float = 1.5
    jitter: float = 0.25


# -- helpers the providers share --------------------------------------------------------------------------------------


def parse_retry_after(headers: Any, body_text: str | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date), else from a message
    like "resets in ~30s"."""
    if headers is not None:
        try:
            ms = headers.get("retry-after-ms")
            if ms is not None:
                return max(0.0, float(ms) / 1000)
            value = headers.get("retry-after")
        except Exception:
            value = None
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(value) if value else None
                if parsed is not None:
                    return max(0.0, parsed.timestamp() - time.time())
    if body_text:
        m = re.search(r"(\d+(?:\.\d+)?)\s*s(?:econds?)?\b", body_text)
        if m and re.search(r"retry|reset|wait|throttl", body_text, re.I):
            return float(m.group(1))
    return None


def looks_moderated(*texts: Any) -> bool:
    """Whether a provider's failure text or code reads like a moderation refusal."""
    return any(isinstance(t, str) and _MODERATION_WORDS.search(t) for t in texts)


def http_error(
    provider: str,
    status: int | None,
    message: str | None,
    *,
    code: str | None = None,
    headers: Any = None,
    moderated: bool | None = None,
) -> KinemaError:
    """The Kinema error for a provider's HTTP failure: RateLimited on 429, ContentRejected for moderation,
    else ProviderError carrying the provider's status, code and message."""
    message = (message or "").strip() or f"HTTP {status}"
    if status == 429:
        retry_after = parse_retry_after(headers, message)
        wait = f"; retry after {retry_after:g}s" if retry_after is not None else ""
        return RateLimited(
            f"{provider} is rate limiting us (HTTP 429{_code(code)}): {message}{wait}",
            retry_after=retry_after,
            provider=provider,
            provider_code=code,
            provider_message=message,
            status_code=status,
        )
    if moderated or (moderated is None and status in (400, 403, 422) and looks_moderated(message, code)):
        return ContentRejected(f"{provider} refused the request on content grounds{_code(code)}: {message}")
    hint = ""
    if status in (401, 403):
        hint = " (check the API key)"
    elif status is not None and status >= 500:
        hint = " (a server error at the provider)"
    shown = f"HTTP {status}" if status is not None else "no response"
    return ProviderError(
        f"{provider} failed ({shown}{_code(code)}): {message}{hint}",
        provider=provider,
        provider_code=code,
        provider_message=message,
        status_code=status,
    )


def body_message(body: Any) -> tuple[str | None, str | None]:
    """(message, code) from the error bodies providers send: {"error": {"message", "code"}}, {"error": "..."},
    {"detail": "..."} (str or a 422 list), {"message": ..., "code": ...}."""
    if isinstance(body, str):
        return body[:500], None
    if not isinstance(body, dict):
        return (str(body)[:500] if body is not None else None), None
    inner = body.get("error", body)
    if isinstance(inner, str):
        return inner, _str_or_none(body.get("code") or body.get("failureCode"))
    if isinstance(inner, dict):
        message = inner.get("message") or inner.get("detail") or inner.get("title")
        code = inner.get("code") or inner.get("type") or inner.get("status")
        if isinstance(message, list):  # a pydantic 422 list
            message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
        if message is None and inner is not body:
            message = str(inner)[:500]
        return (str(message) if message is not None else None), _str_or_none(code)
    return str(inner)[:500], None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def stainless_error(provider: str, exc: BaseException) -> KinemaError | None:
    """The Kinema error for an exception of a Stainless-generated SDK (runwayml, lumaai, openai), by duck typing."""
    status = getattr(exc, "status_code", None)
    if status is None:
        if type(exc).__name__ in ("APIConnectionError", "APITimeoutError"):
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
            return ProviderError(
                f"{provider} could not be reached: {type(exc).__name__}",
                provider=provider,
                provider_code="connect" if cause in _NOT_SENT else "connection",
            )
        return None
    response = getattr(exc, "response", None)
    message, code = body_message(getattr(exc, "body", None))
    if message is None and response is not None:
        try:
            message = response.text[:500]
        except Exception:
            message = None
    return http_error(provider, int(status), message, code=code, headers=getattr(response, "headers", None))


def _code(code: str | None) -> str:
    return f", code {code}" if code else ""


def is_transient(exc: BaseException) -> bool:
    """Errors worth waiting out while polling or downloading: rate limits, 5xx, timeouts, dropped connections."""
    if isinstance(exc, RateLimited):
        return True
    if isinstance(exc, ProviderError) and not isinstance(exc, ProviderTimeout):
        return exc.status_code is None or exc.status_code in _TRANSIENT_STATUS
    return False


def is_lost_answer(exc: BaseException) -> bool:
    """Whether a failed submit may still have reached the provider: a timeout or a dropped connection (no HTTP
    answer), as opposed to an answer that refused it."""
    return isinstance(exc, ProviderError) and exc.status_code is None and exc.provider_code == "connection"
    # ("connect": no connection was made, so nothing was sent)


def ratio_of(width: int, height: int, ratios: tuple[str, ...] | list[str]) -> str:
    """The listed ratio ("16:9" or pixel-style "1280:720") closest to width:height."""

    def value(r: str) -> float:
        a, b = r.split(":")
        return float(a) / float(b)

    return min(ratios, key=lambda r: abs(value(r) - width / height))


def ratio_sizes(ratios: tuple[str, ...], short_sides: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Pixel sizes for APIs that take an aspect ratio and a resolution (short side), rounded to even numbers."""
    sizes = []
    for short in short_sides:
        for r in ratios:
            a, b = (int(v) for v in r.split(":"))
            w, h = (short * a / b, float(short)) if a >= b else (float(short), short * b / a)
            sizes.append((int(round(w / 2)) * 2, int(round(h / 2)) * 2))
    return tuple(dict.fromkeys(sizes))


def encode_png(image: np.ndarray, size: tuple[int, int] | None = None) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image, resized (with PIL) to ``size`` = (width, height) when given."""
    from .base import require_module

    pil = require_module("PIL.Image", "cloud", feature="image upload")
    img = pil.fromarray(np.ascontiguousarray(image[..., :3]))
    if size is not None and img.size != size:
        img = img.resize(size)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png).decode("ascii")


def is_url(source: Any) -> bool:
    """Whether an input was given as an http(s) URL (kept as given, for the provider to fetch)."""
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def probe_source_video(
    source: str,
    where: str,
    *,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    max_fps: float | None = None,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """An edit's local source clip probed (width, height, num_frames, fps, duration), or InvalidRequest naming
    ``source_video`` when it is not a readable clip or lies outside ``where``'s limits (each None: no limit), so a
    provider refuses it before anything is paid."""
    from ..video import probe

    if max_bytes is not None:
        size = Path(source).stat().st_size
        if size > max_bytes:
            raise InvalidRequest(
                "source_video",
                f"is {size / 1e6:.3g} MB; {where} takes at most {max_bytes / 1e6:g} MB",
                value=source,
                allowed=f"a clip of at most {max_bytes / 1e6:g} MB",
            )
    try:
        clip = probe(source)
    except InvalidRequest as exc:
        raise InvalidRequest("source_video", exc.message, value=source) from None
    seconds, fps = float(clip["duration"]), float(clip["fps"])
    if min_seconds is not None and max_seconds is not None and not min_seconds <= seconds <= max_seconds:
        raise InvalidRequest(
            "source_video",
            f"is {seconds:.3g}s long; {where} edits clips of {min_seconds:g} to {max_seconds:g} s",
            value=source,
            allowed=f"a clip of {min_seconds:g} to {max_seconds:g} s",
        )
    if max_seconds is not None and seconds > max_seconds:
        raise InvalidRequest(
            "source_video",
            f"is {seconds:.3g}s long; {where} takes at most {max_seconds:g} s",
            value=source,
            allowed=f"a clip of at most {max_seconds:g} s",
        )
    if max_fps is not None and fps > max_fps:
        raise InvalidRequest(
            "source_video",
            f"runs at {fps:g} fps; {where} takes at most {max_fps:g}",
            value=source,
            allowed=f"up to {max_fps:g} fps",
        )
    return clip


def source_video_uri(source: Any, max_chars: int, where: str, *, encode: bool = True) -> str:
    """An edit's source clip as a provider takes it in JSON: an http(s) URL as given, else the local file as a
    ``data:video/...;base64,`` URI of at most ``max_chars`` characters. A larger file is refused naming
    ``source_video`` (before anything is paid), asking for a URL. ``encode=False`` only checks (for ``check()``)."""
    import mimetypes

    if is_url(source):
        return str(source)
    path = Path(str(source))
    mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
    size = path.stat().st_size
    length = len(f"data:{mime};base64,") + 4 * -(-size // 3)
    if length > max_chars:
        raise InvalidRequest(
            "source_video",
            f"is {size / 1e6:.3g} MB; {where} takes a local clip inline only up to "
            f"about {max_chars * 3 / 4 / 1e6:.3g} MB: give an http(s) URL of the clip instead",
            value=str(source),
            allowed="a smaller clip, or an http(s) URL",
        )
    return data_uri(path.read_bytes(), mime) if encode else ""


def fitted_data_uri(image: np.ndarray, max_bytes: int, field: str = "image") -> str:
    """A ``data:`` URI of an (H, W, 3) image no longer than ``max_bytes`` characters: PNG when it fits, else JPEG
    at falling quality, then downscaled (by 0.75 per step) until it fits. Providers cap data URIs (Runway: 5 MB).
    ``field`` is the request field named when even the smallest image does not fit."""
    from .base import require_module

    pil = require_module("PIL.Image", "cloud", feature="image upload")
    png = encode_png(image)
    uri = data_uri(png)
    if len(uri) <= max_bytes:
        return uri
    img = pil.fromarray(np.ascontiguousarray(image[..., :3]))
    while True:
        for quality in (92, 85, 75):
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
            uri = data_uri(buf.getvalue(), "image/jpeg")
            if len(uri) <= max_bytes:
                return uri
        if min(img.size) <= 64:
            raise InvalidRequest(
                field,
                f"cannot be made smaller than {max_bytes} bytes as a data URI",
                allowed="a smaller image, or an https URL",
            )
        img = img.resize((max(1, int(img.width * 0.75)), max(1, int(img.height * 0.75))))


def env_base_url(*names: str, default: str) -> str:
    """The first of ``names`` set in the environment, else ``default``; trailing slashes removed."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value.rstrip("/")
    return default.rstrip("/")


def _jittered(seconds: float, jitter: float) -> float:
    return max(0.0, seconds * random.uniform(1 - jitter, 1 + jitter))


def _float_option(options: dict[str, Any], name: str, env: str | None, default: float, low: float) -> float:
    value: Any = options.get(name)
    source = f"options.{name}"
    if value is None and env and os.environ.get(env):
        value, source = os.environ[env], env
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(source, f"must be a number of seconds, not {value!r}", value=value) from None
    if not math.isfinite(number) or number < low:
        raise InvalidRequest(source, f"must be at least {low:g}", value=value, allowed=f">= {low:g}")
    return number


# -- resume files: a task id recorded next to the output ------------------------------------------------------------


def resume_file_for(output: str | os.PathLike[str]) -> Path:
    """Where the resume record of ``output`` lives: ``<output>.task.json``."""
    return Path(str(output) + ".task.json")


def write_resume_file(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write a resume record atomically (task id, backend, the request to rebuild). Never holds a secret."""
    import json

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_resume_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    import json

    p = Path(path)
    if not p.is_file():
        raise InvalidRequest(
            "path", f"no resume file at {p}", value=str(p), allowed="<output>.task.json written by a cloud generation"
        )
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest("path", f"{p} is not a readable resume file ({exc})", value=str(p)) from None
    if not isinstance(record, dict) or not record.get("task_id") or not record.get("backend"):
        raise InvalidRequest("path", f"{p} lacks a task_id or backend; is it a Kinema resume file?", value=str(p))
    return record


# -- the base class ---------------------------------------------------------------------------------------------------


class RemoteBackend(BaseBackend):
    """A commercial API driven through the shared submit -> record -> poll -> download loop.

    Subclasses set ``name``, ``env_keys``, ``requires``, ``recommended_poll_interval`` and implement
    :meth:`submit`, :meth:`fetch` and :meth:`translate_error`; :meth:`download` when the output is not a URL.
    """

    #: the provider's own name, as shown in errors
    provider = "remote"
    #: seconds between polls the provider recommends (the loop's starting interval)
    recommended_poll_interval = 5.0
    #: the longest wait between two polls
    max_poll_interval = 30.0
    #: the deadline for one generation, from submit (queues at busy providers can be long)
    default_timeout = 1800.0
    #: options this provider accepts besides the loop's (validated in resolve, before anything is paid)
    provider_options: tuple[str, ...] = ()
    #: the rate-limit waits a submit may sit out before giving up
    max_submit_waits = 6

    # -- what a provider implements ---------------------------------------------------------------------------------
    def make_client(self, loop: LoopOptions) -> Any:
        """The SDK client (or httpx client) for one generation; built per call so keys are read when needed."""
        return None

    def prepare(self, client: Any, params: GenerationParams) -> None:
        """Copy inputs to the provider before the paid submit (an upload), into ``params.uploads``. It runs before
        the job's submitting mark, so a lost answer here is a plain transient failure: nothing was paid for, and a
        retry uploads again. The default copies nothing."""

    def submit(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        """Start the paid generation. Returns (task id, info to resume with, the first status if the reply has one).

        ``token`` is this generation's client token: a provider that takes one (Kling ``external_task_id``,
        ModelsLab ``track_id``) sends it, so a task whose submit answer was lost can be found again by it."""
        raise NotImplementedError

    def callback_url(self) -> str | None:
        """Where the provider should POST when this submit's task changes (the job service's per-job URL), or None
        (the CLI: polling only). Call it from :meth:`submit`."""
        return _CALLBACK.get()

    def find_submitted(
        self, client: Any, params: GenerationParams, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None] | None:
        """After a submit whose answer never arrived: the task created with ``token``, or None when there is none.
        Raise NotImplementedError (the default) where the provider cannot look a task up by a client token."""
        raise NotImplementedError

    def cancel(self, client: Any, task_id: str, info: dict[str, Any]) -> str:
        """Ask the provider to stop the task (and its bill); return its answer in a few words. Raise
        NotImplementedError (the default) where the provider has no cancel."""
        raise NotImplementedError

    def estimate_cost(self, params: GenerationParams, cost: dict[str, Any] | None) -> dict[str, Any] | None:
        """What the provider said the generation cost, plus a USD estimate from :mod:`.prices` where it says none."""
        from .prices import with_estimate

        return with_estimate(self.name, params, cost)

    def fetch(self, client: Any, task_id: str, info: dict[str, Any]) -> TaskStatus:
        """One poll of the task."""
        raise NotImplementedError

    def translate_error(self, exc: BaseException) -> KinemaError | None:
        """The Kinema error for an SDK/transport exception, or None to let it through."""
        import httpx

        if isinstance(exc, httpx.HTTPStatusError):
            return http_error(
                self.provider, exc.response.status_code, exc.response.text[:500], headers=exc.response.headers
            )
        if isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError) or type(exc).__name__ in _TRANSPORT:
            code = "connect" if type(exc).__name__ in _NOT_SENT else "connection"
            return ProviderError(
                f"{self.provider} could not be reached: {type(exc).__name__}: {exc}",
                provider=self.provider,
                provider_code=code,
            )
        return None

    def download(
        self, client: Any, task_id: str, info: dict[str, Any], status: TaskStatus, dest: Path, loop: LoopOptions
    ) -> None:
        """Write the finished video to ``dest``. The default streams the first output URL (pre-signed, no key)."""
        if not status.output_urls:
            raise ProviderError(
                f"{self.provider} reported the task as completed but gave no output URL",
                provider=self.provider,
                provider_code="no_output",
            )
        self.download_url(status.output_urls[0], dest, loop)

    def failure_error(self, task_id: str, status: TaskStatus) -> KinemaError:
        """The error for a failed task: ContentRejected for moderation, else ProviderError in the provider's words."""
        message = status.error_message or "no reason given"
        if status.moderated or (status.moderated is None and looks_moderated(status.error_code, status.error_message)):
            return ContentRejected(
                f"{self.provider} refused the generation on content grounds"
                f"{_code(status.error_code)}: {message} (task {task_id}); rephrase the prompt "
                f"or change the input image"
            )
        return ProviderError(
            f"{self.provider} task {task_id} failed{_code(status.error_code)}: {message}",
            provider=self.provider,
            provider_code=status.error_code,
            provider_message=status.error_message,
        )

    def check(self, params: GenerationParams) -> None:
        """Provider checks beyond Capabilities (mode-specific ratios, image URLs...); raise InvalidRequest."""

    def secrets(self) -> list[str]:
        """The secret values (never shown anywhere): the env keys' values."""
        return [v for k in self.env_keys if (v := os.environ.get(k)) and len(v) >= 4]

    def api_key(self, var: str) -> str:
        """An environment variable's key, or BackendUnavailable naming the variable to set."""
        from ..errors import BackendUnavailable

        value = os.environ.get(var, "").strip()
        if not value:
            raise BackendUnavailable(self.name, f"API key missing: set {var}")
        return value

    # -- the shared parts -------------------------------------------------------------------------------------------
    def resolve(self, request: VideoRequest, seed: int) -> GenerationParams:
        params = super().resolve(request, seed)
        check_option_names(self.name, params.options, LOOP_OPTIONS + self.provider_options)
        self.loop_options(params.options)  # bad numbers are refused now, not after submit
        self.check(params)
        return params

    def loop_options(self, options: dict[str, Any]) -> LoopOptions:
        interval = _float_option(
            options, "poll_interval", "KINEMA_POLL_INTERVAL", self.recommended_poll_interval, 0.001
        )
        cap = _float_option(options, "max_poll_interval", None, max(interval, self.max_poll_interval), interval)
        timeout = _float_option(options, "timeout", "KINEMA_REMOTE_TIMEOUT", self.default_timeout, 0.01)
        retries = int(_float_option(options, "download_retries", None, 5, 1))
        request_timeout = _float_option(options, "request_timeout", None, 60.0, 0.01)
        return LoopOptions(interval, cap, timeout, retries, request_timeout)

    def generate(self, params: GenerationParams, ctx: GenerationContext) -> BackendOutput:
        loop = self.loop_options(params.options)
        # remote work is mostly waiting: give the bar something to move on
        ctx.progress.weights.update({"queued": 0.05, "polling": 0.75, "downloading": 0.15})
        client = self.make_client(loop)
        try:
            return self._generate(params, ctx, loop, client)
        finally:
            _close_quietly(client)

    def _generate(
        self, params: GenerationParams, ctx: GenerationContext, loop: LoopOptions, client: Any
    ) -> BackendOutput:
        start = time.monotonic()
        deadline = start + loop.timeout
        warnings: list[str] = []
        status: TaskStatus | None
        if ctx.resume_task_id:
            task_id, info, status = ctx.resume_task_id, dict(ctx.resume_info), None
            log.info("%s: resuming task %s (no new submission)", self.provider, task_id)
            warnings.append(f"resumed {self.provider} task {task_id} without submitting again")
        else:
            ctx.progress("queued", 0, 1, message=f"submitting to {self.provider}")
            token = client_token(ctx)
            found = self._find_earlier(client, params, ctx, token)
            if found is not None:
                task_id, info, status = found
                warnings.append(f"found {self.provider} task {task_id} by client token {token}; not submitted again")
            else:
                self._call(lambda: self.prepare(client, params))
                on_submitting = ctx.resume_info.get(ON_SUBMITTING)
                if callable(on_submitting):
                    on_submitting(True)  # durable before the paid call: a crash after it is detected, not re-paid
                callback = ctx.resume_info.get(CALLBACK_URL)
                reset = _CALLBACK.set(callback if isinstance(callback, str) and callback else None)
                try:
                    task_id, info, status = self._submit(client, params, ctx, loop, deadline, token)
                except KinemaError as exc:
                    # an answer that refused the submit (or a lost one proven not to have created a task): nothing
                    # exists at the provider, so the next attempt may submit; "unconfirmed" keeps the mark
                    if callable(on_submitting) and getattr(exc, "provider_code", None) != "submit_unconfirmed":
                        on_submitting(False)
                    raise
                finally:
                    _CALLBACK.reset(reset)
            info = {
                "backend": self.name,
                "model": params.model,
                "mode": params.mode,
                "client_token": token,
                **info,
                "request": _request_record(params),
            }
            hook = ctx.on_task_id
            if hook is not None:
                hook(task_id, dict(info))
        try:
            try:
                status = self._poll(client, task_id, info, status, ctx, loop, deadline)
            except Cancelled as exc:  # stop the bill; a finished task (being downloaded) is left alone
                if ctx.cancel.keep_provider_task:
                    # the caller stops only this process (a worker shutting down, a lease lost to another
                    # worker): the task must live on, to be resumed by its id
                    exc.task_id = task_id
                    exc.provider_cancel = {"called": False, "answer": "kept for a resume"}
                    raise
                raise self._cancel_task(client, task_id, info, exc) from None
            path = self._download(client, task_id, info, status, ctx, loop)
        except ProviderTimeout:
            raise
        except KinemaError as exc:
            if not isinstance(exc, Cancelled | ContentRejected | InvalidRequest) and not hasattr(exc, "task_id"):
                exc.task_id = task_id  # type: ignore[attr-defined]
            raise
        try:
            from ..video import Video

            video = Video.open(path)
        except InvalidRequest as exc:
            raise ProviderError(
                f"{self.provider} returned a file that is not a readable video ({exc.message})",
                provider=self.provider,
                provider_code="bad_output",
            ) from None
        finally:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()
            except OSError:
                pass
        video.metadata = {}
        extra = {"provider": self.provider, "raw_status": status.raw_status, "elapsed": time.monotonic() - start}
        cost = self.estimate_cost(params, status.cost)
        return BackendOutput(
            video=video,
            cost=cost,
            provider_task_id=task_id,
            model_revision=params.model,
            warnings=warnings,
            extra=extra,
        )

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one SDK call, turning its exceptions into Kinema's (with secrets scrubbed)."""
        try:
            return fn()
        except KinemaError as exc:
            raise self._scrub(exc) from None
        except Exception as exc:
            mapped = self.translate_error(exc)
            if mapped is None:
                raise
            raise self._scrub(mapped) from None

    def _scrub(self, exc: KinemaError) -> KinemaError:
        secrets = self.secrets()
        if secrets and any(s in exc.message for s in secrets):
            text = exc.message
            for s in secrets:
                text = text.replace(s, "***")
            exc.message = text
            exc.args = (text,)
        return exc

    def _sleep(self, seconds: float, ctx: GenerationContext, deadline: float | None = None, wake: Any = None) -> None:
        """Wait, checking for cancellation; ``wake`` (an Event: a provider callback arrived) ends the wait early."""
        if deadline is not None:
            seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        end = time.monotonic() + seconds
        event = wake if isinstance(wake, threading.Event) else None
        while True:
            ctx.cancel.raise_if_cancelled()
            left = end - time.monotonic()
            if left <= 0:
                return
            if event is None:
                time.sleep(min(left, 0.1))
            elif event.wait(min(left, 0.1)):
                event.clear()
                log.info("%s: a provider callback arrived; polling now", self.provider)
                return

    def _cancel_task(self, client: Any, task_id: str, info: dict[str, Any], exc: Cancelled) -> Cancelled:
        """Stop the provider's task after the caller cancelled: one cancel call where the provider has one, its
        answer recorded in the raised error (``task_id``, ``provider_cancel``) and the log."""
        try:
            answer = str(self._call(lambda: self.cancel(client, task_id, info)))
            called = True
        except NotImplementedError:
            answer, called = "the provider has no cancel; the task may still run and be billed", False
        except KinemaError as failed:
            answer, called = f"the cancel was refused or failed: {failed.message}", True
        log.info(
            "%s: generation cancelled; provider cancel of task %s %s: %s",
            self.provider,
            task_id,
            "called" if called else "not available",
            answer,
        )
        verb = "cancel sent" if called else "no cancel"
        err = Cancelled(f"{exc.message}; {self.provider} task {task_id}: {verb} ({answer})")
        err.task_id = task_id
        err.provider_cancel = {"called": called, "answer": answer}
        return err

    def _submit(
        self,
        client: Any,
        params: GenerationParams,
        ctx: GenerationContext,
        loop: LoopOptions,
        deadline: float,
        token: str,
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        # Only a 429 is retried: the provider has refused the request, so nothing was paid. Any other failure of a
        # submit is ambiguous (was it accepted?) and is never blindly sent again: where the provider can look a
        # task up by the client token, it is looked up; else the error says the task may exist.
        waits = 0
        while True:
            ctx.cancel.raise_if_cancelled()
            try:
                return self._call(lambda: self.submit(client, params, token))
            except RateLimited as exc:
                waits += 1
                wait = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else _jittered(loop.poll_interval * 2**waits, loop.jitter)
                )
                if waits > self.max_submit_waits or time.monotonic() + wait > deadline:
                    raise
                log.info("%s: rate limited on submit; waiting %.1fs", self.provider, wait)
                ctx.progress("queued", 0, 1, message=f"rate limited by {self.provider}; waiting {wait:.0f}s")
                self._sleep(wait, ctx)
            except ProviderError as exc:
                if not is_lost_answer(exc):
                    raise
                return self._recover_lost_submit(client, params, token, exc)

    def _find_earlier(
        self, client: Any, params: GenerationParams, ctx: GenerationContext, token: str
    ) -> tuple[str, dict[str, Any], TaskStatus | None] | None:
        """A task an earlier attempt created with the caller's client token (a job retried after a crash between
        the submit and ``on_task_id``), where the provider can look tasks up by it."""
        if ctx.resume_info.get("client_token") != token:
            return None  # a fresh token: no earlier attempt can have used it
        unconfirmed = bool(ctx.resume_info.get(SUBMIT_UNCONFIRMED))
        try:
            found = self._call(lambda: self.find_submitted(client, params, token))
        except NotImplementedError:
            if unconfirmed:
                raise self._scrub(
                    ProviderError(
                        f"{self.provider}: an earlier attempt was stopped between its submit and recording the task "
                        f"id, so a task may exist at the provider (and be billed); {self.provider} cannot look tasks "
                        f"up by client token {token!r}, so it was not submitted again: check the provider's "
                        f"dashboard, then retry the job (`kinema jobs retry`) only if no task was created",
                        provider=self.provider,
                        provider_code="submit_unconfirmed",
                    )
                ) from None
            return None
        if found is not None:
            log.info(
                "%s: task %s already exists for client token %s; not submitting again", self.provider, found[0], token
            )
        return found

    def _recover_lost_submit(
        self, client: Any, params: GenerationParams, token: str, exc: ProviderError
    ) -> tuple[str, dict[str, Any], TaskStatus | None]:
        log.warning(
            "%s: the answer to the submit was lost (%s); looking the task up by client token %s",
            self.provider,
            exc.message,
            token,
        )
        unsure = (
            f"{self.provider}: the answer to the submit never arrived ({exc.message}); the task may exist "
            f"at the provider (and be billed), so it was not sent again"
        )
        try:
            found = self._call(lambda: self.find_submitted(client, params, token))
        except NotImplementedError:
            raise self._scrub(
                ProviderError(
                    f"{unsure}: check the provider's dashboard for client token {token!r} before trying again",
                    provider=self.provider,
                    provider_code="submit_unconfirmed",
                )
            ) from None
        except KinemaError as err:
            raise self._scrub(
                ProviderError(
                    f"{unsure}, and looking it up by client token {token!r} failed ({err.message}): check before "
                    f"trying again",
                    provider=self.provider,
                    provider_code="submit_unconfirmed",
                )
            ) from None
        if found is None:
            raise self._scrub(
                ProviderError(
                    f"{unsure}; no task with client token {token!r} was found, so none was created: it is safe to try "
                    f"again",
                    provider=self.provider,
                    provider_code="submit_lost",
                )
            )
        log.info("%s: found task %s by client token %s; no second submission", self.provider, found[0], token)
        return found

    def _poll(
        self,
        client: Any,
        task_id: str,
        info: dict[str, Any],
        status: TaskStatus | None,
        ctx: GenerationContext,
        loop: LoopOptions,
        deadline: float,
    ) -> TaskStatus:
        n = 0
        failures = 0
        while True:
            if status is not None:
                if status.status == "completed":
                    return status
                if status.status == "failed":
                    raise self.failure_error(task_id, status)
                if status.status == "cancelled":
                    raise ProviderError(
                        f"{self.provider} task {task_id} was cancelled at the provider",
                        provider=self.provider,
                        provider_code="cancelled",
                    )
                pct = int(round((status.progress or 0.0) * 100))
                stage = "queued" if status.status == "queued" else "polling"
                ctx.progress(
                    stage,
                    pct,
                    100,
                    message=f"{self.provider}: {status.raw_status or status.status}",
                    task_id=task_id,
                    status=status.status,
                    eta=status.eta,
                )
            now = time.monotonic()
            if now >= deadline:
                shown = status.raw_status or status.status if status else "unknown"
                raise ProviderTimeout(
                    f"{self.provider} task {task_id} did not finish before the deadline (last status: {shown}); "
                    f"it may still finish: resume it with `kinema resume` or resume_task_id={task_id!r} "
                    f"(raise options.timeout to wait longer)",
                    provider=self.provider,
                    provider_code="deadline",
                )
            if status is not None:
                base = status.poll_after if status.poll_after is not None else loop.poll_interval
                wait = _jittered(
                    min(loop.max_poll_interval, max(base, loop.poll_interval) * loop.backoff**n), loop.jitter
                )
                n += 1
                self._sleep(wait, ctx, deadline, wake=ctx.resume_info.get(POLL_NOW))
            try:
                status = self._call(lambda: self.fetch(client, task_id, info))
                failures = 0
            except KinemaError as exc:
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise
                failures += 1
                retry_after = getattr(exc, "retry_after", None)
                wait = (
                    retry_after
                    if retry_after is not None
                    else _jittered(min(loop.max_poll_interval, loop.poll_interval * 2**failures), loop.jitter)
                )
                log.info("%s: poll of %s failed (%s); retrying in %.1fs", self.provider, task_id, exc, wait)
                self._sleep(wait, ctx, deadline)
                status = None
                continue

    def _download(
        self,
        client: Any,
        task_id: str,
        info: dict[str, Any],
        status: TaskStatus,
        ctx: GenerationContext,
        loop: LoopOptions,
    ) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="kinema-dl-"))
        dest = folder / "output.mp4"
        last: BaseException | None = None
        refresh = False
        for attempt in range(1, loop.download_retries + 1):
            ctx.progress("downloading", attempt - 1, loop.download_retries, task_id=task_id)
            try:
                if refresh:  # the output URL expired: a new look at the task hands out fresh ones
                    status = self._call(lambda: self.fetch(client, task_id, info))
                    if status.status == "failed":
                        raise self.failure_error(task_id, status)
                    if status.status != "completed":
                        raise ProviderError(
                            f"{self.provider} task {task_id} is {status.status} after completing; cannot download",
                            provider=self.provider,
                            provider_code="not_completed",
                            status_code=409,
                        )
                    refresh = False
                self._call(lambda: self.download(client, task_id, info, status, dest, loop))  # noqa: B023
                if dest.is_file() and dest.stat().st_size > 0:
                    return dest
                raise ProviderError(
                    f"{self.provider} download of task {task_id} was empty",
                    provider=self.provider,
                    provider_code="empty_download",
                )
            except UrlExpired as exc:
                last, refresh = exc, True
                log.info("%s: output URL of %s expired; fetching the task again", self.provider, task_id)
            except KinemaError as exc:
                if not is_transient(exc):
                    raise
                last = exc
                retry_after = getattr(exc, "retry_after", None)
                wait = (
                    retry_after
                    if retry_after is not None
                    else _jittered(min(loop.max_poll_interval, loop.poll_interval * 2**attempt), loop.jitter)
                )
                log.info(
                    "%s: download of %s failed (%s); retry %d in %.1fs", self.provider, task_id, exc, attempt, wait
                )
                self._sleep(wait, ctx)
        # the generation itself succeeded and is paid for: say how to fetch it again instead of generating again
        err = ProviderError(
            f"{self.provider} task {task_id} finished but its download failed {loop.download_retries} times "
            f"(last error: {last}); the result is not lost: retry with `kinema resume` or "
            f"resume_task_id={task_id!r}",
            provider=self.provider,
            provider_code="download_failed",
        )
        raise self._scrub(err)

    def download_url(self, url: str, dest: Path, loop: LoopOptions, headers: dict[str, str] | None = None) -> None:
        """Stream ``url`` to ``dest``. 401/403/404/410 mean the signed URL expired (:class:`UrlExpired`)."""
        import httpx

        try:
            with httpx.stream(
                "GET", url, headers=headers, timeout=loop.request_timeout, follow_redirects=True
            ) as resp:
                if resp.status_code in (401, 403, 404, 410):
                    raise UrlExpired(f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    resp.read()
                    raise http_error(
                        self.provider,
                        resp.status_code,
                        f"download failed: {resp.text[:200]}",
                        headers=resp.headers,
                        moderated=False,
                    )
                with open(dest, "wb") as fh:
                    for chunk in resp.iter_bytes():
                        fh.write(chunk)
        except httpx.TransportError as exc:
            raise ProviderError(
                f"{self.provider} download failed: {type(exc).__name__}",
                provider=self.provider,
                provider_code="connection",
            ) from None

    def __repr__(self) -> str:
        # never the key: only the name and which variables it reads
        return f"<{type(self).__name__} {self.name!r} keys from {', '.join(self.env_keys) or 'none'}>"


def _close_quietly(client: Any) -> None:
    """Close an SDK / httpx client's connections (the replicate SDK keeps its httpx client in ``_client``)."""
    for target in (client, getattr(client, "_client", None)):
        close = getattr(target, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # pragma: no cover - closing is best effort
                log.debug("closing %r failed", target, exc_info=True)
            return


def client_token(ctx: GenerationContext) -> str:
    """This generation's client token: the caller's (``resume_info["client_token"]``, e.g. a job id, so a retry
    after a crash finds the same task) or a fresh one."""
    given = ctx.resume_info.get("client_token")
    if isinstance(given, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", given):
        return given
    return "kinema-" + uuid.uuid4().hex


def _request_record(params: GenerationParams) -> dict[str, Any]:
    """What a resume needs to rebuild the request (no image data, no secrets)."""
    image = params.image_source if isinstance(params.image_source, str) else None
    record: dict[str, Any] = {
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "backend": params.backend,
        "model": params.model,
        "width": params.width,
        "height": params.height,
        "num_frames": params.num_frames,
        "fps": params.fps,
        "image": image,
        "options": {k: v for k, v in params.options.items() if isinstance(v, str | int | float | bool)},
    }
    # the edit / keyframe / reference inputs, where they are paths or URLs: without them a rebuilt request would be
    # another mode (an aleph2 edit rebuilt as text-to-video is refused); data given as bytes is never stored
    if isinstance(params.source_video_path, str):
        record["source_video"] = params.source_video_path
    if params.strength is not None:  # else a rebuilt edit would get the default strength in its recipe
        record["strength"] = params.strength
    if isinstance(params.last_image_source, str):
        record["last_image"] = params.last_image_source
    if params.reference_sources and all(isinstance(r, str) for r in params.reference_sources):
        record["references"] = list(params.reference_sources)
    return record


def ratio_in(value: str) -> tuple[int, int]:
    """(w, h) integers of "16:9" or "1280:720"."""
    a, b = value.split(":")
    return int(a), int(b)


def known_ratio(width: int, height: int, ratios: tuple[str, ...]) -> str:
    """The listed aspect ratio closest to width:height (for APIs that take a ratio, not pixels)."""
    return ratio_of(width, height, [r for r in ratios if r in ASPECT_RATIOS] or list(ratios))


def short_side_name(width: int, height: int, names: dict[str, int]) -> str:
    """The resolution name ("720p") whose short side is closest to this size's."""
    short = min(width, height)
    return min(names, key=lambda n: abs(names[n] - short))
