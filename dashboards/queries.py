"""The dashboards' PromQL as Grafana runs it, against a real Prometheus.

Reads a generated dashboard (``helm/toque/dashboards/*.json``), lists every panel's targets,
expands Grafana's variables the way Grafana does for a time range (``$namespace`` to its
"All" value or to the regex of every value Prometheus has, ``$__rate_interval``,
``$__range``, ``$__interval``), and runs each target as a range query (time series panels) or
an instant query at the range's end (``instant`` targets: stats and tables). Called by
``dashboards/render.py``, ``tests/unit/test_dashboards.py`` and
``tests/e2e/test_zz_dashboards.py``; needs neither Grafana nor the SDK.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
GENERATED = ROOT / "helm" / "toque" / "dashboards"
TIMEOUT = 30.0
# Grafana's default "Max data points" is the panel's width in pixels; a few hundred.
POINTS = 300
# Grafana's own default when the data source does not say its scrape interval.
DEFAULT_SCRAPE_SECONDS = 15.0


@dataclasses.dataclass(frozen=True)
class Target:
    """One query of one panel."""

    dashboard: str  # the dashboard's uid
    panel: str  # the panel's title
    kind: str  # the panel's type: timeseries, stat, table...
    ref: str
    expr: str
    instant: bool
    legend: str
    unit: str
    decimals: int | None = None


@dataclasses.dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value); one point for an instant query


@dataclasses.dataclass(frozen=True)
class Window:
    """The dashboard's time range and what Grafana derives from it."""

    start: float
    end: float
    scrape: float  # the data source's scrape interval, seconds

    @property
    def step(self) -> float:
        # Grafana: range / max data points, never under the scrape interval.
        return max(math.ceil((self.end - self.start) / POINTS), self.scrape)

    @property
    def rate_interval(self) -> float:
        # Grafana's $__rate_interval: max($__interval + scrape interval, 4 * scrape interval).
        return max(self.step + self.scrape, 4 * self.scrape)


def generated() -> list[pathlib.Path]:
    """The generated dashboards, in name order."""
    return sorted(GENERATED.glob("*.json"))


def load(path: pathlib.Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that queries, rows' nested panels included, in layout order."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def targets(dashboard: Mapping[str, Any]) -> list[Target]:
    out = []
    for panel in panels(dashboard):
        defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
        decimals = defaults.get("decimals")
        for t in panel.get("targets") or []:
            out.append(
                Target(
                    dashboard=str(dashboard.get("uid")),
                    panel=str(panel.get("title")),
                    kind=str(panel.get("type")),
                    ref=str(t.get("refId")),
                    expr=str(t.get("expr")),
                    instant=bool(t.get("instant")),
                    legend=str(t.get("legendFormat") or ""),
                    unit=str(defaults.get("unit") or ""),
                    decimals=None if decimals is None else int(decimals),
                )
            )
    return out


def duration(seconds: float) -> str:
    """A PromQL duration, whole seconds rounded up."""
    return f"{max(math.ceil(seconds), 1)}s"


def expand(expr: str, variables: Mapping[str, str], window: Window) -> str:
    """``expr`` with Grafana's built-in and the dashboard's variables replaced."""
    builtins = {
        "__rate_interval": duration(window.rate_interval),
        "__range": duration(window.end - window.start),
        "__interval": duration(window.step),
    }
    values = {**variables, **builtins}
    # Longest names first, so $__range is not read as $__rang + e.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
VARIABLE = re.compile(r"\$\{?\w+\}?")
_NAME = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {
        *("by", "without", "on", "ignoring", "group_left", "group_right", "bool"),
        *("and", "or", "unless", "offset", "inf", "nan", "start", "end"),
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (its bare selectors' names)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = VARIABLE.sub(" ", text)
    return {n for n in _NAME.findall(text) if n.lower() not in _KEYWORDS}


class Prometheus:
    """The bits of Prometheus' HTTP API a dashboard needs."""

    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        url = f"{self.url}/{path}"
        if path.startswith("api/v1/query"):
            # POST: long PromQL stays out of the URL.
            response = requests.post(url, data=params or {}, timeout=self.timeout)
        else:
            response = requests.get(url, params=params or {}, timeout=self.timeout)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{path}: HTTP {response.status_code}: {body.get('error')}")
        return body["data"]

    def range(self, expr: str, window: Window) -> list[Series]:
        params = {"query": expr, "start": window.start, "end": window.end, "step": window.step}
        data = self._get("api/v1/query_range", params)
        return [
            Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]])
            for r in data["result"]
        ]

    def instant(self, expr: str, at: float) -> list[Series]:
        data = self._get("api/v1/query", {"query": expr, "time": at})
        if data["resultType"] == "scalar":
            t, v = data["result"]
            return [Series({}, [(float(t), float(v))])]
        return [
            Series(dict(r["metric"]), [(float(r["value"][0]), float(r["value"][1]))])
            for r in data["result"]
        ]

    def label_values(self, label: str, match: str | None, window: Window) -> list[str]:
        params: dict[str, Any] = {"start": window.start, "end": window.end}
        if match:
            params["match[]"] = match
        values: list[str] = self._get(f"api/v1/label/{label}/values", params)
        return sorted(values)

    def start_time(self) -> float:
        """When the server started (its TSDB holds nothing older from it)."""
        text = str(self._get("api/v1/status/runtimeinfo")["startTime"])
        # Go writes nanoseconds; Python reads microseconds at most.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
        return dt.datetime.fromisoformat(text).timestamp()

    def scrape_interval(self) -> float:
        config = yaml.safe_load(self._get("api/v1/status/config")["yaml"]) or {}
        value = (config.get("global") or {}).get("scrape_interval")
        return seconds(str(value)) if value else DEFAULT_SCRAPE_SECONDS


def seconds(text: str) -> float:
    """A Prometheus duration (``1m30s``, ``500ms``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


_LABEL_VALUES = re.compile(r"^label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)$")


def _regex_escape(value: str) -> str:
    # What Grafana does to each value of a multi-value variable in a Prometheus regex.
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", value)


def variables(dashboard: Mapping[str, Any], server: Prometheus, window: Window) -> dict[str, str]:
    """Each query variable at "All": its allValue, else the regex of every value it lists."""
    out: dict[str, str] = {}
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        if var.get("includeAll") and var.get("allValue"):
            out[var["name"]] = var["allValue"]
            continue
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        found = _LABEL_VALUES.match(str(query).strip())
        if not found:
            raise ValueError(f"variable {var['name']}: only label_values() is supported")
        match = found.group("match")
        if match:
            match = expand(match, out, window)
        values = server.label_values(found.group("label"), match, window)
        escaped = [_regex_escape(v) for v in values]
        out[var["name"]] = escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return out


def run(
    server: Prometheus, target: Target, variables: Mapping[str, str], window: Window
) -> list[Series]:
    expr = expand(target.expr, variables, window)
    if target.instant:
        return server.instant(expr, window.end)
    return server.range(expr, window)


def has_data(series: list[Series]) -> bool:
    """Whether any point is a number (NaN, as 0/0 gives, shows as nothing)."""
    return any(not math.isnan(v) for s in series for _, v in s.points)


def legend(target: Target, labels: Mapping[str, str]) -> str:
    """The series' name as Grafana shows it: the legend format filled in, else its labels."""
    filled = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), target.legend)
    if filled.strip():
        return filled.strip()
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or target.expr[:40]
