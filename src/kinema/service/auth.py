"""Who is asking: the API-key check every route makes, the rate-limit check, and how both appear in the OpenAPI
document.

The hot routes call :func:`authenticate` inline (no dependency graph per request; the JSON fast path calls it too)
and declare the key with :data:`SECURED`; the others take the owner from :func:`owner_dependency`, which does the
same check and also declares the bearer scheme.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from .errors import ApiError
from .security import RateLimiter, bearer_token

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = ["SECURED", "URL_KEY_NAMES", "authenticate", "authenticate_request", "check_rate", "owner_dependency"]

#: the OpenAPI declaration of a route that checks the key inline
SECURED: dict[str, Any] = {"security": [{"HTTPBearer": []}]}
#: query parameters that look like a key: refused, because URLs end up in logs
URL_KEY_NAMES = ("api_key", "key", "token", "access_token")


def authenticate(state: ServiceState, query_names: Iterable[str], authorization: str | None) -> str:
    """The caller's key id ("local" without auth), from the query's parameter names and the Authorization header."""
    for name in query_names:
        if name in URL_KEY_NAMES:
            raise ApiError(
                401,
                "API keys in the URL are refused (URLs are logged); send 'Authorization: Bearer <key>'",
                code="key_in_url",
                param=name,
            )
    token = bearer_token(authorization)
    if not state.config.auth:
        return "local"
    if token is None:
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>' (make one with 'kinema keys create')",
            code="missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key_id = state.store.authenticate(token)
    if key_id is None:
        raise ApiError(
            401, "invalid or revoked API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )
    return key_id


def authenticate_request(state: ServiceState, request: Request) -> str:
    return authenticate(state, request.query_params.keys(), request.headers.get("authorization"))


def check_rate(limiter: RateLimiter, owner: str) -> None:
    """429 with an integer Retry-After when ``owner`` is over ``limiter``'s rate."""
    wait = limiter.check(owner)
    if wait is not None:
        raise ApiError(
            429, f"rate limit exceeded; retry in {wait} s", code="rate_limited", headers={"Retry-After": str(wait)}
        )


def owner_dependency(state: ServiceState) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency giving the caller's key id; it declares the bearer scheme in /openapi.json."""
    bearer = HTTPBearer(auto_error=False, description="an API key made with 'kinema keys create'")

    async def owner_of(request: Request, _cred: Any = Depends(bearer)) -> str:
        return authenticate_request(state, request)

    return owner_of
