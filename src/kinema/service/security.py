"""Security of the job service: API keys, rate limits, request-size limits, uploaded images, safe URL fetching.

* API keys are random secrets (``kin_...``); only their SHA-256 is stored (see ``Store.create_key``). Clients send
  ``Authorization: Bearer <key>``; a key in the query string is refused (URLs end up in logs).
* Rate limits are token buckets per API key, one for job creation and one for everything else; over the limit the
  answer is 429 with an integer ``Retry-After``.
* Bodies over the limit get 413, also when they are streamed without a ``Content-Length``; a body not received
  within ``body_timeout`` seconds of the request's start gets 408 (a slow client must not hold a connection).
* Uploaded images are identified by their content (PNG, JPEG, WebP only), refused above a pixel limit
  (Pillow's decompression-bomb warning is an error here), fully decoded, and re-encoded as PNG: what reaches the
  model is pixels we wrote, never the uploaded bytes.
* Uploaded clips (edits, extensions, characters) are refused above a byte limit, then decoded in full
  (:func:`check_clip`): what is not a readable video, or decodes to more pixels than the limit, is refused before
  a job is stored.
* Every outbound URL goes through :class:`~kinema.service.safefetch.SafeFetcher`.

>>> limiter = RateLimiter(rate=1.0, burst=2)
>>> [limiter.check("key_a") for _ in range(3)][:2]
[None, None]
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest
from .safefetch import FetchResponse, SafeFetcher, URLRefused, is_public_address

__all__ = [
    "RateLimiter",
    "BodyLimitMiddleware",
    "RequestRefused",
    "check_image",
    "check_clip",
    "ClipTooLarge",
    "bearer_token",
    "SafeFetcher",
    "URLRefused",
    "FetchResponse",
    "is_public_address",
    "ALLOWED_IMAGE_FORMATS",
]

ALLOWED_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_IMAGE_SIDE = 8192


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> int | None:
        """None if allowed (a token is taken), else the whole seconds to wait (for ``Retry-After``)."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_image(data: bytes, *, max_pixels: int, max_bytes: int, field: str = "input_reference") -> bytes:
    """Validate an uploaded image by its content and return it re-encoded as PNG.

    Raises :class:`InvalidRequest` naming ``field`` for: too many bytes, a type other than PNG/JPEG/WebP, more
    than ``max_pixels`` pixels (a decompression bomb), or data that does not decode completely.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) > max_bytes:
        raise InvalidRequest(field, f"the image is {len(data)} bytes; at most {max_bytes} are allowed")
    if not data:
        raise InvalidRequest(field, "the image is empty")
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; here every excess is an error
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=list(ALLOWED_IMAGE_FORMATS))
            width, height = img.size
            if width * height > max_pixels or max(width, height) > MAX_IMAGE_SIDE:
                raise InvalidRequest(
                    field,
                    f"the image is {width}x{height}; at most {max_pixels} pixels and "
                    f"{MAX_IMAGE_SIDE} per side are allowed",
                )
            img.load()
            rgb = img.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidRequest(
                field,
                f"the image declares more pixels than allowed ({max_pixels}); it looks like a decompression bomb",
            ) from None
        except UnidentifiedImageError:
            raise InvalidRequest(
                field, "is not an image of an accepted type", allowed=", ".join(ALLOWED_IMAGE_FORMATS)
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, InvalidRequest):
                raise
            raise InvalidRequest(field, "the image data is corrupt or truncated") from None
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    return out.getvalue()


class ClipTooLarge(InvalidRequest):
    """A readable clip over the service's limits (a 400); a clip that is not readable is a plain InvalidRequest."""


def check_clip(path: Path, *, max_pixels: int, field: str = "video") -> dict[str, Any]:
    """Decode the clip at ``path`` and return what :func:`kinema.video.probe` says of it (``num_frames``,
    ``width``, ``height``, ``fps``, ``duration``).

    Raises :class:`InvalidRequest` naming ``field`` when it is not a readable video with at least one frame, and
    :class:`ClipTooLarge` when its frames hold more than ``max_pixels`` pixels together (the worker decodes the
    whole clip into memory).
    """
    from ..video import probe

    try:
        info = probe(path)
    except InvalidRequest:
        raise InvalidRequest(
            field, "is not a readable video (send an MP4, WebM or another clip FFmpeg decodes)", allowed="a video file"
        ) from None
    except Exception:  # noqa: BLE001 - whatever the decoder raises on hostile bytes is the same answer
        raise InvalidRequest(
            field, "is not a readable video (the decoder refused it)", allowed="a video file"
        ) from None
    frames, width, height = int(info["num_frames"]), int(info["width"]), int(info["height"])
    if frames < 1 or width < 1 or height < 1:
        raise InvalidRequest(field, "the video has no frames", allowed="a video file")
    if frames * width * height > max_pixels:
        raise ClipTooLarge(
            field,
            f"the video is {frames} frames of {width}x{height}: more than the {max_pixels} pixels allowed in all",
            value=frames,
        )
    return info


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimitMiddleware:
    """Answer 413 for bodies over ``max_bytes`` (``max_json_bytes`` for non-multipart bodies), whether announced by
    ``Content-Length`` or discovered while streaming; never reads more than the limit plus one chunk. With
    ``body_timeout``, a body not fully received that many seconds after the request began gets 408."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        max_bytes: int,
        max_json_bytes: int,
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)  # bodiless methods: no per-request cost on the hot read path
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctype = headers.get("content-type", "")
        limit = self.max_bytes if ctype.startswith("multipart/") else self.max_json_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _refuse(send, _BodyTooLarge(limit))
            return
        seen = 0
        started = False
        body_done = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout if self.body_timeout else None

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if deadline is None or body_done:
                # once the body is in, receive() only waits for a disconnect (streamed answers): no deadline
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise _BodyTimeout(self.body_timeout or 0.0) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestRefused as exc:
            if not started:
                await _refuse(send, exc)
        except Exception as exc:  # frameworks wrap errors raised inside receive()
            refused = _cause(exc, RequestRefused)
            if refused is None or started:
                raise
            await _refuse(send, refused)


class RequestRefused(Exception):
    """Raised inside ``receive()`` by :class:`BodyLimitMiddleware`, which answers it (413 or 408) itself: code that
    catches errors around reading a body must let it through."""

    status = 400
    code = "invalid_request"

    def message(self) -> str:
        return str(self)


class _BodyTooLarge(RequestRefused):
    status, code = 413, "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than the limit of {limit} bytes")


class _BodyTimeout(RequestRefused):
    status, code = 408, "request_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body was not received within {seconds:g} s")


def _cause(exc: BaseException, kind: type[RequestRefused]) -> RequestRefused | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        if isinstance(seen, BaseExceptionGroup):
            for inner in seen.exceptions:
                found = _cause(inner, kind)
                if found is not None:
                    return found
        seen = seen.__cause__ or seen.__context__
    return None


async def _refuse(send: Send, exc: RequestRefused) -> None:
    body = json.dumps(
        {"error": {"message": exc.message(), "type": "invalid_request_error", "param": None, "code": exc.code}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
