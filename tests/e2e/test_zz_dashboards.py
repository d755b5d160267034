"""No dead panel: after the end-to-end scenario (training, canary rollouts with a rollback,
drift with a retraining), every panel of both Grafana dashboards returns data from the
session's Prometheus, queried as Grafana would over the session's time range.

Named to run last: the scenario is the tests before it. Each panel's targets run as range
queries (time series) or instant queries over the whole range (stats, tables) with
``$namespace``-style variables at "All"; a panel none of whose targets returns a number is
dead. Every metric name the panels use must also have been scraped, except the few listed in
``MAY_BE_ABSENT``. The ops dashboard is then drawn to a PNG by ``dashboards/render.py``.
"""

from __future__ import annotations

import os
import pathlib
import time

from dashboards import queries, render
from toque.local import services

# Metrics a correct scenario may leave without a single series, and why.
MAY_BE_ABSENT = {
    "toque_reconcile_errors_total": "only when a cycle failed; its panel shows 0 otherwise",
    "toque_drift_feature_p_value": "only ks, chi2 and ztest have one: the window's size picks "
    "the method",
    "toque_drift_performance_degraded": "only for a DriftMonitor with spec.performance",
}


def _window(server: queries.Prometheus) -> queries.Window:
    return queries.Window(server.start_time(), time.time(), server.scrape_interval())


def test_every_dashboard_panel_returns_data_after_the_scenario(
    prometheus: services.Prometheus,
) -> None:
    server = queries.Prometheus(prometheus.url)
    window = _window(server)
    dead, empty = [], []
    for path in queries.generated():
        dashboard = queries.load(path)
        variables = queries.variables(dashboard, server, window)
        by_panel: dict[str, list[bool]] = {}
        for target in queries.targets(dashboard):
            answered = queries.has_data(queries.run(server, target, variables, window))
            by_panel.setdefault(target.panel, []).append(answered)
            if not answered:
                empty.append(f"{path.name}: {target.panel} [{target.ref}] {target.expr}")
        dead += [f"{path.name}: {panel}" for panel, ok in by_panel.items() if not any(ok)]
    assert not dead, "dead panels:\n" + "\n".join(dead) + "\n\nempty queries:\n" + "\n".join(empty)


def test_every_metric_the_dashboards_use_was_scraped(prometheus: services.Prometheus) -> None:
    server = queries.Prometheus(prometheus.url)
    window = _window(server)
    names = {
        name
        for path in queries.generated()
        for target in queries.targets(queries.load(path))
        for name in queries.metric_names(target.expr)
    }
    span = queries.duration(window.end - window.start)
    unseen = sorted(
        name
        for name in names - set(MAY_BE_ABSENT)
        if not server.instant(f"count(count_over_time({name}[{span}]))", window.end)
    )
    assert not unseen, f"never scraped in the session: {unseen}"


def test_the_ops_dashboard_renders_from_the_sessions_prometheus(
    prometheus: services.Prometheus, tmp_path: pathlib.Path
) -> None:
    # TOQUE_OPS_PNG=docs/dashboards/ops.png keeps the picture (how the docs' copy is made).
    out = pathlib.Path(os.environ.get("TOQUE_OPS_PNG") or tmp_path / "ops.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    assert render.main(["--prometheus", prometheus.url, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
