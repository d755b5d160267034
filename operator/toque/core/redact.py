"""Remove credentials from text that may reach a user: messages, logs, Events, status, tags.

Tracking and storage URLs may carry ``user:password@``; exception messages from HTTP
clients quote the URL they failed on, so anything derived from one is suspect.
"""

from __future__ import annotations

import logging
import re

REDACTED = "***"

# scheme://userinfo@host — userinfo is everything up to the last "@" before the host part.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"]+)@")


def redact_url(url: str) -> str:
    """``https://u:p@host/x`` → ``https://***@host/x``; URLs without credentials unchanged."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", url)


def redact(text: str, *secrets: str | None) -> str:
    """Redact URL userinfo in ``text``, and every given secret value wherever it appears."""
    out = redact_url(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, REDACTED)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URL userinfo in every record it passes.

    Attached to a handler, it rewrites the formatted message and any exception text, so a
    library that logs the URL it failed on (with ``user:password@``) cannot leak it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add a ``RedactingFilter`` to every handler of ``logger`` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
