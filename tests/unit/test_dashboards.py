"""The Grafana dashboards: the committed JSON is what the code builds, every query is valid
PromQL over names Toque exports, every exported family has a panel or a reason, the panels
tile the grid, the chart ships them, and the PNG renderer draws every panel from a
Prometheus. The end-to-end check that every panel returns data is
tests/e2e/test_zz_dashboards.py."""

from __future__ import annotations

import contextlib
import http.server
import json
import pathlib
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import yaml

from dashboards import build, inventory, queries, render
from toque.local import cluster as local

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARDS = [queries.load(path) for path in queries.generated()]
TARGETS = [t for d in DASHBOARDS for t in queries.targets(d)]
WINDOW = queries.Window(start=1_000_000.0, end=1_003_600.0, scrape=15.0)
BUILTINS = {"__rate_interval", "__range", "__interval"}


def test_the_committed_json_is_what_the_code_builds() -> None:
    assert sorted(p.name for p in queries.generated()) == sorted(build.DASHBOARDS)
    assert build.stale() == [], "stale dashboards: run `make dashboards`"


def test_both_dashboards_have_panels_and_every_panel_a_query() -> None:
    assert [d["uid"] for d in DASHBOARDS] == ["toque-ops", "toque-platform"]
    for d in DASHBOARDS:
        for panel in queries.panels(d):
            assert panel.get("targets"), panel["title"]


def test_every_query_is_valid_promql_for_promtool(tmp_path: pathlib.Path) -> None:
    promtool = local.find_binaries(("promtool",))["promtool"]
    variables = {"namespace": ".*", "model": ".*", "job": "toque", "kind": ".*"}
    rules = [
        {"record": f"dashboard:query_{i}", "expr": queries.expand(t.expr, variables, WINDOW)}
        for i, t in enumerate(TARGETS)
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query_the_same_way(tmp_path: pathlib.Path) -> None:
    promtool = local.find_binaries(("promtool",))["promtool"]
    path = tmp_path / "dashboard-broken.yaml"
    rule = {"record": "dashboard:broken", "expr": "sum by (le (rate(x[5m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "b", "rules": [rule]}]}))
    result = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_every_metric_a_panel_uses_is_one_toque_exports() -> None:
    exported = inventory.exported()
    unknown = {
        f"{t.dashboard} / {t.panel}: {name}"
        for t in TARGETS
        for name in queries.metric_names(t.expr)
        if inventory.family_of(name, exported) is None
    }
    assert not unknown, sorted(unknown)


def test_every_exported_family_has_a_panel_or_a_reason() -> None:
    exported = inventory.exported()
    used = {
        inventory.family_of(name, exported)
        for t in TARGETS
        for name in queries.metric_names(t.expr)
    }
    missing = sorted(set(exported) - used - set(inventory.UNPANELLED))
    assert not missing, f"exported without a panel or a reason in UNPANELLED: {missing}"
    stale = sorted(set(inventory.UNPANELLED) & used)
    assert not stale, f"listed in UNPANELLED but a panel uses them: {stale}"
    gone = sorted(set(inventory.UNPANELLED) - set(exported))
    assert not gone, f"listed in UNPANELLED but not exported: {gone}"


def test_the_inventory_sees_what_the_dashboards_add_to_the_operator() -> None:
    exported = inventory.exported()
    for name, kind in {
        "toque_trainingjob_duration_seconds": "histogram",
        "toque_trainingjob_gpu_seconds": "counter",
        "toque_reconcile_in_flight": "gauge",
        "toque_reconcile_queue_depth": "gauge",
        "toque_kube_request_duration_seconds": "histogram",
        "toque_operator_leader": "gauge",
        "toque_operator_leader_changes": "counter",
        "process_start_time_seconds": "gauge",
    }.items():
        assert exported.get(name) == kind, name
    assert inventory.family_of("toque_serving_requests_total", exported) == "toque_serving_requests"
    assert inventory.family_of("toque_serving_requests", exported) is None


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d["uid"])
def test_panels_tile_the_grid_with_unique_ids(d: dict[str, Any]) -> None:
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d["uid"])
def test_every_target_reads_the_datasource_variable_and_only_defined_variables(
    d: dict[str, Any],
) -> None:
    defined = {v["name"] for v in d["templating"]["list"]} | BUILTINS
    assert "datasource" in defined
    for panel in queries.panels(d):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(refs), panel["title"]
    for t in queries.targets(d):
        used = set(queries.VARIABLE.findall(t.expr))
        names = {u.strip("${}") for u in used}
        assert names <= defined, (t.panel, names - defined)


def test_stats_and_tables_are_instant_and_time_series_are_ranges() -> None:
    for t in TARGETS:
        assert t.instant == (t.kind in ("stat", "table")), t.panel
        if t.instant:
            # An instant query of a gauge would say nothing of the range it is shown for.
            assert "$__range" in t.expr, t.panel


def test_metric_names_reads_selectors_not_functions_labels_or_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, version) (rate(a_bucket{code=~"5..",x="b c"}'
        "[$__rate_interval]))) / ignoring (version) group_left sum by (model) (b_total offset "
        "5m) or 0 * vector(1) + time() - c:rule unless d[1h:1m] > bool 1e3"
    )
    assert queries.metric_names(expr) == {"a_bucket", "b_total", "c:rule", "d"}


def test_expand_fills_dashboard_variables_and_grafana_intervals() -> None:
    expr = 'rate(x{ns=~"$namespace",m=~"${model}"}[$__rate_interval]) + y[$__range] + $__interval'
    window = queries.Window(start=0.0, end=3600.0, scrape=1.0)
    expanded = queries.expand(expr, {"namespace": ".*", "model": "(a|b)"}, window)
    assert expanded == 'rate(x{ns=~".*",m=~"(a|b)"}[13s]) + y[3600s] + 12s'


def test_grafana_rate_interval_is_four_scrapes_at_least() -> None:
    window = queries.Window(start=0.0, end=60.0, scrape=15.0)
    assert (window.step, window.rate_interval) == (15.0, 60.0)


class _FakePrometheus(http.server.BaseHTTPRequestHandler):
    """Answers every query with one series per target whose labels fill any legend."""

    asked: ClassVar[list[str]] = []  # reset by fake_prometheus()
    labels: ClassVar[dict[str, str]] = {"model": "churn", "version": "3", "phase": "Failed"}

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.answer(urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.answer(urllib.parse.parse_qs(self.rfile.read(length).decode()))

    def answer(self, form: dict[str, list[str]]) -> None:
        path = urllib.parse.urlparse(self.path).path
        data: Any
        if path == "/api/v1/query_range":
            self.asked.append(form["query"][0])
            start = float(form["start"][0])
            values = [[start + i, str(i / 10)] for i in range(3)]
            data = {"resultType": "matrix", "result": [{"metric": self.labels, "values": values}]}
        elif path == "/api/v1/query":
            self.asked.append(form["query"][0])
            value = [float(form["time"][0]), "0.5"]
            data = {"resultType": "vector", "result": [{"metric": self.labels, "value": value}]}
        elif path.startswith("/api/v1/label/"):
            data = ["operator-a", "operator.b"]
        elif path == "/api/v1/status/runtimeinfo":
            data = {"startTime": "2026-01-01T00:00:00.123456789Z"}
        elif path == "/api/v1/status/config":
            data = {"yaml": "global:\n  scrape_interval: 1s\n"}
        else:
            self.send_error(404)
            return
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def fake_prometheus() -> Iterator[str]:
    _FakePrometheus.asked = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_variables_take_the_all_value_else_the_regex_of_every_listed_value() -> None:
    platform = next(d for d in DASHBOARDS if d["uid"] == "toque-platform")
    with fake_prometheus() as url:
        resolved = queries.variables(platform, queries.Prometheus(url), WINDOW)
    assert resolved == {"job": r"(operator-a|operator\.b)", "kind": ".*"}


def test_prometheus_start_time_and_scrape_interval_are_read_from_its_api() -> None:
    with fake_prometheus() as url:
        server = queries.Prometheus(url)
        assert server.start_time() == 1767225600.123456
        assert server.scrape_interval() == 1.0


def test_render_draws_every_ops_panel_from_its_queries(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "ops.png"
    ops = queries.GENERATED / "toque-ops.json"
    with fake_prometheus() as url:
        args = ["--prometheus", url, "--out", str(out), "--dashboard", str(ops)]
        assert render.main([*args, "--since", "1000000", "--until", "1003600"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ops_targets = queries.targets(queries.load(ops))
    assert len(_FakePrometheus.asked) == len(ops_targets)
    assert not [q for q in _FakePrometheus.asked if "$" in q], "a variable was left unexpanded"


def _helm_template(*values: str) -> list[dict[str, Any]]:
    helm = local.find_binaries(("helm",))["helm"]
    args = [str(helm), "template", "toque", str(ROOT / "helm" / "toque"), "-n", "toque-system"]
    # A helm built from its Go module assumes Kubernetes 1.20; the chart needs 1.30.
    args += ["--kube-version", "1.34.0"]
    for value in values:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_chart_ships_no_dashboard_by_default() -> None:
    kinds = [(d["kind"], d["metadata"]["name"]) for d in _helm_template()]
    assert not [k for k in kinds if "dashboard" in k[1]]


def test_the_chart_ships_each_dashboard_as_a_configmap_for_grafanas_sidecar() -> None:
    docs = _helm_template(
        "grafana.dashboards.enabled=true", "grafana.dashboards.annotations.grafana_folder=Toque"
    )
    maps = [d for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]]
    shipped = {}
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["labels"]["app.kubernetes.io/name"] == "toque"
        assert m["metadata"]["annotations"] == {"grafana_folder": "Toque"}
        assert m["metadata"]["namespace"] == "toque-system"
        shipped.update(m["data"])
    assert shipped == {p.name: p.read_text() for p in queries.generated()}
