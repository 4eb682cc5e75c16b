"""SSRF (R9): every URL the server fetches goes through SafeFetcher; internal targets are refused with no
connection opened, redirects are re-checked per hop, and the checked address is the one connected to."""

from __future__ import annotations

import socket

import httpx
import pytest
from conftest import make_config
from fastapi.testclient import TestClient

from kinema.service.app import create_app
from kinema.service.safefetch import SafeFetcher, URLRefused, is_public_address
from kinema.service.store import Store

PUBLIC = "93.184.216.34"
REFUSED = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://100.64.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://127.1/",
    "file:///etc/passwd",
    "gopher://example.com:70/_GET",
    "http://user:pw@example.com/",
    "http://[fe80::1]/",
    "http://224.0.0.1/",
    "http://[64:ff9b::7f00:1]/",
    "http://[fd00::1]/",
    "http://internal.example/",
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list:
    """Fail loudly if anything opens a connection or resolves a name for real."""
    opened: list = []

    def refuse(*args, **kwargs):
        opened.append(args)
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return opened


def _resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        answers = table.get(host)
        if answers is None:
            raise socket.gaierror("unknown")
        return answers.pop(0) if answers and isinstance(answers[0], list) else answers

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize("url", REFUSED)
def test_internal_targets_are_refused_without_a_connection(url: str, no_network: list) -> None:
    fetcher = SafeFetcher(resolver=_resolver({"example.com": [PUBLIC], "internal.example": ["10.1.2.3"]}))
    with pytest.raises(URLRefused) as info:
        fetcher.get_bytes(url, max_bytes=1000)
    assert "10.1.2.3" not in str(info.value) and "127.0.0.1" not in str(info.value).split("refused")[1]
    assert no_network == []


def test_mixed_answers_with_one_private_address_are_refused(no_network: list) -> None:
    fetcher = SafeFetcher(resolver=_resolver({"mixed.example": [PUBLIC, "::1"]}))
    with pytest.raises(URLRefused):
        fetcher.check_url("https://mixed.example/a.png")


def test_redirect_to_loopback_is_rechecked_and_refused(no_network: list) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "http://127.0.0.1/admin"})

    fetcher = SafeFetcher(resolver=_resolver({"public.example": [PUBLIC]}), transport=httpx.MockTransport(handler))
    with pytest.raises(URLRefused):
        fetcher.get_bytes("http://public.example/a.png", max_bytes=1000)
    assert len(seen) == 1
    assert seen[0].url.host == PUBLIC and seen[0].headers["host"] == "public.example"  # pinned, name kept


def test_dns_rebinding_cannot_move_the_connection(no_network: list) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"image bytes")

    resolver = _resolver({"rebind.example": [[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]]})
    fetcher = SafeFetcher(resolver=resolver, transport=httpx.MockTransport(handler))
    assert fetcher.get_bytes("https://rebind.example/a.png", max_bytes=1000) == b"image bytes"
    assert resolver.calls == ["rebind.example"]  # resolved once: checked and connected address are the same
    assert seen[0].url.host == PUBLIC and seen[0].extensions.get("sni_hostname") == "rebind.example"
    # the second answer (private) is refused when it is the one a later request gets
    with pytest.raises(URLRefused):
        fetcher.get_bytes("https://rebind.example/a.png", max_bytes=1000)


def test_allow_list_trusts_named_internal_hosts() -> None:
    fetcher = SafeFetcher(
        ["127.0.0.1", "10.0.0.0/8", "render.internal"], resolver=_resolver({"render.internal": ["10.9.9.9"]})
    )
    assert fetcher.check_url("http://127.0.0.1:9000/hook")[1] == "127.0.0.1"
    assert fetcher.check_url("http://render.internal/x")[1] == "10.9.9.9"
    with pytest.raises(URLRefused):
        fetcher.check_url("http://192.168.0.1/")


def test_public_address_classification() -> None:
    import ipaddress

    assert is_public_address(ipaddress.ip_address(PUBLIC))
    assert is_public_address(ipaddress.ip_address("2606:4700:4700::1111"))
    for bad in ("100.64.0.1", "::ffff:10.0.0.1", "192.0.0.9", "198.18.0.1", "ff02::1", "2002:7f00:1::"):
        assert not is_public_address(ipaddress.ip_address(bad)), bad


def test_api_refuses_internal_image_and_webhook_urls(tmp_path, no_network: list) -> None:
    cfg = make_config(tmp_path, workers=0)
    store = Store(cfg.db_path)
    key = store.create_key("a")[1]
    with TestClient(create_app(cfg, store=store), headers={"Authorization": f"Bearer {key}"}) as client:
        body = {"prompt": "p", "model": "builtin"}
        r = client.post("/v1/videos", json={**body, "input_reference": {"image_url": "http://169.254.169.254/x"}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "url_refused"
        assert r.json()["error"]["param"] == "input_reference"
        r = client.post("/v1/videos", json={**body, "webhook_url": "http://10.0.0.1/hook"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "webhook_url"
        assert store.queue_depth() == 0
    assert no_network == []
