"""Remove credentials from text that may reach a user: messages, logs, Events, status, tags.

Tracking and storage URLs may carry ``user:password@``; exception messages from HTTP
clients quote the URL they failed on, so anything derived from one is suspect.
"""

from __future__ import annotations

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
