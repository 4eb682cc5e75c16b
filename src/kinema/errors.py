"""Kinema's exceptions: one tree, one root.

```
KinemaError
 ├── InvalidRequest          bad input: names the field, the value given and what is allowed
 │    └── URLRefused         a URL the service will not fetch (private address, bad scheme...); names the field
 ├── BackendUnavailable      the backend cannot run here (extra missing, key missing, no GPU, ...)
 │    └── MissingExtra       an optional dependency group is not installed; names the extra
 ├── ModelNotFound           the model id or its weights cannot be found
 ├── ContentRejected         the provider's (or our) moderation refused the prompt or image
 ├── ProviderError           a remote provider failed; carries its own code and message
 │    ├── RateLimited        429 / throttled; carries retry_after seconds when known
 │    ├── ProviderTimeout    the task did not finish before the deadline
 │    └── UrlExpired         a provider's signed output URL expired: fetch the task again for a fresh one
 ├── Cancelled               the caller cancelled the generation
 ├── GenerationFailed        anything else that broke while generating
 │    └── RankLost           a process of a split (multi-GPU) run died: the group stopped; worth another attempt
 ├── WebhookVerificationError  a webhook delivery did not verify (headers, signature, timestamp)
 └── StoreError              the job store cannot give its guarantees (wrong pragmas, a network filesystem...)
```

Every message says what was wrong, where, what is allowed and, where there is one, how to fix it. Secrets never
appear in messages: provider errors are built from the provider's code and message only. Every error dict (the
library's ``to_dict``, a job's stored error, a batch report's row, an HTTP error body) derives from these classes:
:func:`error_dict` turns any exception into one.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "KinemaError",
    "InvalidRequest",
    "BackendUnavailable",
    "ModelNotFound",
    "ContentRejected",
    "ProviderError",
    "RateLimited",
    "ProviderTimeout",
    "Cancelled",
    "GenerationFailed",
    "RankLost",
    "MissingExtra",
    "URLRefused",
    "UrlExpired",
    "WebhookVerificationError",
    "StoreError",
    "error_dict",
]


class KinemaError(Exception):
    """The root of every error Kinema raises on purpose."""

    #: a short machine-readable code, used by the CLI and in the HTTP error object
    code = "kinema_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """``type``, ``code``, ``message`` and ``field`` (the input field to blame, or None)."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "field": getattr(self, "field", None),
        }


class InvalidRequest(KinemaError, ValueError):
    """Bad input. ``field`` names it, ``value`` is what was given and ``allowed`` says what would be accepted."""

    code = "invalid_request"

    def __init__(self, field: str, message: str, *, value: Any = None, allowed: str | None = None) -> None:
        text = f"{field}: {message}"
        if allowed and allowed not in message:
            text += f" (allowed: {allowed})"
        super().__init__(text)
        self.field = field
        self.value = value
        self.allowed = allowed

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field, "allowed": self.allowed}


class URLRefused(InvalidRequest):
    """A URL the service will not fetch. The message is safe to show a client; ``detail`` is for the operator's
    log (the resolved address, for example), never for the client."""

    code = "url_refused"

    def __init__(self, message: str, *, field: str = "url", detail: str = "") -> None:
        super().__init__(field, f"refused: {message}")
        self.reason = message
        self.detail = detail


class BackendUnavailable(KinemaError):
    """The backend exists but cannot run here; ``reason`` says exactly why and how to fix it."""

    code = "backend_unavailable"

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"backend {backend!r} is not usable here: {reason}")
        self.backend = backend
        self.reason = reason


class MissingExtra(BackendUnavailable, ImportError):
    """An optional dependency group is not installed."""

    code = "missing_extra"

    def __init__(self, extra: str, module: str, *, feature: str | None = None) -> None:
        what = feature or extra
        KinemaError.__init__(
            self,
            f"{what} needs the optional package {module!r}, which is not installed; "
            f"install it with: pip install 'kinema[{extra}]'",
        )
        self.backend = what
        self.reason = f"extra '{extra}' not installed (pip install 'kinema[{extra}]')"
        self.extra = extra
        self.module = module


class ModelNotFound(KinemaError):
    """The model id is unknown, or its weights are not present."""

    code = "model_not_found"


class ContentRejected(KinemaError):
    """A moderation system refused the input or the output."""

    code = "content_rejected"


class ProviderError(KinemaError):
    """A remote provider reported a failure. ``provider_code`` and ``provider_message`` are its own words."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        provider_code: str | None = None,
        provider_message: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.provider_code = provider_code
        self.provider_message = provider_message
        self.status_code = status_code

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "provider": self.provider, "provider_code": self.provider_code}


class UrlExpired(ProviderError):
    """An output URL answered 401/403/404/410: fetch the task again for a fresh one."""

    code = "url_expired"


class RateLimited(ProviderError):
    """The provider asked us to slow down; ``retry_after`` is in seconds when it said."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """The provider did not finish before the deadline. The task id is kept so it can be resumed."""

    code = "provider_timeout"


class Cancelled(KinemaError):
    """The generation was cancelled by its caller. For a remote task, ``task_id`` names it and ``provider_cancel``
    says whether the provider's cancel was called and what it answered (so the bill stopped, or why not)."""

    code = "cancelled"
    task_id: str | None = None
    provider_cancel: dict[str, Any] | None = None


class GenerationFailed(KinemaError):
    """The backend failed for a reason that is not the caller's input."""

    code = "generation_failed"


class RankLost(GenerationFailed):
    """A process of a split run (one video on several GPUs) died under it: killed, out of memory, a node lost. The
    whole group was stopped; unlike a failure the model itself reports, another attempt may well succeed, so the
    job service retries it."""

    code = "rank_lost"


class WebhookVerificationError(KinemaError, ValueError):
    """A webhook delivery did not verify: bad or missing headers, a wrong signature, or a timestamp out of
    tolerance."""

    code = "webhook_verification_failed"


class StoreError(KinemaError, RuntimeError):
    """The job store cannot give the guarantees the service needs (wrong pragmas, a network filesystem...)."""

    code = "store_error"


def error_dict(exc: BaseException) -> dict[str, Any]:
    """Any exception as Kinema's error dict (``type``, ``code``, ``message``, ``field``): a KinemaError's own
    ``to_dict``; anything else as a :class:`GenerationFailed` that names the exception's class."""
    if isinstance(exc, KinemaError):
        return exc.to_dict()
    return GenerationFailed(f"{type(exc).__name__}: {exc}").to_dict()
