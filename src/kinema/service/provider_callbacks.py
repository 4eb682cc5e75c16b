"""Provider callbacks: ``POST /v1/provider-callbacks/{provider}/{job_id}?token=...``, a hint to poll now.

When the service has a public URL (``kinema serve --public-url``), a remote job's submit asks the provider to call
this route back (fal ``fal_webhook``, Replicate ``webhook``, Luma and Kling ``callback_url``, Pictory and ModelsLab
``webhook``). The URL carries a per-job random token stored with the job; where the provider signs its calls the
signature is verified too (Replicate: Standard Webhooks with the account's ``whsec_`` secret; fal: ED25519 against
fal's JWKS). A valid callback changes nothing but *when* the job's attempt polls: the poll stays the source of
truth, so a forged, replayed or lost callback can neither set a result nor stall a job. The body is never read for
anything but the signature.

Answers: 204 accepted (the attempt polls now), 404 no such job (or not one of this provider's), 401 a wrong token
or signature, 400 a provider Kinema takes no callbacks from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ..errors import WebhookVerificationError
from .errors import ERROR_RESPONSES, ApiError
from .webhooks import TOLERANCE_SECONDS, verify

if TYPE_CHECKING:
    from .config import ServiceConfig
    from .state import ServiceState
    from .store import Job

__all__ = ["CALLBACK_PROVIDERS", "callback_url", "provider_callback_routes", "verify_fal", "FalKeys"]

log = logging.getLogger("kinema.service.provider_callbacks")

#: backends whose submit takes a callback URL (the rest are polled only)
CALLBACK_PROVIDERS = ("fal", "replicate", "luma", "kling", "pictory", "modelslab")
#: fal's public keys (docs.fal.ai, "Webhooks": verify against this JWKS, cache it up to 24 h)
FAL_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
_JWKS_TTL = 24 * 3600.0


def callback_url(config: ServiceConfig, job: Job, token: str) -> str | None:
    """The URL the job's provider should call back, or None: no public URL, a backend without callbacks, or
    Replicate without a webhook secret to verify its signature with (then it is polled only)."""
    backend = str(job.request.get("backend") or "")
    if not config.public_url or backend not in CALLBACK_PROVIDERS:
        return None
    if backend == "replicate" and not config.resolved_replicate_webhook_secret():
        return None
    base = config.public_url.rstrip("/")
    return f"{base}/v1/provider-callbacks/{quote(backend)}/{quote(job.id)}?{urlencode({'token': token})}"


class FalKeys:
    """fal's ED25519 public keys: from ``config.fal_jwks`` (a JWKS dict, or a callable returning one: tests and
    air-gapped deployments), else fetched from :data:`FAL_JWKS_URL` and cached for 24 hours."""

    def __init__(
        self, source: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None, url: str = FAL_JWKS_URL
    ) -> None:
        self.source = source
        self.url = url
        self._cache: tuple[float, list[bytes]] | None = None
        self._lock = threading.Lock()

    def keys(self) -> list[bytes]:
        with self._lock:
            if self._cache is not None and time.monotonic() - self._cache[0] < _JWKS_TTL:
                return self._cache[1]
            jwks = self._load()
            found = [
                _b64url(k["x"])
                for k in jwks.get("keys", [])
                if isinstance(k, Mapping)
                and k.get("kty") == "OKP"
                and k.get("crv") == "Ed25519"
                and isinstance(k.get("x"), str)
            ]
            self._cache = (time.monotonic(), found)
            return found

    def _load(self) -> Mapping[str, Any]:
        if self.source is not None:
            return self.source() if callable(self.source) else self.source
        import httpx

        resp = httpx.get(self.url, timeout=10)
        resp.raise_for_status()
        data = resp.json()
        return data if isinstance(data, Mapping) else {}


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_fal(
    keys: list[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> None:
    """Raise :class:`WebhookVerificationError` unless fal's ED25519 signature matches one of ``keys``. The signed
    message is ``request_id \\n user_id \\n timestamp \\n sha256_hex(body)`` (fal docs, "Verifying webhooks")."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    lower = {k.lower(): v for k, v in headers.items()}
    names = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp", "x-fal-webhook-signature")
    request_id, user_id, ts_text, signature = (lower.get(n) for n in names)
    if not request_id or not user_id or not ts_text or not signature:
        raise WebhookVerificationError("missing required headers")
    try:
        ts = int(ts_text)
        sig = binascii.unhexlify(signature)
    except ValueError:
        raise WebhookVerificationError("invalid signature headers") from None
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance:
        raise WebhookVerificationError("message timestamp outside the tolerance")
    message = "\n".join((request_id, user_id, ts_text, hashlib.sha256(body).hexdigest())).encode()
    for raw in keys:
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(sig, message)
            return
        except (InvalidSignature, ValueError):
            continue
    raise WebhookVerificationError("no matching signature found")


def provider_callback_routes(state: ServiceState) -> APIRouter:
    """The callback route. No API key: the provider has none; the per-job token (and signature) stand for it."""
    router = APIRouter(tags=["provider callbacks"])
    fal_keys = FalKeys(state.config.fal_jwks, state.config.fal_jwks_url)

    @router.post(
        "/v1/provider-callbacks/{provider}/{job_id}",
        status_code=204,
        response_class=Response,
        summary="A provider says a task changed: its job polls now (the callback itself is not trusted)",
        responses=ERROR_RESPONSES,
    )
    async def provider_callback(
        provider: str,
        job_id: str,
        request: Request,
        token: str | None = Query(None, max_length=200, description="the job's callback secret, from its URL"),
    ) -> Response:
        if provider not in CALLBACK_PROVIDERS:
            raise ApiError(
                400,
                f"provider: {provider!r} sends no callbacks to Kinema; allowed: {', '.join(CALLBACK_PROVIDERS)}",
                param="provider",
                code="invalid_provider",
            )
        body = await request.body()
        # store reads and writes, and maybe a JWKS fetch: off the event loop
        await run_in_threadpool(_accept, provider, job_id, token or "", dict(request.headers), body)
        return Response(status_code=204)

    def _accept(provider: str, job_id: str, given: str, headers: dict[str, str], body: bytes) -> None:
        """Check the callback (job, token, signature) and pass the hint on, or raise the ApiError that refuses it."""
        job = state.store.get(job_id)
        if job is None or str(job.request.get("backend") or "") != provider:
            raise ApiError(404, f"no {provider} job {job_id!r}", code="not_found", param="job_id")
        if not job.callback_token or not hmac.compare_digest(given.encode(), job.callback_token.encode()):
            raise ApiError(
                401, "token: wrong or missing callback token for this job", code="invalid_token", param="token"
            )
        try:
            if provider == "replicate":
                secret = state.config.resolved_replicate_webhook_secret()
                if not secret:
                    raise WebhookVerificationError("no Replicate webhook secret is configured")
                verify(secret, headers, body)
            elif provider == "fal":
                verify_fal(fal_keys.keys(), headers, body)
        except WebhookVerificationError as exc:
            raise ApiError(
                401,
                f"signature: the {provider} callback's signature does not verify ({exc})",
                code="invalid_signature",
                param="webhook-signature",
            ) from None
        except Exception as exc:  # the key set could not be fetched: the poll carries on regardless
            log.warning("%s callback for %s not verified: %s", provider, job_id, exc)
            raise ApiError(
                401,
                f"signature: the {provider} callback could not be verified ({type(exc).__name__})",
                code="invalid_signature",
                param="webhook-signature",
            ) from None
        if not job.terminal:
            state.store.record_poll_hint(job_id)  # other processes' attempts read it at their next heartbeat
            state.pool.poll_now(job_id)

    return router
