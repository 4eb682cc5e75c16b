"""The shared fake-server base: routing, scripted trouble, counters and expiring output URLs.

A provider fake subclasses :class:`FakeServer`, registers its routes with :meth:`route` (each tagged with a kind:
``submit``, ``poll``, ``download`` or ``other``), and implements :meth:`auth_error` and :meth:`error_body` in its
provider's words. Tests then script trouble::

    fake.outcome = "moderate"                     # the next tasks end in a moderation rejection
    fake.inject("submit", status=429, times=1, retry_after=1)
    fake.inject("poll", status=503, times=2)
    fake.download_failures = 2                     # the file host answers 500 twice
    fake.expire_urls = 1                           # the first output URL handed out is already expired
    fake.delay["poll"] = 0.5                       # slow answers

    fake.drop_submit_answers = 1                   # the next submit is accepted (paid) but its answer is lost
    fake.drop_answers["upload"] = 1                # the next request of a kind is handled, its answer lost
    fake.finish_after = 1.0                        # tasks finish by time, not by poll count

Where a submit asks for a webhook (fal ``fal_webhook``, Replicate ``webhook``, Luma/Kling ``callback_url``, Pictory
and ModelsLab ``webhook``), the fake POSTs the provider's payload to it when the task finishes (signed where the
provider signs: see :meth:`FakeServer.webhook_headers`); ``fake.webhook_calls`` records (url, HTTP status) of each.

and assert on the counters: ``fake.submissions`` (accepted, i.e. paid, generations), ``fake.submit_attempts``,
``fake.polls``, ``fake.downloads``, ``fake.cancels`` and ``fake.log`` (every request: method, path, headers,
body).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> as is; None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    drop: bool = False  # close the connection without answering (the answer is lost on the way)


@dataclass
class FakeTask:
    id: str
    input: dict[str, Any]
    outcome: str
    polls: int = 0
    throttled: int = 0
    created: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Injection:
    status: int
    times: int
    retry_after: float | None
    body: Any = None


class FakeServer:
    """A provider's API on 127.0.0.1:<free port>, in a daemon thread. Use as a context manager or call close()."""

    provider = "fake"

    def __init__(self, video: bytes, key: str = "test-key-0123456789") -> None:
        self.video = video
        self.key = key
        self.routes: list[tuple[str, re.Pattern[str], str, Callable[[Request], Response]]] = []
        self.lock = threading.Lock()
        # scripted behaviour
        self.outcome = "succeed"  # succeed | fail | moderate
        self.polls_to_finish = 3  # the poll that sees the terminal state (1: queued, 2: running, 3: done)
        self.throttled_polls = 0  # providers with a throttled state report it for this many polls first
        self.injections: dict[str, list[_Injection]] = {}
        self.delay: dict[str, float] = {}
        self.slow_next: dict[str, tuple[float, int]] = {}  # kind -> (seconds, how many requests)
        self.download_failures = 0
        self.expire_urls = 0
        self.drop_submit_answers = 0  # accept (and bill) the next N submits, then lose their answers
        self.drop_answers: dict[str, int] = {}  # kind -> the next N answers of that kind are lost (done, unanswered)
        self.retired_models: dict[str, str] = {}  # model -> the provider's refusal
        self.finish_after: float | None = None  # seconds from submit to the terminal state (None: by poll count)
        self.webhook_calls: list[tuple[str, int | None]] = []  # (url, status answered; None: no answer)
        # counters
        self.submissions = 0
        self.submit_attempts = 0
        self.polls = 0
        self.cancels = 0  # cancel calls received (kind "cancel")
        self.downloads = 0
        self.log: list[Request] = []
        self.tasks: dict[str, FakeTask] = {}
        self.files: dict[str, bool] = {}  # token -> expired?
        self.rate_limited_at: list[float] = []
        self.request_times: list[tuple[str, float]] = []
        self.setup_routes()
        self.route("GET", r"/files/(?P<token>[A-Za-z0-9_-]+)\.mp4", self._serve_file, kind="download")
        self.route(
            "GET", r"/assets/input\.png", lambda req: Response(200, tiny_png(), content_type="image/png"), kind="asset"
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # -- for subclasses -----------------------------------------------------------------------------------------
    def setup_routes(self) -> None:
        raise NotImplementedError

    def auth_error(self, req: Request) -> Response | None:
        """The provider's answer to a request without the right credentials, or None when they are right."""
        return None

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        return {"error": message}

    # -- helpers for subclasses ---------------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Callable[[Request], Response], kind: str = "other") -> None:
        self.routes.append((method, re.compile(pattern + r"/?$"), kind, handler))

    def new_task(self, task_input: dict[str, Any], task_id: str | None = None) -> FakeTask:
        """Record one accepted (i.e. paid) generation."""
        with self.lock:
            self.submissions += 1
            task = FakeTask(task_id or secrets.token_hex(8), task_input, self.outcome, throttled=self.throttled_polls)
            self.tasks[task.id] = task
            return task

    def advance(self, task: FakeTask) -> str:
        """One poll of a task: 'throttled', 'queued', 'running' or the task's outcome ('succeed'...)."""
        if self.finish_after is not None:
            with self.lock:
                task.polls += 1
            return self.phase(task)
        with self.lock:
            task.polls += 1
            if task.throttled > 0:
                task.throttled -= 1
                return "throttled"
            if task.polls >= self.polls_to_finish:
                return task.outcome
            return "queued" if task.polls == 1 else "running"

    def phase(self, task: FakeTask) -> str:
        """The task's state without counting a poll."""
        if self.finish_after is not None:
            return task.outcome if time.time() - task.created >= self.finish_after else "running"
        if task.polls >= self.polls_to_finish:
            return task.outcome
        return "queued" if task.polls <= 1 else "running"

    def output_url(self) -> str:
        """A fresh signed URL of the result; the first ``expire_urls`` handed out are already expired."""
        with self.lock:
            token = secrets.token_urlsafe(12).replace("-", "a").replace("_", "b")
            expired = self.expire_urls > 0
            if expired:
                self.expire_urls -= 1
            self.files[token] = expired
        return f"{self.url}/files/{token}.mp4"

    # -- webhooks: the provider calls back the URL a submit gave ----------------------------------------------------
    def schedule_webhook(self, task: FakeTask, url: str | None) -> None:
        """Call ``url`` back when ``task`` finishes (``finish_after``; at once in poll-count mode)."""
        if not url:
            return
        task.extra["webhook"] = url
        delay = self.finish_after + 0.05 if self.finish_after is not None else 0.0
        timer = threading.Timer(delay, self.call_webhook, args=(task, url))
        timer.daemon = True
        timer.start()

    def call_webhook(self, task: FakeTask, url: str, body: Any = None, headers: dict[str, str] | None = None) -> int:
        """POST the provider's callback for ``task`` to ``url`` (or ``body``/``headers`` as given: a forgery);
        returns the HTTP status (0 when nothing answered)."""
        import urllib.error
        import urllib.request

        payload = json.dumps(self.webhook_payload(task) if body is None else body).encode()
        sent = {"Content-Type": "application/json", **(self.webhook_headers(payload) if headers is None else headers)}
        request = urllib.request.Request(url, data=payload, headers=sent, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status = int(resp.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except OSError:
            status = 0
        with self.lock:
            self.webhook_calls.append((url, status))
        return status

    def webhook_payload(self, task: FakeTask) -> Any:
        """What the provider POSTs when a task ends (its task object, in its words)."""
        return {"id": task.id, "status": self.phase(task)}

    def webhook_headers(self, payload: bytes) -> dict[str, str]:
        """The signature headers of a callback; providers that do not sign send none."""
        return {}

    def inject(
        self, kind: str, *, status: int, times: int = 1, retry_after: float | None = None, body: Any = None
    ) -> None:
        """Answer the next ``times`` requests of ``kind`` with ``status`` (429 gets Retry-After)."""
        self.injections.setdefault(kind, []).append(_Injection(status, times, retry_after, body))

    @property
    def image_url(self) -> str:
        """A public URL of a small PNG (for APIs that take the input image by URL)."""
        return f"{self.url}/assets/input.png"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the file host --------------------------------------------------------------------------------------------
    def _serve_file(self, req: Request) -> Response:
        token = req.match.group("token") if req.match else ""
        with self.lock:
            if token not in self.files:
                self.downloads += 1
                return Response(404, b"NoSuchKey", content_type="text/plain")
            expired = self.files[token]
        return self.serve_video(expired=expired)

    def serve_video(self, expired: bool = False) -> Response:
        """The result file, unless the URL expired or a download failure is scripted."""
        with self.lock:
            self.downloads += 1
            if expired:
                # what S3/GCS/CloudFront say about a signed URL past its expiry
                return Response(
                    403,
                    b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                    content_type="application/xml",
                )
            if self.download_failures > 0:
                self.download_failures -= 1
                return Response(500, b"Internal Server Error", content_type="text/plain")
        return Response(200, self.video, content_type="video/mp4")

    # -- dispatch ---------------------------------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> Response:
        for method, pattern, kind, handler in self.routes:
            if method != req.method:
                continue
            m = pattern.match(req.path)
            if not m:
                continue
            req.match = m
            with self.lock:
                self.request_times.append((kind, time.monotonic()))
            if kind not in ("download", "asset"):
                denied = self.auth_error(req)
                if denied is not None:
                    return denied
            if kind == "submit":
                with self.lock:
                    self.submit_attempts += 1
            if self.delay.get(kind):
                time.sleep(self.delay[kind])
            with self.lock:
                slow = self.slow_next.get(kind)
                if slow and slow[1] > 0:
                    self.slow_next[kind] = (slow[0], slow[1] - 1)
            if slow and slow[1] > 0:
                time.sleep(slow[0])
            injected = self._injected(kind)
            if injected is not None:
                return injected
            if kind == "poll":
                with self.lock:
                    self.polls += 1
            if kind == "cancel":
                with self.lock:
                    self.cancels += 1
            resp = handler(req)
            with self.lock:
                if self.drop_answers.get(kind, 0) > 0:
                    self.drop_answers[kind] -= 1
                    resp.drop = True
            if kind == "submit" and resp.status < 400:
                with self.lock:
                    if self.drop_submit_answers > 0:
                        self.drop_submit_answers -= 1
                        resp.drop = True
            return resp
        return Response(404, self.error_body(404, f"no route for {req.method} {req.path}", "not_found"))

    def _injected(self, kind: str) -> Response | None:
        with self.lock:
            queue = self.injections.get(kind) or []
            if not queue:
                return None
            inj = queue[0]
            inj.times -= 1
            if inj.times <= 0:
                queue.pop(0)
            if inj.status == 429:
                self.rate_limited_at.append(time.monotonic())
        headers = {}
        if inj.retry_after is not None:
            headers["Retry-After"] = f"{inj.retry_after:g}"
        message = "Too many requests" if inj.status == 429 else "Service temporarily unavailable"
        body = (
            inj.body
            if inj.body is not None
            else self.error_body(inj.status, message, "rate_limited" if inj.status == 429 else None)
        )
        return Response(inj.status, body, headers)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake.lock:
                    fake.log.append(req)
                try:
                    resp = fake._dispatch(req)
                except Exception as exc:  # a bug in a fake should show up as a 500, not hang the client
                    resp = Response(500, {"error": f"fake crashed: {type(exc).__name__}: {exc}"})
                if resp.drop:  # the task exists, but its answer never reaches the client
                    self.close_connection = True
                    return
                if isinstance(resp.body, bytes):
                    payload, ctype = resp.body, resp.content_type or "application/octet-stream"
                elif resp.body is None:
                    payload, ctype = b"", resp.content_type or "application/json"
                else:
                    payload, ctype = json.dumps(resp.body).encode(), resp.content_type or "application/json"
                try:
                    self.send_response(resp.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        return Handler


def bearer_ok(req: Request, key: str) -> bool:
    return req.header("authorization") == f"Bearer {key}"


def parse_multipart(req: Request) -> tuple[dict[str, str], dict[str, tuple[str | None, bytes]]]:
    """(fields, files) of a multipart/form-data body."""
    from email.parser import BytesParser
    from email.policy import default

    ctype = req.header("content-type") or ""
    msg = BytesParser(policy=default).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        assert isinstance(data, bytes)  # decode=True on a leaf part gives its bytes
        filename = part.get_filename()
        if filename is not None:
            files[str(name)] = (filename, data)
        else:
            fields[str(name)] = data.decode("utf-8")
    return fields, files


def tiny_png(width: int = 32, height: int = 32) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    arr = np.zeros((height, width, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
