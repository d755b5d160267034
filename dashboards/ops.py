"""The ops managers' dashboard: training, rollouts, serving, performance, drift and bias.

Every panel reads what Toque exports: the operator's ``toque_*`` series (object phases,
training run and GPU time, rollbacks, canary steps, the DriftMonitors' verdicts) and the model
servers' ``toque_serving_*`` (labelled ``namespace`` by the scrape, ``model`` and ``version``
by the server). The canary panels run the canary analysis' own measures
(``toque.reconcile.analysis``): 5xx share, p99 latency and predicted classes by version.
Called by ``dashboards.build``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as model

from dashboards import panels
from dashboards.panels import Query

UID = "toque-ops"
NS = 'namespace=~"$namespace"'
M = f'{NS},model=~"$model"'
RATE = "[$__rate_interval]"
RANGE = "[$__range]"
BY_VERSION = "namespace, model, version"
VERSION = "{{model}} v{{version}}"
TRAFFIC = f'{M},endpoint!="feedback"'


def _ratio(numerator: str, denominator: str, by: str) -> str:
    return f"sum by ({by}) ({numerator}) / sum by ({by}) ({denominator})"


def training(ids: panels.Numbering) -> list[panels.Item]:
    return [
        panels.row(ids, "Training"),
        panels.timeseries_panel(
            ids,
            "TrainingJobs by phase",
            "TrainingJobs that exist, by their phase (toque_trainingjobs).",
            "short",
            Query(f"sum by (phase) (toque_trainingjobs{{{NS}}})", "{{phase}}"),
            width=8,
            stacked=True,
        ),
        panels.stat_panel(
            ids,
            "Runs finished in the range",
            "Runs that reached Succeeded or Failed with a known run time, and every run that "
            "entered Failed (some fail before their Job starts).",
            "short",
            Query(
                "sum by (phase) "
                f"(increase(toque_trainingjob_duration_seconds_count{{{NS}}}{RANGE}))",
                "{{phase}}",
            ),
            Query(f"sum(increase(toque_trainingjob_failures_total{{{NS}}}{RANGE}))", "failures"),
            width=5,
            height=8,
            decimals=0,
        ),
        panels.stat_panel(
            ids,
            "Run time in the range",
            "Median and 90th percentile of the finished runs' run time (their Job's start to "
            "completion), by final phase.",
            "s",
            Query(
                "histogram_quantile(0.5, sum by (le, phase) "
                f"(increase(toque_trainingjob_duration_seconds_bucket{{{NS}}}{RANGE})))",
                "p50 {{phase}}",
            ),
            Query(
                "histogram_quantile(0.9, sum by (le, phase) "
                f"(increase(toque_trainingjob_duration_seconds_bucket{{{NS}}}{RANGE})))",
                "p90 {{phase}}",
            ),
            width=6,
            height=8,
        ),
        panels.stat_panel(
            ids,
            "GPU hours in the range",
            "GPUs requested times run time, summed over the runs that finished in the range.",
            "h",
            Query(
                f"sum(increase(toque_trainingjob_gpu_seconds_total{{{NS}}}{RANGE})) / 3600", "GPU h"
            ),
            width=5,
            height=8,
            decimals=3,
        ),
    ]


def rollouts(ids: panels.Numbering) -> list[panels.Item]:
    requests = f"rate(toque_serving_requests_total{{{TRAFFIC}}}{RATE})"
    return [
        panels.row(ids, "Rollouts"),
        panels.timeseries_panel(
            ids,
            "Traffic share by version",
            "Each version's share of its model's prediction requests: a canary's weight as "
            "the traffic sees it, and the live version at 100 %.",
            "percentunit",
            Query(
                f"sum by ({BY_VERSION}) ({requests}) / ignoring (version) group_left "
                f"sum by (namespace, model) ({requests})",
                VERSION,
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Pods serving each version",
            "Model server pods up, by the version they serve (toque_serving_model_info).",
            "short",
            Query(f"count by ({BY_VERSION}) (toque_serving_model_info{{{M}}})", VERSION),
            width=8,
            stacked=True,
        ),
        panels.table_panel(
            ids,
            "Versions served in the range",
            "Every model version a pod served in the range, with its model digest.",
            Query(
                "max by (namespace, model, version, digest) "
                f"(max_over_time(toque_serving_model_info{{{M}}}{RANGE}))"
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "ModelVersions by phase",
            "ModelVersions by phase: Progressing and Paused are rollouts in progress.",
            "short",
            Query(f"sum by (phase) (toque_modelversions{{{NS}}})", "{{phase}}"),
            width=8,
            stacked=True,
        ),
        panels.timeseries_panel(
            ids,
            "Canaries in progress: time at their step",
            "Each Progressing or Paused version, how long it has been at its current step.",
            "s",
            Query(
                "max by (namespace, model, modelversion, step) (time() - "
                f"toque_modelversion_step_started_timestamp_seconds{{{M}}})",
                "{{modelversion}} step {{step}}",
            ),
            width=8,
        ),
        panels.stat_panel(
            ids,
            "Rollouts ended without promotion",
            "Rollouts in the range that ended RolledBack (by the analysis or by hand), "
            "Aborted or Failed: the traffic stayed on the stable version.",
            "short",
            Query(
                "sum by (model, phase) "
                f"(increase(toque_modelversion_rollbacks_total{{{M}}}{RANGE}))",
                "{{model}} {{phase}}",
            ),
            width=8,
            height=8,
            decimals=0,
        ),
    ]


def canary_analysis(ids: panels.Numbering) -> list[panels.Item]:
    everything = f"rate(toque_serving_requests_total{{{M}}}{RATE})"
    errors = f'rate(toque_serving_requests_total{{{M},code=~"5.."}}{RATE})'
    latency = f"rate(toque_serving_request_duration_seconds_bucket{{{M}}}{RATE})"
    return [
        panels.row(ids, "Canary analysis and serving, by version"),
        panels.timeseries_panel(
            ids,
            "Error rate by version",
            "Share of requests answered 5xx, as the canary analysis' error-rate check "
            "measures it (0 when a version served no error).",
            "percentunit",
            Query(
                f"(sum by ({BY_VERSION}) ({errors}) or 0 * sum by ({BY_VERSION}) ({everything}))"
                f" / sum by ({BY_VERSION}) ({everything})",
                VERSION,
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Latency by version",
            "p99 (the canary analysis' check) and p50 of prediction requests.",
            "s",
            Query(
                f"histogram_quantile(0.99, sum by (le, {BY_VERSION}) ({latency}))", "p99 " + VERSION
            ),
            Query(
                f"histogram_quantile(0.5, sum by (le, {BY_VERSION}) ({latency}))", "p50 " + VERSION
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Throughput by version",
            "Prediction requests and predicted rows per second (feedback excluded).",
            "reqps",
            Query(
                f"sum by ({BY_VERSION}) (rate(toque_serving_requests_total{{{TRAFFIC}}}{RATE}))",
                "requests " + VERSION,
            ),
            Query(
                f"sum by ({BY_VERSION}) (rate(toque_serving_rows_total{{{M}}}{RATE}))",
                "rows " + VERSION,
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Predicted classes by version",
            "Rows predicted per class and second: the distributions the prediction-shift "
            "check compares between canary and stable.",
            "short",
            Query(
                "sum by (namespace, model, version, class) "
                f"(rate(toque_serving_predictions_total{{{M}}}{RATE}))",
                "v{{version}} class {{class}}",
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Mean prediction confidence by version",
            "Mean top-class probability of the predicted rows (classifiers with "
            "probabilities); a drop says the model is less sure of its inputs.",
            "percentunit",
            Query(
                _ratio(
                    f"rate(toque_serving_prediction_confidence_sum{{{M}}}{RATE})",
                    f"rate(toque_serving_prediction_confidence_count{{{M}}}{RATE})",
                    BY_VERSION,
                ),
                VERSION,
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Labels fed back",
            "Rows sent back with their true label per second (the feedback endpoint), from "
            "which the DriftMonitor measures the real accuracy.",
            "short",
            Query(
                f"sum by ({BY_VERSION}) (rate(toque_serving_feedback_rows_total{{{M}}}{RATE}))",
                VERSION,
            ),
            width=8,
        ),
    ]


def performance(ids: panels.Numbering) -> list[panels.Item]:
    monitor = "namespace, monitor, model, version"
    return [
        panels.row(ids, "Performance"),
        panels.timeseries_panel(
            ids,
            "Accuracy: estimated, measured and reference",
            "Estimated from the predictions' confidence (no labels needed), measured on the "
            "fed-back labels, and on the reference data; 1 = degraded when the monitor has "
            "spec.performance and accuracy fell more than maxDrop.",
            "percentunit",
            Query(
                f"max by ({monitor}) (toque_drift_estimated_accuracy{{{M}}})",
                "estimated {{model}} v{{version}}",
            ),
            Query(
                f"max by ({monitor}) (toque_drift_accuracy{{{M}}})",
                "measured {{model}} v{{version}}",
            ),
            Query(
                f"max by ({monitor}) (toque_drift_reference_accuracy{{{M}}})",
                "reference {{model}} v{{version}}",
            ),
            Query(
                f"max by ({monitor}) (toque_drift_performance_degraded{{{M}}})",
                "degraded {{model}} v{{version}}",
            ),
            width=12,
        ),
        panels.table_panel(
            ids,
            "Confusion matrix of the fed-back rows",
            "Rows fed back in the range, by true and predicted class.",
            Query(
                "sum by (model, version, actual, predicted) "
                f"(increase(toque_serving_feedback_total{{{M}}}{RANGE}))"
            ),
            width=12,
        ),
    ]


def drift(ids: panels.Numbering) -> list[panels.Item]:
    monitor = "namespace, monitor, model, version"
    feature = "namespace, monitor, model, feature, method"
    return [
        panels.row(ids, "Drift"),
        panels.timeseries_panel(
            ids,
            "Drifted models",
            "1 while a DriftMonitor's last evaluation found the dataset drifted; the share "
            "of its features that drifted.",
            "percentunit",
            Query(
                f"max by ({monitor}) (toque_drift_dataset_drifted{{{M}}})",
                "drifted {{model}} v{{version}}",
            ),
            Query(
                f"max by ({monitor}) (toque_drift_drift_share{{{M}}})",
                "share {{model}} v{{version}}",
            ),
            width=8,
        ),
        panels.table_panel(
            ids,
            "Features that drifted in the range",
            "Every feature a DriftMonitor flagged at least once in the range.",
            Query(
                f"max by ({feature}) "
                f"(max_over_time(toque_drift_feature_drifted{{{M}}}{RANGE})) == 1"
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Feature tests and their thresholds",
            "Each feature's statistic (a distance for psi, jsd and wasserstein; a p-value for "
            "ks, chi2 and ztest) next to the threshold it is judged by.",
            "short",
            Query(
                f"max by ({feature}) (toque_drift_feature_score{{{M}}})",
                "{{feature}} {{method}} score",
            ),
            Query(
                f"max by ({feature}) (toque_drift_feature_p_value{{{M}}})",
                "{{feature}} {{method}} p-value",
            ),
            Query(
                f"max by ({feature}) (toque_drift_feature_threshold{{{M}}})",
                "{{feature}} threshold",
            ),
            width=8,
        ),
        panels.timeseries_panel(
            ids,
            "Prediction drift",
            "Drift score of the predictions' distribution against the reference's.",
            "short",
            Query(f"max by ({monitor}) (toque_drift_output_drift_score{{{M}}})", VERSION),
            width=6,
        ),
        panels.timeseries_panel(
            ids,
            "Rows per evaluation",
            "Rows of each DriftMonitor's last evaluation window.",
            "short",
            Query(f"max by ({monitor}) (toque_drift_samples{{{M}}})", "{{monitor}}"),
            width=6,
        ),
        panels.timeseries_panel(
            ids,
            "DriftMonitors by phase",
            "DriftMonitors by phase (toque_driftmonitors).",
            "short",
            Query(f"sum by (phase) (toque_driftmonitors{{{NS}}})", "{{phase}}"),
            width=6,
            stacked=True,
        ),
        panels.stat_panel(
            ids,
            "Retrainings started by drift",
            "TrainingJobs the DriftMonitors started in the range.",
            "short",
            Query(
                "sum by (namespace, monitor) "
                f"(increase(toque_drift_retrains_total{{{NS}}}{RANGE}))",
                "{{monitor}}",
            ),
            width=6,
            height=8,
            decimals=0,
        ),
    ]


def inputs_and_bias(ids: panels.Numbering) -> list[panels.Item]:
    category = f"rate(toque_serving_feature_category_total{{{M}}}{RATE})"
    return [
        panels.row(ids, "Inputs and bias"),
        panels.timeseries_panel(
            ids,
            "Mean input values by version",
            "Mean of each numeric input feature over the served rows.",
            "short",
            Query(
                _ratio(
                    f"rate(toque_serving_feature_value_sum{{{M}}}{RATE})",
                    f"rate(toque_serving_feature_value_count{{{M}}}{RATE})",
                    "namespace, model, version, feature",
                ),
                "{{feature}} v{{version}}",
            ),
            width=6,
        ),
        panels.timeseries_panel(
            ids,
            "Categorical inputs",
            "Share of the served rows per category of each categorical feature (__other__: "
            "not seen in training).",
            "percentunit",
            Query(
                f"sum by (namespace, model, feature, category) ({category}) / ignoring (category) "
                f"group_left sum by (namespace, model, feature) ({category})",
                "{{feature}}={{category}}",
            ),
            width=6,
        ),
        panels.timeseries_panel(
            ids,
            "Positive rate by group",
            "Share of each group's rows predicted as the positive class (the DriftMonitor's "
            "spec.bias feature).",
            "percentunit",
            Query(
                "max by (namespace, monitor, model, feature, group) "
                f"(toque_drift_group_positive_rate{{{M}}})",
                "{{feature}}={{group}}",
            ),
            width=6,
        ),
        panels.timeseries_panel(
            ids,
            "Bias: largest gap between groups",
            "The largest positive-rate gap between two groups, and the verdict (1 = biased: "
            "the gap exceeds maxDisparity).",
            "short",
            Query(
                f"max by (namespace, monitor, model, feature) (toque_drift_bias_disparity{{{M}}})",
                "gap {{feature}}",
            ),
            Query(
                f"max by (namespace, monitor, model, feature) (toque_drift_biased{{{M}}})",
                "biased {{feature}}",
            ),
            width=6,
        ),
    ]


def build() -> dashboard.Dashboard:
    ids = panels.Numbering()
    board = (
        dashboard.Dashboard("Toque / ML operations")
        .uid(UID)
        .description(
            "Training runs, rollouts and their canary analysis, serving by version, measured "
            "and estimated performance, drift and bias."
        )
        .tags(["toque", "mlops"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(panels.datasource_variable())
        .with_variable(
            panels.label_variable(
                "namespace", "Namespace", 'label_values({__name__=~"toque_.*"}, namespace)', ".*"
            )
        )
        .with_variable(
            panels.label_variable(
                "model",
                "Model",
                'label_values({__name__=~"toque_(serving|drift)_.*",namespace=~"$namespace"}, '
                "model)",
                ".*",
            )
        )
    )
    for part in (training, rollouts, canary_analysis, performance, drift, inputs_and_bias):
        board = panels.assemble(board, part(ids))
    return board
