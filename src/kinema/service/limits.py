"""Limits on how a client sends a request, enforced in the HTTP protocol itself, before any key is checked.

uvicorn's default parser (httptools) buffers a request's headers however long they are, and waits for headers and
bodies however slowly they arrive: one client could hold memory (a 32 MB header) or connections (a body sent one
byte a minute) without a key. :func:`uvicorn_options` gives uvicorn a protocol class that

* answers **431** once the request line and headers pass ``max_header_bytes`` (the excess is never buffered),
* answers **408** when the headers are not complete ``header_timeout`` seconds after the connection opened (or after
  the first byte of a later request on it; an idle connection that sent nothing is just closed),
* answers **408** when the body is not complete ``body_timeout`` seconds after the headers. The app's
  :class:`~kinema.service.security.BodyLimitMiddleware` answers a body it is waiting for at that deadline; the
  protocol's deadline, a little later, covers bodies no route reads.

After such an answer the connection is shut for writing and what the client still sends is discarded, unread, for
:data:`LINGER_SECONDS`, so the answer reaches it instead of being lost to a reset. ``kinema serve`` uses these
options; an application embedding :func:`~kinema.service.app.create_app` in its own uvicorn passes them too::

    uvicorn.run(create_app(config), **uvicorn_options(config))

Without httptools (it is in the ``server`` extra) uvicorn's h11 parser is used, with h11's own bound on the headers
(answered 400) and without the header deadline.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ServiceConfig

__all__ = ["uvicorn_options", "http_protocol", "LINGER_SECONDS", "BODY_TIMEOUT_GRACE"]

#: after refusing a request, discard what the client still sends for this long before closing
LINGER_SECONDS = 2.0
#: the protocol's body deadline comes this much after the app's, which answers first when it reads the body
BODY_TIMEOUT_GRACE = 1.0


def uvicorn_options(config: ServiceConfig) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that enforce ``config``'s request limits."""
    return {
        "http": http_protocol(config.max_header_bytes, config.header_timeout, config.body_timeout),
        "h11_max_incomplete_event_size": config.max_header_bytes,
    }


def http_protocol(max_header_bytes: int, header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the three limits (uvicorn's h11 protocol when httptools is missing)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is in the server extra
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        """httptools' protocol that bounds the size and time of a request's head, and the time of its body."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True  # between a request's first byte (or the connection's start) and its headers' end
            self._head_bytes = 0
            self._heads = 0  # heads completed on this connection: tells whether a feed finished the current one
            self._deadline: asyncio.TimerHandle | None = None
            self._refused = False

        # -- the connection --------------------------------------------------------------------------------------
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(header_timeout, self._head_too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering after a refusal: dropped, never buffered
            if self._in_head:
                if self._deadline is None:  # the first byte of a later request on a kept-alive connection
                    self._arm(header_timeout, self._head_too_slow)
                room = max_header_bytes - self._head_bytes
                if len(data) > room:
                    heads = self._heads
                    if room > 0:
                        super().data_received(data[:room])
                    if self._refused or self.transport.is_closing():
                        return
                    if self._heads == heads:  # the allowance is spent and the headers have not ended
                        self._refuse_head(
                            431,
                            "request_header_too_large",
                            f"the request line and headers are larger than {max_header_bytes} bytes",
                        )
                        return
                    data = data[room:]
                else:
                    self._head_bytes += len(data)
            super().data_received(data)

        # -- the parser's callbacks ------------------------------------------------------------------------------
        def on_headers_complete(self) -> None:
            self._in_head = False
            self._heads += 1
            self._arm(body_timeout + BODY_TIMEOUT_GRACE, self._body_too_slow)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()
            # the next request's deadline starts with its first byte (uvicorn's keep-alive timeout covers the wait)
            self._in_head, self._head_bytes = True, 0

        # -- deadlines -------------------------------------------------------------------------------------------
        def _arm(self, seconds: float, callback: Any) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, callback)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _head_too_slow(self) -> None:
            self._deadline = None
            if not self._in_head or self.transport.is_closing():
                return
            if self._head_bytes == 0 and self._heads == 0:
                self.transport.close()  # nothing was asked: nothing to answer
                return
            self._refuse_head(
                408, "request_timeout", f"the request headers were not received within {header_timeout:g} s"
            )

        def _body_too_slow(self) -> None:
            self._deadline = None
            if self._in_head or self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is not None and cycle.response_started:
                self.transport.close()  # answered without reading the body: the rest of it is not wanted
                return
            if cycle is not None:
                cycle.disconnected = True  # the app's later writes go nowhere
                cycle.message_event.set()
            self._refuse(408, "request_timeout", f"the request body was not received within {body_timeout:g} s")

        # -- refusing --------------------------------------------------------------------------------------------
        def _refuse_head(self, status: int, code: str, message: str) -> None:
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.close()  # a pipelined head while the previous answer is being written: no room
                self._refused = True
                return
            self._refuse(status, code, message)

        def _refuse(self, status: int, code: str, message: str) -> None:
            self._refused = True
            self._disarm()
            self._unset_keepalive_if_required()
            body = json.dumps(
                {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
            ).encode()
            head = [
                f"HTTP/1.1 {status} {_REASONS[status]}".encode(),
                b"content-type: application/json",
                b"content-length: " + str(len(body)).encode(),
                b"connection: close",
            ]
            head += [name + b": " + value for name, value in self.server_state.default_headers]
            self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    return LimitedHttpToolsProtocol


_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}
