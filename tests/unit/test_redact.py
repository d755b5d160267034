from __future__ import annotations

import io
import logging
from typing import Any

import pytest
import requests

from toque.clients import mlflow_registry, prometheus
from toque.core.redact import RedactingFilter, redact, redact_url
from toque.local import cluster as local


def test_redact_url_removes_user_and_password() -> None:
    assert redact_url("http://alice:s3cret@mlflow:5000/api") == "http://***@mlflow:5000/api"


def test_redact_url_keeps_urls_without_credentials() -> None:
    assert redact_url("http://mlflow:5000/api?x=a@b") == "http://mlflow:5000/api?x=a@b"


def test_redact_finds_urls_inside_exception_text() -> None:
    msg = "HTTPConnectionPool(host='h'): Max retries exceeded with url: 'https://u:pw@h/x' (err)"
    assert "pw" not in redact(msg)
    assert "https://***@h/x" in redact(msg)


def test_redact_removes_named_secret_values() -> None:
    assert redact("key=abcd1234 failed", "abcd1234") == "key=*** failed"


# Every path where a credentialed URL could reach a message: the registry and Prometheus
# clients (their errors land in ModelVersion/TrainingJob conditions and Events), and logs.

SECRET = "s3cret-pw"


class _Answer:
    """A requests.Response stand-in: an error page that quotes the URL it was asked for."""

    def __init__(self, status: int, url: str, json_body: dict[str, Any] | None = None) -> None:
        self.status_code = status
        self._json = json_body
        self.text = f"<html>upstream {url} failed</html>"
        self.content = self.text.encode()

    def json(self) -> Any:
        if self._json is None:
            raise ValueError("not JSON")
        return self._json


def _closed_url() -> str:
    return f"http://alice:{SECRET}@127.0.0.1:{local.free_port()}"


def test_registry_errors_hide_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = mlflow_registry.Registry(_closed_url())
    assert SECRET not in repr(registry)
    with pytest.raises(mlflow_registry.RegistryUnavailableError) as down:
        registry.alias_version("m", "champion")
    assert SECRET not in str(down.value) and "***@127.0.0.1" in str(down.value)
    with pytest.raises(mlflow_registry.RegistryUnavailableError) as champion:
        registry.champion("m", "champion")
    assert SECRET not in str(champion.value)

    def server_error(method: str, url: str, **kwargs: Any) -> _Answer:
        return _Answer(503, url)

    monkeypatch.setattr(requests, "request", server_error)
    with pytest.raises(mlflow_registry.RegistryUnavailableError) as unavailable:
        registry.version("m", "1")
    assert SECRET not in str(unavailable.value)

    def rejected(method: str, url: str, **kwargs: Any) -> _Answer:
        return _Answer(400, url, {"error_code": "BAD", "message": f"bad request to {url}"})

    monkeypatch.setattr(requests, "request", rejected)
    with pytest.raises(mlflow_registry.RegistryRejectedError) as refused:
        registry.version("m", "1")
    assert SECRET not in str(refused.value) and SECRET not in refused.value.message


def test_prometheus_errors_hide_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    client = prometheus.Prometheus(_closed_url(), timeout=2)
    assert SECRET not in repr(client)
    with pytest.raises(prometheus.PrometheusUnavailableError) as down:
        client.query("up")
    assert SECRET not in str(down.value) and "***@127.0.0.1" in str(down.value)

    def bad_gateway(url: str, **kwargs: Any) -> _Answer:
        return _Answer(502, url)

    monkeypatch.setattr(requests, "post", bad_gateway)
    with pytest.raises(prometheus.PrometheusUnavailableError) as unavailable:
        client.query("up")
    assert SECRET not in str(unavailable.value)


def test_the_logging_filter_redacts_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redact.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("GET %s failed", f"http://u:{SECRET}@h/x")
        try:
            raise RuntimeError(f"cannot reach https://u:{SECRET}@h")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "http://***@h/x" in text and "RuntimeError" in text and SECRET not in text
