"""Is an error worth retrying? Decided by its type and its HTTP status, never by its text.

Transient:

- an explicit ``transient`` attribute wins (``toque.data.errors`` and Toque's own errors
  declare it; ``False`` marks an error permanent whatever it wraps);
- the standard library's ``ConnectionError`` (refused, reset, broken pipe), ``TimeoutError``
  and ``socket.gaierror`` (a Service name not resolvable yet);
- connection, timeout and protocol errors of ``requests``, ``urllib3``, ``botocore`` and
  ``minio``, recognised by their class (looked up along the class hierarchy by module and
  name, so this module imports none of those libraries);
- an error of those libraries or of ``mlflow`` that carries an HTTP status of 408, 429 or
  5xx other than 501 (``requests``' ``response.status_code``, urllib3's ``response.status``,
  botocore's ``response["ResponseMetadata"]["HTTPStatusCode"]``, minio's ``status_code``,
  MLflow's ``error_code`` such as ``TEMPORARILY_UNAVAILABLE``);
- an error whose explicit cause (``raise … from``) is transient; for the libraries above,
  which wrap a failure while handling it (MLflow's REST client raises a bare
  ``MlflowException`` inside ``except``), the implicit context too.

Everything else (a 4xx, a bad argument, an error in user code) is permanent: retrying would
fail the same way.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

# Statuses that say "try again": request timeout, rate limited, server-side trouble.
# 501 Not Implemented will never work, however often it is asked.
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)}) - {501}

# Libraries whose exceptions this module understands, by top-level module.
_LIBRARIES = frozenset(
    {"requests", "urllib3", "botocore", "boto3", "s3transfer", "minio", "mlflow"}
)

# (top-level module, class name) of connection, timeout and protocol failures. A class
# matches when any class along the exception's MRO has that module root and name.
_TRANSIENT_CLASSES = frozenset(
    {
        # requests.exceptions
        ("requests", "ConnectionError"),  # also ConnectTimeout, ProxyError, SSLError's base
        ("requests", "Timeout"),  # ReadTimeout, ConnectTimeout
        ("requests", "ChunkedEncodingError"),  # the connection broke mid-body
        ("requests", "RetryError"),  # urllib3 gave up retrying a 429/5xx
        # urllib3.exceptions
        ("urllib3", "NewConnectionError"),  # also NameResolutionError
        ("urllib3", "ConnectTimeoutError"),
        ("urllib3", "ReadTimeoutError"),
        ("urllib3", "TimeoutError"),
        ("urllib3", "ProtocolError"),  # connection aborted, IncompleteRead
        ("urllib3", "MaxRetryError"),  # retries exhausted on connection errors or 429/5xx
        ("urllib3", "ResponseError"),  # too many error responses
        # botocore.exceptions
        ("botocore", "ConnectionError"),  # EndpointConnectionError, ConnectTimeoutError, …
        ("botocore", "HTTPClientError"),  # ReadTimeoutError, ConnectionClosedError
        # s3transfer
        ("s3transfer", "RetriesExceededError"),
    }
)

# Subclasses of the above that retrying cannot fix: a certificate or TLS setup problem.
_PERMANENT_CLASSES = frozenset({("requests", "SSLError"), ("urllib3", "SSLError")})

# MLflow error codes that only ever come from a server saying "not now"; a bare
# INTERNAL_ERROR is also what MLflow raises for local problems, so it counts only when the
# server sent it (a RestException).
_MLFLOW_TRANSIENT_CODES = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
)
_MLFLOW_STATUS = {
    "INTERNAL_ERROR": 500,
    "INVALID_STATE": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "RESOURCE_EXHAUSTED": 429,
}
_MAX_CHAIN = 8


def _classes(error: BaseException) -> Iterator[tuple[str, str]]:
    for cls in type(error).__mro__:
        yield str(getattr(cls, "__module__", "")).partition(".")[0], cls.__name__


def library_of(error: BaseException) -> str | None:
    """The known library (``requests``, ``botocore``, ``mlflow``, …) an error comes from."""
    for root, _ in _classes(error):
        if root in _LIBRARIES:
            return root
    return None


def http_status(error: BaseException) -> int | None:
    """The HTTP status an error of a known client library carries, if any (duck-typed)."""
    library = library_of(error)
    if library is None:
        return None
    if library == "mlflow":
        code = getattr(error, "error_code", None)
        return _MLFLOW_STATUS.get(code) if isinstance(code, str) else None
    response = getattr(error, "response", None)
    candidates: list[Any] = []
    if isinstance(response, dict):  # botocore ClientError
        candidates.append((response.get("ResponseMetadata") or {}).get("HTTPStatusCode"))
    elif response is not None:  # requests (status_code) or urllib3 (status) response
        candidates += [getattr(response, "status_code", None), getattr(response, "status", None)]
    # minio: ServerError.status_code, InvalidResponseError._code
    candidates += [getattr(error, "status_code", None), getattr(error, "_code", None)]
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _own(error: BaseException) -> bool | None:
    """True/False when the error itself decides, None when only its chain can."""
    declared = getattr(error, "transient", None)
    if isinstance(declared, bool):
        return declared
    if isinstance(error, ConnectionError | TimeoutError | socket.gaierror):
        return True
    classes = set(_classes(error))
    if classes & _PERMANENT_CLASSES:
        return False
    if ("urllib3", "MaxRetryError") in classes:
        reason = getattr(error, "reason", None)  # what the last attempt failed with
        if isinstance(reason, BaseException) and reason is not error:
            return is_transient(reason)
        return True
    if classes & _TRANSIENT_CLASSES:
        return True
    library = library_of(error)
    if library == "mlflow":
        code = getattr(error, "error_code", None)
        if code in _MLFLOW_TRANSIENT_CODES:
            return True
        from_server = any(name == "RestException" for _, name in classes)
        status = http_status(error)
        if from_server and status is not None and status in RETRY_STATUSES:
            return True
        return None
    if library is not None:
        status = http_status(error)
        if status is not None:
            return status in RETRY_STATUSES
    return None


def is_transient(error: BaseException) -> bool:
    """Whether retrying later may succeed (see the module docstring for the rules)."""
    seen: set[int] = set()
    current: BaseException | None = error
    for _ in range(_MAX_CHAIN):
        if current is None or id(current) in seen:
            return False
        seen.add(id(current))
        verdict = _own(current)
        if verdict is not None:
            return verdict
        following = current.__cause__
        if following is None and library_of(current) is not None:
            following = current.__context__
        current = following
    return False
