"""The platform team's dashboard: the operator's reconcile loop, its API calls, its process
and leadership, and the model servers' serving path.

``$job`` is the scrape job of the operator (whatever job ``toque_reconcile_total`` comes
from), so the process panels read the operator's ``process_*`` series and no other
program's. Restarts come from ``process_start_time_seconds``, which changes when the process
restarts in its pod. Called by ``dashboards.build``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as model

from dashboards import panels
from dashboards.panels import Query

UID = "toque-platform"
J = 'job=~"$job"'
JK = f'{J},kind=~"$kind"'
RATE = "[$__rate_interval]"
RANGE = "[$__range]"


def reconcile(ids: panels.Numbering) -> list[panels.Item]:
    cycles = f"rate(toque_reconcile_total{{{JK}}}{RATE})"
    duration = f"rate(toque_reconcile_duration_seconds_bucket{{{JK}}}{RATE})"
    return [
        panels.row(ids, "Reconcile loop"),
        panels.timeseries_panel(
            ids,
            "Reconcile rate",
            "Reconcile cycles per second by kind and result.",
            "ops",
            Query(f"sum by (kind, result) ({cycles})", "{{kind}} {{result}}"),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Reconcile errors",
            "Failed cycles per second by kind and error class (0 for a kind whose cycles "
            "all succeeded).",
            "ops",
            Query(
                "sum by (kind, error) "
                f"(rate(toque_reconcile_errors_total{{{JK}}}{RATE})) "
                f"or on (kind) 0 * sum by (kind) ({cycles})",
                "{{kind}} {{error}}",
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Failed share of cycles",
            "Share of the cycles of each kind that raised.",
            "percentunit",
            Query(
                f'(sum by (kind) (rate(toque_reconcile_total{{{JK},result="error"}}{RATE})) '
                f"or 0 * sum by (kind) ({cycles})) / sum by (kind) ({cycles})",
                "{{kind}}",
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Reconcile duration",
            "p50 and p99 of one cycle (observe, decide, act, status), lock wait included.",
            "s",
            Query(f"histogram_quantile(0.99, sum by (le, kind) ({duration}))", "p99 {{kind}}"),
            Query(f"histogram_quantile(0.5, sum by (le, kind) ({duration}))", "p50 {{kind}}"),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Queue depth",
            "Objects waiting for kopf to retry their cycle (the last one failed or left "
            "them unsettled: a run going on, a canary step), by kind.",
            "short",
            Query(f"sum by (kind) (toque_reconcile_queue_depth{{{JK}}})", "{{kind}}"),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Cycles in flight",
            "Cycles running or waiting for their object's lock; near the worker count "
            "(operator.workers) the operator is saturated.",
            "short",
            Query(f"sum by (kind) (toque_reconcile_in_flight{{{JK}}})", "{{kind}}"),
            width=8,
        ),
    ]


def kubernetes_api(ids: panels.Numbering) -> list[panels.Item]:
    latency = f"rate(toque_kube_request_duration_seconds_bucket{{{J}}}{RATE})"
    return [
        panels.row(ids, "Kubernetes API"),
        panels.timeseries_panel(
            ids,
            "API requests",
            "The operator's requests to the API server per second, by verb and HTTP status "
            "(error: no answer). kopf's own watches are not counted.",
            "reqps",
            Query(
                "sum by (verb, code) "
                f"(rate(toque_kube_request_duration_seconds_count{{{J}}}{RATE}))",
                "{{verb}} {{code}}",
            ),
            width=12,
        ),
        panels.timeseries_panel(
            ids,
            "API latency",
            "p99 and p50 of the operator's API requests by verb.",
            "s",
            Query(f"histogram_quantile(0.99, sum by (le, verb) ({latency}))", "p99 {{verb}}"),
            Query(f"histogram_quantile(0.5, sum by (le, verb) ({latency}))", "p50 {{verb}}"),
            width=12,
        ),
    ]


def process(ids: panels.Numbering) -> list[panels.Item]:
    return [
        panels.row(ids, "Operator process and leadership"),
        panels.stat_panel(
            ids,
            "Operator restarts in the range",
            "Times an operator process restarted in its pod (its start time changed).",
            "short",
            Query(f"sum(changes(process_start_time_seconds{{{J}}}{RANGE}))", "restarts"),
            width=4,
            height=8,
            decimals=0,
        ),
        panels.timeseries_panel(
            ids,
            "Operator uptime",
            "Seconds since each operator pod's process started: a drop is a restart.",
            "s",
            Query(f"time() - max by (pod) (process_start_time_seconds{{{J}}})", "{{pod}}"),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Active replica",
            "1 for the replica that leads its election (the one that reconciles), 0 for a standby.",
            "short",
            Query(f"max by (pod, election) (toque_operator_leader{{{J}}})", "{{pod}}"),
            width=8,
        ),
        panels.stat_panel(
            ids,
            "Leader changes in the range",
            "Times a replica became the leader: a takeover after the leader died or lost "
            "its lease.",
            "short",
            Query(f"sum(increase(toque_operator_leader_changes_total{{{J}}}{RANGE}))", "changes"),
            width=4,
            height=8,
            decimals=0,
        ),
        panels.timeseries_panel(
            ids,
            "Operator memory",
            "Resident memory of each operator process.",
            "bytes",
            Query(f"max by (pod) (process_resident_memory_bytes{{{J}}})", "{{pod}}"),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Operator CPU",
            "CPU seconds per second of each operator process.",
            "short",
            Query(f"sum by (pod) (rate(process_cpu_seconds_total{{{J}}}{RATE}))", "{{pod}}"),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Operator file descriptors",
            "Open file descriptors (watches, API and MLflow connections) against the limit.",
            "short",
            Query(f"max by (pod) (process_open_fds{{{J}}})", "open {{pod}}"),
            Query(f"max by (pod) (process_max_fds{{{J}}})", "limit {{pod}}"),
            width=8,
        ),
    ]


def model_servers(ids: panels.Numbering) -> list[panels.Item]:
    wait = "rate(toque_serving_batch_wait_seconds_bucket[$__rate_interval])"
    by = "namespace, model, version"
    return [
        panels.row(ids, "Model servers"),
        panels.table_panel(
            ids,
            "Serving path per version",
            "The path each version was served on in the range: a native fast path (forest, "
            "sklearn, pytorch, onnx) or pyfunc, with the reason.",
            Query(
                "max by (namespace, model, version, path, reason) "
                f"(max_over_time(toque_serving_fast_path{RANGE}))"
            ),
            width=12,
        ),
        panels.timeseries_panel(
            ids,
            "Rows per model call",
            "Mean rows one model call took (several requests' rows when micro-batched), "
            "against the batch limit in force.",
            "short",
            Query(
                f"sum by ({by}) (rate(toque_serving_batch_rows_sum{RATE})) / "
                f"sum by ({by}) (rate(toque_serving_batch_rows_count{RATE}))",
                "mean {{model}} v{{version}}",
            ),
            Query(f"max by ({by}) (toque_serving_batch_max_rows)", "limit {{model}} v{{version}}"),
            width=12,
        ),
        panels.timeseries_panel(
            ids,
            "Batch queue wait",
            "p99 of the time a request waited in the batch queue before its model call.",
            "s",
            Query(
                f"histogram_quantile(0.99, sum by (le, {by}) ({wait}))",
                "p99 {{model}} v{{version}}",
            ),
            width=12,
        ),
        panels.timeseries_panel(
            ids,
            "Sampled rows dropped",
            "Rows the sampler (the drift monitor's input) could not write, per second.",
            "short",
            Query(
                f"sum by ({by}) (rate(toque_serving_samples_dropped_total{RATE}))",
                "{{model}} v{{version}}",
            ),
            width=12,
        ),
    ]


def build() -> dashboard.Dashboard:
    ids = panels.Numbering()
    board = (
        dashboard.Dashboard("Toque / operator")
        .uid(UID)
        .description(
            "The Toque operator for the platform team: reconcile rate, errors, durations and "
            "queue, API latency, restarts and leadership; and the model servers' serving path."
        )
        .tags(["toque", "platform"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(panels.datasource_variable())
        .with_variable(
            panels.label_variable(
                "job", "Operator job", "label_values(toque_reconcile_total, job)", None
            )
        )
        .with_variable(
            panels.label_variable(
                "kind", "Kind", 'label_values(toque_reconcile_total{job=~"$job"}, kind)', ".*"
            )
        )
    )
    for part in (reconcile, kubernetes_api, process, model_servers):
        board = panels.assemble(board, part(ids))
    return board
