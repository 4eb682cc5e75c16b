"""Credentials out of logged URLs: a client that puts its key in a query string (``?api_key=kin_...``) is refused
with 401, but uvicorn's access log would still keep the key in clear.

:func:`redact_url` replaces the value of every query parameter whose name says it holds a credential (``api_key``,
``key``, ``token``, ``access_token``, ``signature``, ``X-Amz-Credential``, ``password``...) and anything anywhere that
looks like a Kinema key (``kin_...``, also percent-encoded). :func:`install_access_log_redaction` applies it to every
record of the ``uvicorn.access`` logger (``create_app`` calls it).

>>> redact_url("/v1/videos?api_key=kin_abcdefgh12345678&limit=5")
'/v1/videos?api_key=[REDACTED]&limit=5'
>>> redact_url("/v1/videos/kin_abcdefgh12345678?X-Amz-Signature=abc")
'/v1/videos/kin_[REDACTED]?X-Amz-Signature=[REDACTED]'
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

__all__ = ["redact_url", "redact_text", "RedactCredentials", "install_access_log_redaction", "REDACTED"]

REDACTED = "[REDACTED]"
#: a query parameter whose (decoded, lower-cased) name matches holds a credential
SENSITIVE_NAME = re.compile(r"key|token|secret|passw|pwd|sig|auth|credential|session|cookie|^code$|bearer")
#: a Kinema API key (``kin_`` + url-safe base64), plain or with its underscore percent-encoded
KINEMA_KEY = re.compile(r"kin(?:_|%5[fF])[A-Za-z0-9_\-%]{6,}")


def redact_text(text: str) -> str:
    """``text`` with every Kinema key in it replaced."""
    return KINEMA_KEY.sub("kin_" + REDACTED, text) if "kin" in text else text


def redact_url(url: str) -> str:
    """``url`` (a path with its query string, or a whole URL) with credentials replaced by ``[REDACTED]``."""
    base, sep, query = url.partition("?")
    if sep:
        fragment = ""
        if "#" in query:
            query, _, rest = query.partition("#")
            fragment = "#" + rest
        parts = []
        for pair in re.split(r"([&;])", query):
            name, eq, _value = pair.partition("=")
            if pair not in ("&", ";") and SENSITIVE_NAME.search(unquote_plus(name).lower()):
                pair = f"{name}={REDACTED}" if eq else pair
            parts.append(pair)
        url = base + "?" + "".join(parts) + fragment
    return redact_text(url)


class RedactCredentials(logging.Filter):
    """Rewrites a record's message arguments (uvicorn's access log passes the URL as one of them) with
    :func:`redact_url`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact_url(v) if isinstance(v, str) else v for k, v in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Add :class:`RedactCredentials` to ``logger_name`` once (calling it again changes nothing)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
