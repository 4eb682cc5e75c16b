"""Webhooks: the Standard Webhooks signing scheme (R7, ported test cases), delivery rules (R8) and a real signed
delivery of a job's events to a local receiver, verified with the reference library."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import FAST, make_config, wait_for
from fastapi.testclient import TestClient

from kinema.service.app import create_app
from kinema.service.config import ServiceConfig
from kinema.service.safefetch import SafeFetcher
from kinema.service.store import Store
from kinema.service.webhooks import WebhookSender, WebhookVerificationError, new_secret, sign, sign_headers, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
PAYLOAD = b'{"test": 2432232314}'
TS = 1614265330


def _headers(**overrides: str) -> dict[str, str]:
    h = sign_headers(SECRET, MSG_ID, PAYLOAD, timestamp=TS)
    h.update(overrides)
    return {k: v for k, v in h.items() if v != ""}


# -- R7: the Standard Webhooks library's test cases, ported --------------------------------------------------------
def test_sign_matches_the_spec_vector() -> None:
    assert sign(SECRET, MSG_ID, TS, PAYLOAD) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_valid_signature_verifies() -> None:
    verify(SECRET, _headers(), PAYLOAD, now=TS)
    verify(SECRET, _headers(), PAYLOAD.decode(), now=TS)  # str or raw bytes


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify(SECRET, _headers(**{missing: ""}), PAYLOAD, now=TS)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"webhook-signature": "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="}, "no matching"),
        ({"webhook-signature": "v2," + sign(SECRET, MSG_ID, TS, PAYLOAD)[3:]}, "no matching"),  # unknown version
        ({"webhook-signature": sign(SECRET, MSG_ID, TS, PAYLOAD)[3:]}, "no matching"),  # no version prefix
        ({"webhook-timestamp": "not-a-number"}, "invalid"),
        ({"webhook-id": "msg_other"}, "no matching"),
    ],
)
def test_bad_signature_headers_are_rejected(change: dict[str, str], match: str) -> None:
    with pytest.raises(WebhookVerificationError, match=match):
        verify(SECRET, _headers(**change), PAYLOAD, now=TS)


def test_tampered_body_and_wrong_secret_are_rejected() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, _headers(), PAYLOAD + b" ", now=TS)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), _headers(), PAYLOAD, now=TS)


@pytest.mark.parametrize(("skew", "match"), [(-301, "too old"), (301, "too new")])
def test_timestamp_outside_five_minutes_is_rejected(skew: int, match: str) -> None:
    with pytest.raises(WebhookVerificationError, match=match):
        verify(SECRET, _headers(), PAYLOAD, now=TS - skew)


def test_multiple_signatures_one_valid_passes() -> None:
    good = sign(SECRET, MSG_ID, TS, PAYLOAD)
    many = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {good} v1,xyz="
    verify(SECRET, _headers(**{"webhook-signature": many}), PAYLOAD, now=TS)


def test_secret_prefix_and_padding_are_optional() -> None:
    bare = SECRET[len("whsec_") :]
    verify(bare, _headers(), PAYLOAD, now=TS)
    padded = new_secret()
    assert padded.endswith("=")  # 32 bytes in base64 always end with one "="
    assert sign(padded.rstrip("="), MSG_ID, TS, PAYLOAD) == sign(padded, MSG_ID, TS, PAYLOAD)


def test_reference_library_agrees() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = new_secret()
    headers = sign_headers(secret, "msg_x", PAYLOAD)
    assert Webhook(secret).verify(PAYLOAD, headers) == json.loads(PAYLOAD)


# -- R8: delivery rules --------------------------------------------------------------------------------------------
class _Script:
    """A receiver stub answering a scripted list of responses, recording what it got."""

    def __init__(self, answers: list[httpx.Response | Exception]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_delivery_retries_backoff_retry_after_redirects_and_410(tmp_path) -> None:
    cfg = ServiceConfig(
        data_dir=tmp_path, webhook_secret=SECRET, webhook_schedule=(10, 100, 1000, 5000), webhook_max_attempts=8
    )
    store = Store(cfg.db_path)
    script = _Script(
        [
            httpx.Response(500),
            httpx.ReadTimeout("slow"),
            httpx.Response(302, headers={"Location": "http://x.example/"}),
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(200),
            httpx.Response(410),
        ]
    )
    fetcher = SafeFetcher(resolver=lambda h, p: ["93.184.216.34"], transport=httpx.MockTransport(script))
    sender = WebhookSender(store, cfg, fetcher)
    msg = store.enqueue_delivery("video_1", "https://hooks.example/k", "video.completed", {"type": "video.completed"})

    def attempt() -> tuple[str, float]:
        row = next(d for d in store.deliveries() if d["id"] == msg)
        before = time.time()
        state = sender.deliver(row)
        row = next(d for d in store.deliveries() if d["id"] == msg)
        return state, row["next_at"] - before

    state, wait = attempt()  # 500
    assert state == "pending" and 8 <= wait <= 12  # 10 s +-20% jitter
    state, wait = attempt()  # timeout
    assert state == "pending" and 80 <= wait <= 120
    state, _ = attempt()  # 302: a failure, not followed
    assert state == "pending" and len(script.requests) == 3
    state, wait = attempt()  # 429 with Retry-After: 7 (schedule says more; never less than Retry-After)
    assert state == "pending" and wait >= 7
    state, _ = attempt()  # 200
    assert state == "delivered"
    ids = {r.headers["webhook-id"] for r in script.requests}
    assert ids == {msg}, "webhook-id is constant across attempts"
    for r in script.requests:
        verify(SECRET, dict(r.headers), r.content)
    log = next(d for d in store.deliveries() if d["id"] == msg)["log"]
    assert [a["status"] for a in log] == [500, None, 302, 429, 200]
    # 410 disables the endpoint: the delivery stops and later ones are not sent
    gone = store.enqueue_delivery("video_1", "https://hooks.example/k", "video.failed", {"type": "video.failed"})
    assert sender.deliver(next(d for d in store.deliveries() if d["id"] == gone)) == "disabled"
    assert store.endpoint_disabled("https://hooks.example/k")
    later = store.enqueue_delivery("video_2", "https://hooks.example/k", "video.started", {"type": "video.started"})
    assert sender.deliver(next(d for d in store.deliveries() if d["id"] == later)) == "disabled"
    assert len(script.requests) == 6


def test_delivery_gives_up_after_max_attempts(tmp_path) -> None:
    cfg = ServiceConfig(data_dir=tmp_path, webhook_secret=SECRET, webhook_max_attempts=2)
    store = Store(cfg.db_path)
    fetcher = SafeFetcher(
        resolver=lambda h, p: ["93.184.216.34"], transport=httpx.MockTransport(lambda r: httpx.Response(503))
    )
    sender = WebhookSender(store, cfg, fetcher)
    msg = store.enqueue_delivery("video_1", "https://hooks.example/k", "video.completed", {})
    row = lambda: next(d for d in store.deliveries() if d["id"] == msg)  # noqa: E731
    assert sender.deliver(row()) == "pending"
    assert sender.deliver(row()) == "failed"


# -- a real, signed delivery of a job's events ---------------------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_job_events_are_delivered_signed(tmp_path) -> None:
    from standardwebhooks.webhooks import Webhook

    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    cfg = make_config(tmp_path, allow_hosts=("127.0.0.1",), webhook_progress_interval=0.0)
    store = Store(cfg.db_path)
    key = store.create_key("a")[1]
    try:
        with TestClient(create_app(cfg, store=store), headers={"Authorization": f"Bearer {key}"}) as client:
            r = client.post(
                "/v1/videos", json={"prompt": "a red ball", **FAST, "webhook_url": hook, "metadata": {"order": "42"}}
            )
            assert r.status_code == 200, r.text
            vid = r.json()["id"]
            wait_for(lambda: any(b'"video.completed"' in body for _, body in _Receiver.received), timeout=60)
    finally:
        server.shutdown()
    wh = Webhook(cfg.resolved_webhook_secret())
    events = [wh.verify(body, headers) for headers, body in _Receiver.received]
    types = [e["type"] for e in events]
    assert types[0] == "video.started" and types[-1] == "video.completed" and "video.progress" in types
    assert all(e["data"]["id"] == vid and e["data"]["metadata"] == {"order": "42"} for e in events)
    assert events[-1]["data"]["status"] == "completed"
    assert len({h["webhook-id"] for h, _ in _Receiver.received}) == len(events)
    # the job's own store keeps every delivery and its log
    assert all(d["state"] == "delivered" for d in store.deliveries(vid))
