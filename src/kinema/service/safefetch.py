"""One SSRF-safe HTTP client for every URL the service fetches (input images, webhook targets).

The rules (OWASP SSRF cheat sheet, reliability.md 2.5):

* only ``http`` and ``https``; no credentials in the URL;
* the host is resolved once and *every* answer must be a public address (``not is_global`` or on the block list
  below: loopback, private, link-local and cloud metadata, CGNAT, multicast, reserved, documentation ranges,
  IPv4-mapped/NAT64/6to4 IPv6 forms of those); metadata and ``localhost`` names are refused by name;
* numeric hosts in odd encodings (``2130706433``, ``0x7f000001``, ``017700000001``, ``127.1``) are refused: the
  parsers disagree about them, which is how filters get bypassed;
* the connection goes to the address that was checked (pinned; ``Host`` and TLS SNI keep the name), so a DNS answer
  that changes between check and connect (rebinding) cannot redirect it;
* redirects are not followed unless asked, and then every hop is checked again (at most ``max_redirects``);
* errors are generic: they never echo the resolved address.

Python before 3.12.4/3.11.10 classifies some ranges wrongly (CVE-2024-4032), so the explicit block list is checked
as well as ``is_global``. ``allow_hosts`` (names or CIDR ranges) lets an operator trust internal hosts explicitly.

>>> fetcher = SafeFetcher()
>>> fetcher.check_url("http://169.254.169.254/latest/meta-data")
Traceback (most recent call last):
...
kinema.errors.URLRefused: url: refused: the address is not a public internet address
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from ..errors import URLRefused

__all__ = ["SafeFetcher", "URLRefused", "FetchResponse", "is_public_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_BLOCKED_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
    )
]
_BLOCKED_V6 = [
    ipaddress.ip_network(n)
    for n in (
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
_BLOCKED_NAMES = (
    "localhost",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
)
_BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (IPv4-mapped and NAT64 IPv6 judged by their IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if any(ip in net for net in _BLOCKED_V6):
            return False
    elif any(ip in net for net in _BLOCKED_V4):
        return False
    return bool(ip.is_global) and not ip.is_multicast


def _default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass
class FetchResponse:
    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str
    history: list[str] = field(default_factory=list)


class SafeFetcher:
    """Fetch user-supplied URLs without reaching internal addresses. See the module docstring for the rules."""

    def __init__(
        self,
        allow_hosts: Iterable[str] = (),
        *,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
        max_redirects: int = 5,
        timeout: float = 15.0,
    ) -> None:
        self.allow_names: set[str] = set()
        self.allow_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allow_hosts:
            item = item.strip().lower()
            if not item:
                continue
            try:
                self.allow_nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.allow_names.add(item)
        self.resolver = resolver or _default_resolver
        self.transport = transport
        self.max_redirects = max_redirects
        self.timeout = timeout

    # -- checks ---------------------------------------------------------------------------------------------
    def check_url(self, url: str, field: str = "url") -> tuple[httpx.URL, str]:
        """Validate ``url`` and resolve it; returns (parsed URL, the address to connect to)."""
        try:
            parsed = httpx.URL(url)
        except Exception:
            raise URLRefused("not a valid URL", field=field) from None
        if parsed.scheme not in ("http", "https"):
            raise URLRefused("only http and https URLs are allowed", field=field)
        if parsed.userinfo:
            raise URLRefused("credentials in the URL are not allowed", field=field)
        host = parsed.raw_host.decode("ascii", "replace").lower().rstrip(".")
        if not host:
            raise URLRefused("the URL has no host", field=field)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        allowed_name = host in self.allow_names
        literal = _ip_literal(host)
        if literal is None:
            if _looks_numeric(host):
                raise URLRefused("the host is a numeric address in an unusual encoding", field=field)
            labels = host.split(".")
            if not all(_LABEL.match(label) for label in labels):
                raise URLRefused("the host name is not valid", field=field)
            if not allowed_name and (host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES)):
                raise URLRefused("the host is an internal name", field=field)
            try:
                answers = self.resolver(host, port)
            except OSError:
                raise URLRefused("the host name could not be resolved", field=field) from None
            addresses = [_ip_literal(a.split("%")[0]) for a in answers]
            if not addresses or any(a is None for a in addresses):
                raise URLRefused("the host name could not be resolved", field=field)
        else:
            addresses = [literal]
        checked: list[IPAddress] = [a for a in addresses if a is not None]
        # every answer must pass: a name that also resolves to an internal address is refused outright
        for ip in checked:
            if not (allowed_name or self._allowed_ip(ip) or is_public_address(ip)):
                raise URLRefused("the address is not a public internet address", field=field, detail=f"{host} -> {ip}")
        return parsed, str(checked[0])

    def _allowed_ip(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow_nets)

    # -- requests -------------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = False,
        max_bytes: int = 20 * 2**20,
        timeout: float | None = None,
        field: str = "url",
    ) -> FetchResponse:
        """One request (and, if asked, its redirects), each hop checked and pinned to its checked address."""
        history: list[str] = []
        current = url
        with httpx.Client(
            transport=self.transport, follow_redirects=False, trust_env=False, timeout=timeout or self.timeout
        ) as client:
            for _hop in range(self.max_redirects + 1):
                parsed, address = self.check_url(current, field)
                pinned = parsed.copy_with(host=address)
                req_headers = {"Host": _host_header(parsed), "User-Agent": "kinema", **(headers or {})}
                extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
                req = client.build_request(method, pinned, content=content, headers=req_headers, extensions=extensions)
                resp = client.send(req, stream=True)
                try:
                    if follow_redirects and resp.is_redirect and "location" in resp.headers:
                        history.append(current)
                        current = str(parsed.join(resp.headers["location"]))
                        if resp.status_code in (301, 302, 303):
                            method, content = "GET", None
                        continue
                    body = _read_limited(resp, max_bytes, field)
                    return FetchResponse(resp.status_code, resp.headers, body, current, history)
                finally:
                    resp.close()
        raise URLRefused(f"more than {self.max_redirects} redirects", field=field)

    def get_bytes(self, url: str, *, max_bytes: int, field: str = "url") -> bytes:
        """GET a resource (following checked redirects); non-2xx answers are refused with a generic message."""
        try:
            resp = self.request("GET", url, follow_redirects=True, max_bytes=max_bytes, field=field)
        except httpx.HTTPError:
            raise URLRefused("the URL could not be fetched", field=field) from None
        if not 200 <= resp.status_code < 300:
            raise URLRefused(f"the URL answered HTTP {resp.status_code}", field=field)
        return resp.content


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _looks_numeric(host: str) -> bool:
    """Hosts that inet_aton would read as an address although they are not a canonical dotted quad."""
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        pass
    last = host.rsplit(".", 1)[-1]
    # WHATWG URL parsing treats a host whose last label is a number (decimal, 0x hex, octal) as IPv4
    return bool(re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", last))


def _host_header(url: httpx.URL) -> str:
    host = url.raw_host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    return host if url.port is None else f"{host}:{url.port}"


def _read_limited(resp: httpx.Response, max_bytes: int, field: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise URLRefused(f"the response is larger than {max_bytes} bytes", field=field)
        chunks.append(chunk)
    return b"".join(chunks)
