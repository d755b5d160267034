"""Transient errors are told by type and HTTP status, across the client libraries we use."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from toque.core.transient import http_status, is_transient


def _requests_http_error(status: int) -> BaseException:
    import requests

    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} for url", response=response)


def _urllib3_max_retry(ssl: bool) -> BaseException:
    from urllib3 import exceptions

    reason: Exception = (
        exceptions.SSLError("certificate verify failed")
        if ssl
        else exceptions.NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    )
    return exceptions.MaxRetryError(None, "/x", reason)  # type: ignore[arg-type]


def _boto_client_error(status: int, code: str) -> BaseException:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        "GetObject",
    )


def _minio_s3_error(status: int) -> BaseException:
    from minio.error import S3Error
    from urllib3 import HTTPResponse

    return S3Error(HTTPResponse(status=status), "InternalError", "m", "/b/k", "r", "h")


def _mlflow(code: str | None = None) -> BaseException:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    if code is None:
        return MlflowException("a local problem")
    return MlflowException("m", error_code=getattr(databricks_pb2, code))


def _mlflow_rest(code: str) -> BaseException:
    from mlflow.exceptions import RestException

    return RestException({"error_code": code, "message": "m"})  # type: ignore[no-untyped-call]


def _mlflow_wrapping(inner: BaseException) -> BaseException:
    """MLflow's REST client raises a bare MlflowException inside ``except`` (no ``from``)."""
    from mlflow.exceptions import MlflowException

    try:
        try:
            raise inner
        except Exception as error:
            raise MlflowException(f"API request to http://h failed with exception {error}")  # noqa: B904
    except MlflowException as wrapped:
        return wrapped


def _caused(outer: BaseException, inner: BaseException, explicit: bool) -> BaseException:
    if explicit:
        outer.__cause__ = inner
    else:
        outer.__context__ = inner
    return outer


class PermanentError(Exception):
    transient = False


def _requests(name: str) -> Callable[[], BaseException]:
    def make() -> BaseException:
        import requests

        return getattr(requests.exceptions, name)("boom")  # type: ignore[no-any-return]

    return make


def _botocore(name: str, **kwargs: str) -> Callable[[], BaseException]:
    def make() -> BaseException:
        from botocore import exceptions

        return getattr(exceptions, name)(**kwargs)  # type: ignore[no-any-return]

    return make


CASES: list[tuple[str, Callable[[], BaseException], bool]] = [
    # the standard library
    ("refused", lambda: ConnectionRefusedError(111, "Connection refused"), True),
    ("reset", lambda: ConnectionResetError(), True),
    ("timeout", lambda: TimeoutError(), True),
    ("dns", lambda: socket.gaierror(-2, "Name or service not known"), True),
    ("missing file", lambda: FileNotFoundError(2, "No such file"), False),
    # text is never enough
    ("503 in text", lambda: ValueError("upstream answered 503"), False),
    ("refused in text", lambda: RuntimeError("Connection refused"), False),
    ("retries in text", lambda: RuntimeError("Max retries exceeded"), False),
    # requests
    ("requests connection", _requests("ConnectionError"), True),
    ("requests read timeout", _requests("ReadTimeout"), True),
    ("requests chunked", _requests("ChunkedEncodingError"), True),
    ("requests ssl", _requests("SSLError"), False),
    ("requests invalid url", _requests("InvalidURL"), False),
    ("http 503", lambda: _requests_http_error(503), True),
    ("http 502", lambda: _requests_http_error(502), True),
    ("http 429", lambda: _requests_http_error(429), True),
    ("http 408", lambda: _requests_http_error(408), True),
    ("http 501", lambda: _requests_http_error(501), False),
    ("http 404", lambda: _requests_http_error(404), False),
    ("http 403", lambda: _requests_http_error(403), False),
    # urllib3
    ("urllib3 retries on refused", lambda: _urllib3_max_retry(ssl=False), True),
    ("urllib3 retries on bad cert", lambda: _urllib3_max_retry(ssl=True), False),
    # botocore
    ("boto endpoint", _botocore("EndpointConnectionError", endpoint_url="http://s3"), True),
    ("boto read timeout", _botocore("ReadTimeoutError", endpoint_url="http://s3"), True),
    ("boto closed", _botocore("ConnectionClosedError", endpoint_url="http://s3"), True),
    ("boto no credentials", _botocore("NoCredentialsError"), False),
    ("boto 503 SlowDown", lambda: _boto_client_error(503, "SlowDown"), True),
    ("boto 500", lambda: _boto_client_error(500, "InternalError"), True),
    ("boto 404", lambda: _boto_client_error(404, "NoSuchKey"), False),
    ("boto 403", lambda: _boto_client_error(403, "AccessDenied"), False),
    # minio
    ("minio server 503", lambda: __import__("minio.error").error.ServerError("m", 503), True),
    ("minio s3 500", lambda: _minio_s3_error(500), True),
    ("minio s3 404", lambda: _minio_s3_error(404), False),
    (
        "minio html 502",
        lambda: __import__("minio.error").error.InvalidResponseError(502, "text/html", "bad"),
        True,
    ),
    # mlflow
    ("mlflow local", lambda: _mlflow(), False),
    ("mlflow unavailable", lambda: _mlflow("TEMPORARILY_UNAVAILABLE"), True),
    ("mlflow rate limited", lambda: _mlflow("REQUEST_LIMIT_EXCEEDED"), True),
    ("mlflow bad parameter", lambda: _mlflow("INVALID_PARAMETER_VALUE"), False),
    ("mlflow server 500", lambda: _mlflow_rest("INTERNAL_ERROR"), True),
    ("mlflow server 404", lambda: _mlflow_rest("RESOURCE_DOES_NOT_EXIST"), False),
    ("mlflow over refused", lambda: _mlflow_wrapping(ConnectionRefusedError()), True),
    ("mlflow over bad value", lambda: _mlflow_wrapping(ValueError("x")), False),
    # chains and declarations
    ("from refused", lambda: _caused(RuntimeError("x"), ConnectionError(), True), True),
    ("while refused", lambda: _caused(RuntimeError("x"), ConnectionError(), False), False),
    ("declared permanent", lambda: _caused(PermanentError("x"), ConnectionError(), True), False),
]


@pytest.mark.parametrize(
    ("error", "expected"), [(make, want) for _, make, want in CASES], ids=[c[0] for c in CASES]
)
def test_classification(error: Callable[[], BaseException], expected: bool) -> None:
    assert is_transient(error()) is expected


def test_store_errors_declare_themselves() -> None:
    from toque.data import errors

    assert is_transient(errors.StoreUnavailable("down"))
    assert not is_transient(errors.DatasetNotFound("gone"))


def test_status_is_read_from_attributes() -> None:
    assert http_status(_requests_http_error(503)) == 503
    assert http_status(_boto_client_error(404, "NoSuchKey")) == 404
    assert http_status(_minio_s3_error(500)) == 500
    assert http_status(ValueError("HTTP 503")) is None
