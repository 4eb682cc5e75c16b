"""Kinema's exceptions: one tree, one root.

```
KinemaError
 ├── InvalidRequest          bad input: names the field, the value given and what is allowed
 ├── BackendUnavailable      the backend cannot run here (extra missing, key missing, no GPU, ...)
 ├── ModelNotFound           the model id or its weights cannot be found
 ├── ContentRejected         the provider's (or our) moderation refused the prompt or image
 ├── ProviderError           a remote provider failed; carries its own code and message
 │    ├── RateLimited        429 / throttled; carries retry_after seconds when known
 │    └── ProviderTimeout    the task did not finish before the deadline
 ├── Cancelled               the caller cancelled the generation
 └── GenerationFailed        anything else that broke while generating
```

Every message says what was wrong, where, what is allowed and, where there is one, how to fix it. Secrets never
appear in messages: provider errors are built from the provider's code and message only.
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
    "MissingExtra",
]


class KinemaError(Exception):
    """The root of every error Kinema raises on purpose."""

    #: a short machine-readable code, used by the CLI and in the HTTP error object
    code = "kinema_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "code": self.code, "message": self.message}


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
    """The generation was cancelled by its caller."""

    code = "cancelled"


class GenerationFailed(KinemaError):
    """The backend failed for a reason that is not the caller's input."""

    code = "generation_failed"
