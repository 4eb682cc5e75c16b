"""Webhooks signed per the Standard Webhooks spec, delivered from a durable outbox with retries.

Each event is a row in ``webhook_deliveries`` before anything is sent (the outbox), so a crash loses no event. A
sender (running in ``kinema serve`` and in every ``kinema worker``) claims due rows, signs them afresh for each
attempt (``webhook-id`` stays the same, ``webhook-timestamp`` is the attempt's time) and records the answer:

* 2xx: delivered;  410: the endpoint is disabled (no more deliveries to it);
* 3xx: a failure, the redirect is *not* followed;  429/502/503/504: retried no sooner than ``Retry-After``;
* anything else, a timeout or a refused address: retried on an exponential schedule with +-20% jitter, until
  ``webhook_max_attempts``; the job itself is unaffected (clients can always poll).

Verify a delivery with any Standard Webhooks library, or with :func:`verify`:

>>> secret = new_secret()
>>> headers = sign_headers(secret, "msg_1", b'{"type":"video.completed"}', timestamp=1700000000)
>>> verify(secret, headers, b'{"type":"video.completed"}', now=1700000001)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import WebhookVerificationError

__all__ = [
    "new_secret",
    "sign",
    "sign_headers",
    "verify",
    "WebhookVerificationError",
    "WebhookSender",
    "EVENT_TYPES",
    "TOLERANCE_SECONDS",
]

log = logging.getLogger("kinema.service.webhooks")

EVENT_TYPES = ("video.started", "video.progress", "video.completed", "video.failed", "video.cancelled")
TOLERANCE_SECONDS = 5 * 60
_THROTTLE_STATUSES = (429, 502, 503, 504)


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    raw = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    raw += "=" * (-len(raw) % 4)  # tolerate unpadded secrets, as the reference libraries do
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise WebhookVerificationError("the secret is not valid base64") from None


def sign(secret: str, msg_id: str, timestamp: int, payload: bytes | str) -> str:
    """The ``v1,<base64>`` signature of ``msg_id.timestamp.payload`` (HMAC-SHA256)."""
    body = payload if isinstance(payload, bytes) else payload.encode()
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign_headers(secret: str, msg_id: str, payload: bytes | str, *, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, payload)}


def verify(
    secret: str,
    headers: Mapping[str, str],
    payload: bytes | str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise :class:`WebhookVerificationError` unless one of the ``v1`` signatures matches (constant time)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts_text, sigs = lower.get("webhook-id"), lower.get("webhook-timestamp"), lower.get("webhook-signature")
    if not msg_id or not ts_text or not sigs:
        raise WebhookVerificationError("missing required headers")
    try:
        ts = int(ts_text)
    except ValueError:
        raise WebhookVerificationError("invalid signature headers") from None
    now = time.time() if now is None else now
    if ts < now - tolerance:
        raise WebhookVerificationError("message timestamp too old")
    if ts > now + tolerance:
        raise WebhookVerificationError("message timestamp too new")
    expected = sign(secret, msg_id, ts, payload).split(",", 1)[1].encode()
    for item in sigs.split(" "):
        version, _, value = item.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise WebhookVerificationError("no matching signature found")


def retry_delay(attempt: int, schedule: tuple[float, ...], retry_after: float | None = None) -> float:
    """Seconds before the next try after ``attempt`` failed ones: the schedule with +-20% jitter, never below
    ``Retry-After``."""
    base = schedule[min(attempt - 1, len(schedule) - 1)] if schedule else 60.0
    delay = base * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class WebhookSender:
    """Deliver due events from the outbox. ``run_once`` sends one batch; ``start`` runs it in a thread."""

    def __init__(self, store: Any, config: Any, fetcher: Any, *, name: str | None = None) -> None:
        self.store = store
        self.config = config
        self.fetcher = fetcher
        self.name = name or "sender-" + secrets.token_hex(4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kinema-webhook")

    def run_once(self) -> int:
        due = self.store.claim_deliveries(self.name, limit=16, lease_seconds=self.config.webhook_timeout + 30)
        # one job's events go out in order; different jobs' in parallel
        by_job: dict[str, list[dict[str, Any]]] = {}
        for delivery in due:
            by_job.setdefault(delivery["job_id"], []).append(delivery)
        list(self._pool.map(lambda group: [self.deliver(d) for d in group], by_job.values()))
        return len(due)

    def deliver(self, delivery: dict[str, Any]) -> str:
        """One attempt; returns the delivery's new state."""
        url = delivery["url"]
        if self.store.endpoint_disabled(url):
            self.store.record_delivery(
                delivery["id"], status=None, error="endpoint disabled (410 earlier)", state="disabled", next_at=None
            )
            return "disabled"
        body = delivery["payload"].encode()
        headers = {
            "content-type": "application/json",
            **sign_headers(self.config.resolved_webhook_secret(), delivery["id"], body),
        }
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        permanent = False
        try:
            resp = self.fetcher.request(
                "POST",
                url,
                content=body,
                headers=headers,
                follow_redirects=False,
                max_bytes=64 * 1024,
                timeout=self.config.webhook_timeout,
                field="webhook_url",
            )
            status = resp.status_code
            if status in _THROTTLE_STATUSES:
                retry_after = _retry_after(resp.headers.get("retry-after"))
        except ValueError as exc:  # URLRefused: the target is not allowed, retrying will not help
            error, permanent = str(exc), True
        except Exception as exc:  # timeouts, refused connections: retried
            error = f"{type(exc).__name__}"
        attempt = int(delivery["attempts"]) + 1
        if status is not None and 200 <= status < 300:
            state, next_at = "delivered", None
        elif status == 410:
            self.store.record_delivery(
                delivery["id"], status=status, error="410 Gone: endpoint disabled", state="disabled", next_at=None
            )
            self.store.disable_endpoint(url, "answered 410 Gone")
            return "disabled"
        elif permanent or attempt >= self.config.webhook_max_attempts:
            state, next_at = "failed", None
        else:
            if status is not None and 300 <= status < 400:
                error = f"redirect {status} not followed"
            state = "pending"
            next_at = time.time() + retry_delay(attempt, tuple(self.config.webhook_schedule), retry_after)
        self.store.record_delivery(delivery["id"], status=status, error=error, state=state, next_at=next_at)
        return state

    def start(self, interval: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    sent = self.run_once()
                except Exception:  # the loop must survive a bad row or a locked database
                    log.exception("webhook sender iteration failed")
                    sent = 0
                if not sent:
                    self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="kinema-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)


def event_payload(event_type: str, video: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks envelope: type, timestamp and the video object as data."""
    import datetime as _dt

    return {
        "type": event_type,
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data": json.loads(json.dumps(video, default=str)),
    }
