"""Instant queries against the Prometheus HTTP API (``/api/v1/query``), synchronously.

Called by the canary analysis, which reads the model servers' metrics
(``toque_serving_*``) that Prometheus scrapes from serving pods; the tests use it to read
what ``toque.local.services.Prometheus`` scraped. Errors are split by intent:
``PrometheusUnavailableError`` (connection refused, timeouts, HTTP 5xx, 503 while the TSDB
starts or when a query times out, any other unexpected answer) is worth retrying later;
``PrometheusQueryError`` (HTTP 400 ``bad_data`` for bad PromQL, 422 ``execution``, a result
that is neither an instant vector nor a scalar) will fail the same way again.

Values are floats; Prometheus writes NaN and infinities as the strings "NaN", "+Inf" and
"-Inf", which come back as ``float("nan")``, ``inf`` and ``-inf``. A NaN is what, for
example, ``rate(errors) / rate(requests)`` gives when no request came in: callers must test
it with ``math.isnan`` (it compares unequal to everything, itself included).

Error messages (they reach conditions and Events) and ``repr`` redact a ``user:pass@`` in
the URL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import requests

from toque.core import redact

TIMEOUT = 10.0


class PrometheusError(Exception):
    """Base of the errors below; the message is redacted."""

    transient = False

    def __init__(self, message: str) -> None:
        super().__init__(redact.redact(message))


class PrometheusUnavailableError(PrometheusError):
    """Prometheus could not be reached or could not answer now: retry later."""

    transient = True


class PrometheusQueryError(PrometheusError):
    """Prometheus rejected the query (bad PromQL, an execution error): retrying won't help."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One series of an instant vector (a scalar result has no labels)."""

    labels: dict[str, str]
    value: float


def _value(pair: Any) -> float:
    # [<unix time>, "<value>"]; float() reads "NaN", "+Inf" and "-Inf" as Prometheus writes them.
    return float(pair[1])


@dataclasses.dataclass(frozen=True)
class Prometheus:
    """A Prometheus server at ``url`` (``http://host:9090``, with any path prefix)."""

    url: str
    timeout: float = TIMEOUT

    def __repr__(self) -> str:
        return f"Prometheus(url={redact.redact_url(self.url)!r}, timeout={self.timeout!r})"

    def query(self, promql: str, time: float | dt.datetime | None = None) -> list[Sample]:
        """Evaluate ``promql`` at ``time`` (default: now) as an instant query.

        Returns one ``Sample`` per series of an instant vector, or one label-less ``Sample`` for
        a scalar; an empty list when no series matched. Range vectors and strings are a
        ``PrometheusQueryError``: ask for ``rate(x[5m])``, not ``x[5m]``.
        """
        params = {"query": promql}
        if time is not None:
            stamp = time.timestamp() if isinstance(time, dt.datetime) else time
            params["time"] = f"{stamp:.3f}"
        data = self._post("api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector" and isinstance(result, list):
            return [
                Sample(labels=dict(item.get("metric") or {}), value=_value(item["value"]))
                for item in result
            ]
        if kind == "scalar" and isinstance(result, list):
            return [Sample(labels={}, value=_value(result))]
        raise PrometheusQueryError(f"{promql!r} gave a {kind} result, not a vector or scalar")

    def scalar(self, promql: str, time: float | dt.datetime | None = None) -> float | None:
        """The single value of ``promql``; None when no series matched (no data yet).

        More than one series is a ``PrometheusQueryError``: aggregate them (``sum(...)``).
        """
        samples = self.query(promql, time)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusQueryError(
                f"{promql!r} gave {len(samples)} series where one was expected; aggregate them"
            )
        return samples[0].value

    def _post(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.url.rstrip('/')}/{path}"
        try:
            # POST: the form body has no URL length limit for long PromQL.
            response = requests.post(url, data=params, timeout=self.timeout)
        except requests.RequestException as error:
            raise PrometheusUnavailableError(f"{url}: {error}") from error
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # A proxy's HTML error page, or a half-started server.
            raise PrometheusUnavailableError(
                f"{url}: HTTP {response.status_code} {response.text[:200]!r}"
            )
        if response.status_code == 200 and body.get("status") == "success":
            data: dict[str, Any] = body.get("data") or {}
            return data
        detail = f"{url}: HTTP {response.status_code} {body.get('errorType')}: {body.get('error')}"
        if response.status_code in (400, 422):
            raise PrometheusQueryError(detail)
        raise PrometheusUnavailableError(detail)
