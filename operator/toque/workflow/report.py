"""What ``toque report`` says about a run: gathered facts in, a ``Report`` out, then Markdown
for a pull-request comment or JSON for programs.

Pure: ``toque.workflow.gather`` reads the cluster, the registry and the data store into
``Facts``; ``collect`` compares the run with its champion (metrics, params, datasets), takes
the gate's verdict and the metric's history as they are, and ``markdown`` / ``to_json``
render the result. Called by ``toque.cli.report_cmd``. Values MLflow holds are written with
Python's shortest round-trip ``repr``, so the Markdown parses back to exactly the doubles
MLflow stores; differences and percentages are derived, and rounded for reading.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from toque.data import diff as data_diff
from toque.data import manifest

DATASET_TAG_PREFIX = "toque.dataset."
MARKER = "<!-- toque-report -->"  # lets a workflow find and update its own comment
DASH = "—"
_LOWER = re.compile(
    r"(^|[._/])(loss|log_loss|logloss|error|mse|rmse|mae|mape|msle|rmsle|brier(_score)?"
    r"|cross_entropy|hinge_loss|fpr|fnr|gap|latency|duration|time)$"
)
_HIGHER = re.compile(
    r"(^|[._/])(accuracy|balanced_accuracy|precision|recall|f1(_score|_macro|_micro|_weighted)?"
    r"|auc|roc_auc|pr_auc|average_precision|ap|r2|r2_score|specificity|sensitivity|tpr|tnr"
    r"|jaccard|hit_rate|top_k_accuracy|explained_variance|score)$"
)
_PREFERRED = ("val_accuracy", "val_roc_auc", "val_auc", "val_f1", "val_r2", "val_rmse")


# -- facts (what gather reads) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """An MLflow run as ``runs/get`` returns it."""

    run_id: str
    name: str | None = None
    experiment_id: str | None = None
    artifact_uri: str | None = None
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def datasets(self) -> dict[str, str]:
        """The pinned ``name@sha256:…`` the run read, by the alias its code saw."""
        return {
            key[len(DATASET_TAG_PREFIX) :]: value
            for key, value in self.tags.items()
            if key.startswith(DATASET_TAG_PREFIX) and value
        }


@dataclasses.dataclass(frozen=True)
class Champion:
    """The registry version holding ``alias`` (version None: none holds it) and its run."""

    alias: str
    version: str | None
    run: Run | None = None


@dataclasses.dataclass(frozen=True)
class GateRule:
    rule: str
    passed: bool
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Gate:
    """The evaluation gate's verdict and where it was read (``source``)."""

    passed: bool
    results: tuple[GateRule, ...]
    source: str


@dataclasses.dataclass(frozen=True)
class VersionPoint:
    """A registry version of the model and its run's value of the primary metric."""

    version: str
    run_id: str | None
    value: float | None


@dataclasses.dataclass(frozen=True, eq=False)
class Facts:
    """Everything ``collect`` and the plots need, as ``gather`` found it."""

    target: str
    run: Run
    model: str | None = None
    champion: Champion | None = None
    gate: Gate | None = None
    # Pinned dataset ref -> its manifest, for the refs the store could show.
    manifests: Mapping[str, manifest.Manifest] = dataclasses.field(default_factory=dict)
    store_error: str | None = None
    primary_metric: str | None = None
    # Metric -> "maximize" / "minimize", as the gate declares it.
    directions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    history: tuple[VersionPoint, ...] = ()
    run_url: str | None = None
    notes: tuple[str, ...] = ()
    # Plot inputs: the run's validation predictions and feature importance.
    predictions: pd.DataFrame | None = None
    task: str | None = None
    importance: tuple[tuple[str, float], ...] = ()


# -- the report ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricRow:
    name: str
    value: float | None
    champion: float | None
    delta: float | None
    percent: float | None  # None: no champion value, or it is 0
    change: str | None  # "up", "down", "same"
    better: bool | None  # None: unchanged, or the metric's direction is not known


@dataclasses.dataclass(frozen=True)
class ParamRow:
    name: str
    value: str | None
    champion: str | None
    status: str | None  # "changed", "added", "removed"; None without a champion


@dataclasses.dataclass(frozen=True)
class DatasetRow:
    alias: str
    ref: str | None
    champion_ref: str | None
    same: bool | None  # same digest as the champion's
    rows: int | None
    champion_rows: int | None
    rows_delta: int | None
    columns: int | None
    changes: tuple[str, ...]  # schema and file changes against the champion's version
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class HistoryPoint:
    label: str
    version: str | None
    run_id: str | None
    value: float | None
    champion: bool
    this_run: bool


@dataclasses.dataclass(frozen=True)
class Figure:
    name: str
    title: str
    link: str


@dataclasses.dataclass(frozen=True)
class Report:
    target: str
    run_id: str
    run_name: str | None
    run_url: str | None
    model: str | None
    champion_alias: str | None
    champion_version: str | None
    champion_run_id: str | None
    champion_is_this_run: bool
    metrics: tuple[MetricRow, ...]
    params: tuple[ParamRow, ...]
    params_unchanged: int
    datasets: tuple[DatasetRow, ...]
    data_note: str | None
    gate: Gate | None
    primary_metric: str | None
    history: tuple[HistoryPoint, ...]
    figures: tuple[Figure, ...]
    notes: tuple[str, ...]


def direction(metric: str, declared: Mapping[str, str] | None = None) -> str | None:
    """``maximize`` or ``minimize`` as declared, else guessed from the name, else None."""
    if declared and metric in declared:
        return declared[metric]
    if _LOWER.search(metric):
        return "minimize"
    if _HIGHER.search(metric):
        return "maximize"
    return None


def primary_metric(metrics: Mapping[str, float], wanted: str | None = None) -> str | None:
    """The metric to follow across versions: ``wanted``, else a common validation metric,
    else the first ``val_*``, else the first metric."""
    if wanted:
        return wanted
    for name in _PREFERRED:
        if name in metrics:
            return name
    names = sorted(metrics)
    validation = [n for n in names if n.startswith("val_")]
    found = validation or names
    return found[0] if found else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def metric_row(
    name: str, value: float | None, champion: float | None, way: str | None
) -> MetricRow:
    ours, theirs = _finite(value), _finite(champion)
    if ours is None or theirs is None:
        return MetricRow(name, value, champion, None, None, None, None)
    delta = ours - theirs
    percent = delta / abs(theirs) * 100 if theirs != 0 else None
    change = "up" if delta > 0 else "down" if delta < 0 else "same"
    better = None
    if change != "same" and way is not None:
        better = (delta > 0) == (way == "maximize")
    return MetricRow(name, value, champion, delta, percent, change, better)


def _metrics(facts: Facts, theirs: Mapping[str, float] | None) -> tuple[MetricRow, ...]:
    ours = facts.run.metrics
    names = set(ours) | set(theirs or {})
    # MLflow's system metrics (CPU, memory) say nothing about the model.
    names = {n for n in names if not n.startswith("system/")}
    first = [facts.primary_metric] if facts.primary_metric in names else []
    ordered = first + sorted(names - set(first))
    return tuple(
        metric_row(
            n,
            ours.get(n),
            (theirs or {}).get(n),
            direction(n, facts.directions),
        )
        for n in ordered
    )


def params_diff(
    ours: Mapping[str, str], theirs: Mapping[str, str] | None
) -> tuple[tuple[ParamRow, ...], int]:
    """The params that differ (all of them, status None, without a champion) and how many
    are the same."""
    if theirs is None:
        return tuple(ParamRow(k, ours[k], None, None) for k in sorted(ours)), 0
    rows = []
    same = 0
    for name in sorted(set(ours) | set(theirs)):
        if name not in theirs:
            rows.append(ParamRow(name, ours[name], None, "added"))
        elif name not in ours:
            rows.append(ParamRow(name, None, theirs[name], "removed"))
        elif ours[name] != theirs[name]:
            rows.append(ParamRow(name, ours[name], theirs[name], "changed"))
        else:
            same += 1
    return tuple(rows), same


def _digest(ref: str | None) -> str | None:
    return ref.split("@", 1)[1] if ref and "@" in ref else None


def _dataset_row(
    alias: str,
    ref: str | None,
    theirs: str | None,
    manifests: Mapping[str, manifest.Manifest],
    store_error: str | None,
    has_champion: bool,
) -> DatasetRow:
    ours_m = manifests.get(ref) if ref else None
    theirs_m = manifests.get(theirs) if theirs else None
    same = None
    if has_champion and ref and theirs:
        same = _digest(ref) == _digest(theirs)
    changes: tuple[str, ...] = ()
    if ours_m is not None and theirs_m is not None and not same:
        found = data_diff.diff(theirs_m, ours_m)
        # Without the ---/+++ header, and the rows line the table has its own columns for.
        changes = tuple(line for line in found.lines()[2:] if not line.startswith("~ rows "))
    elif has_champion and ref and not theirs:
        changes = ("not read by the champion",)
    elif has_champion and theirs and not ref:
        changes = ("read by the champion, not by this run",)
    missing = [r for r in (ref, theirs) if r and r not in manifests]
    note = None
    if store_error is None and missing:
        note = "not in the data store: " + ", ".join(missing)
    rows = ours_m.rows if ours_m else None
    champion_rows = theirs_m.rows if theirs_m else None
    delta = rows - champion_rows if rows is not None and champion_rows is not None else None
    columns = sum(len(t.columns) for t in ours_m.tables) if ours_m and ours_m.tables else None
    return DatasetRow(alias, ref, theirs, same, rows, champion_rows, delta, columns, changes, note)


def _datasets(facts: Facts, champion_run: Run | None) -> tuple[DatasetRow, ...]:
    ours = facts.run.datasets()
    theirs = champion_run.datasets() if champion_run else {}
    return tuple(
        _dataset_row(
            alias,
            ours.get(alias),
            theirs.get(alias),
            facts.manifests,
            facts.store_error,
            champion_run is not None,
        )
        for alias in sorted(set(ours) | set(theirs))
    )


def history(facts: Facts) -> tuple[HistoryPoint, ...]:
    metric = facts.primary_metric
    if metric is None or facts.model is None:
        return ()
    champion = facts.champion.version if facts.champion else None
    points = [
        HistoryPoint(
            f"v{p.version}",
            p.version,
            p.run_id,
            p.value,
            p.version == champion,
            p.run_id == facts.run.run_id,
        )
        for p in facts.history
    ]
    if not any(p.this_run for p in points):
        value = facts.run.metrics.get(metric)
        points.append(HistoryPoint("this run", None, facts.run.run_id, value, False, True))
    return tuple(points)


def collect(facts: Facts, figures: Sequence[Figure] = ()) -> Report:
    """The report of ``facts``: the run against its champion, the gate, the history."""
    champion = facts.champion
    champion_run = champion.run if champion and champion.version is not None else None
    notes = list(facts.notes)
    if facts.model is None:
        notes.append("the run names no registered model, so there is no champion to compare with")
    elif champion is not None and champion.version is None:
        notes.append(f"no version of {facts.model} holds @{champion.alias} yet")
    is_self = champion_run is not None and champion_run.run_id == facts.run.run_id
    if is_self and champion is not None:
        notes.append(f"this run's model is the champion (@{champion.alias})")
    params, unchanged = params_diff(facts.run.params, champion_run.params if champion_run else None)
    data_note = None
    if facts.store_error:
        data_note = f"the data store could not be read ({facts.store_error})"
    return Report(
        target=facts.target,
        run_id=facts.run.run_id,
        run_name=facts.run.name,
        run_url=facts.run_url,
        model=facts.model,
        champion_alias=champion.alias if champion else None,
        champion_version=champion.version if champion else None,
        champion_run_id=champion_run.run_id if champion_run else None,
        champion_is_this_run=is_self,
        metrics=_metrics(facts, champion_run.metrics if champion_run else None),
        params=params,
        params_unchanged=unchanged,
        datasets=_datasets(facts, champion_run),
        data_note=data_note,
        gate=facts.gate,
        primary_metric=facts.primary_metric,
        history=history(facts),
        figures=tuple(figures),
        notes=tuple(notes),
    )


# -- rendering -----------------------------------------------------------------------------


def exact(value: float | None) -> str:
    """A value MLflow holds, as the shortest text that reads back to the same double."""
    if value is None:
        return DASH
    return repr(float(value))


def _delta(value: float | None) -> str:
    return DASH if value is None else f"{value:+.6g}"


def _percent(value: float | None) -> str:
    return DASH if value is None else f"{value:+.4g}%"


def _arrow(row: MetricRow) -> str:
    if row.change is None:
        return ""
    arrow = {"up": "↑", "down": "↓", "same": "→"}[row.change]
    if row.better is None:
        return arrow
    return f"{arrow} {'better' if row.better else 'worse'}"


def _cell(text: str | None) -> str:
    if text is None:
        return DASH
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str | None) -> str:
    return DASH if not text else f"`{text}`"


def _short_ref(ref: str | None) -> str:
    """``name@sha256:`` and the first 12 hex digits: enough to tell versions apart."""
    if not ref:
        return DASH
    name, _, digest = ref.partition("@")
    return f"`{name}@{digest[:19]}`" if digest else f"`{ref}`"


def _header(report: Report) -> list[str]:
    run = f"`{report.run_name}`" if report.run_name else f"`{report.run_id}`"
    link = f"[{report.run_id}]({report.run_url})" if report.run_url else f"`{report.run_id}`"
    out = [MARKER, f"## Toque report: {run}", "", f"Run {link} ({report.target})."]
    if report.model and report.champion_alias:
        if report.champion_version is not None:
            champ = f"version {report.champion_version}"
            if report.champion_run_id:
                champ += f", run `{report.champion_run_id}`"
            out[-1] += (
                f" Model **{report.model}**, compared with **@{report.champion_alias}** ({champ})."
            )
        else:
            out[-1] += f" Model **{report.model}**; no version holds @{report.champion_alias}."
    if report.notes:
        out += ["", *[f"> - {note}" for note in report.notes]]
    return out


def _metrics_md(report: Report) -> list[str]:
    out = ["", "### Metrics", ""]
    if not report.metrics:
        return [*out, "The run logged no metrics."]
    if report.champion_run_id is None:
        out += ["| Metric | This run |", "|---|---:|"]
        out += [f"| {_cell(m.name)} | {exact(m.value)} |" for m in report.metrics]
        return out
    version = f"v{report.champion_version}" if report.champion_version else ""
    out += [
        f"| Metric | This run | Champion {version} | Δ | Δ % | |".replace("  ", " "),
        "|---|---:|---:|---:|---:|---|",
    ]
    for m in report.metrics:
        out.append(
            f"| {_cell(m.name)} | {exact(m.value)} | {exact(m.champion)} | {_delta(m.delta)} "
            f"| {_percent(m.percent)} | {_arrow(m)} |"
        )
    return out


def _gate_md(report: Report) -> list[str]:
    gate = report.gate
    if gate is None:
        return ["", "### Evaluation gate: not known", ""]
    verdict = "✅ passed" if gate.passed else "❌ failed"
    out = ["", f"### Evaluation gate: {verdict}", "", f"From {gate.source}."]
    if not gate.results:
        return [*out, "", "The gate has no rules."]
    out += ["", "| Rule | Result | Detail |", "|---|---|---|"]
    for r in gate.results:
        mark = "✅ pass" if r.passed else "❌ fail"
        out.append(f"| {_cell(r.rule)} | {mark} | {_cell(r.message) if r.message else ''} |")
    return out


def _params_md(report: Report) -> list[str]:
    out = ["", "### Parameters", ""]
    if report.champion_run_id is None:
        if not report.params:
            return [*out, "The run logged no parameters."]
        out += [f"<details><summary>{len(report.params)} parameters</summary>", ""]
        out += ["| Param | This run |", "|---|---|"]
        out += [f"| {_cell(p.name)} | {_code(p.value)} |" for p in report.params]
        return [*out, "", "</details>"]
    if not report.params:
        return [*out, f"Same as the champion ({report.params_unchanged} parameters)."]
    out += ["| Param | This run | Champion | |", "|---|---|---|---|"]
    for p in report.params:
        out.append(f"| {_cell(p.name)} | {_code(p.value)} | {_code(p.champion)} | {p.status} |")
    if report.params_unchanged:
        out += ["", f"{report.params_unchanged} other parameters unchanged."]
    return out


def _rows(value: int | None) -> str:
    return DASH if value is None else str(value)


def _datasets_md(report: Report) -> list[str]:
    out = ["", "### Data", ""]
    if report.data_note:
        out += [f"> {report.data_note}", ""]
    if not report.datasets:
        return [*out, "The run records no dataset versions."]
    out += [
        "| Dataset | This run | Champion | Same | Rows | Δ rows | Columns | Changes |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for d in report.datasets:
        same = DASH if d.same is None else ("yes" if d.same else "no")
        delta = DASH if d.rows_delta is None else f"{d.rows_delta:+d}"
        changes = "<br>".join(_cell(c) for c in d.changes) if d.changes else ""
        if d.note:
            changes = f"{changes}<br>{d.note}" if changes else d.note
        out.append(
            f"| {_cell(d.alias)} | {_short_ref(d.ref)} | {_short_ref(d.champion_ref)} | {same} "
            f"| {_rows(d.rows)} | {delta} | {_rows(d.columns)} | {changes} |"
        )
    return out


def _figures_md(report: Report) -> list[str]:
    if not report.figures:
        return []
    out = ["", "### Plots", ""]
    for f in report.figures:
        out += [f"![{f.title}]({f.link})", ""]
    return out[:-1]


def markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown for a pull-request comment."""
    lines = _header(report)
    lines += _metrics_md(report)
    lines += _gate_md(report)
    lines += _params_md(report)
    lines += _datasets_md(report)
    lines += _figures_md(report)
    return "\n".join(lines).rstrip() + "\n"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def to_dict(report: Report) -> dict[str, Any]:
    """The report's fields as JSON-ready values (numbers stay numbers; NaN becomes null)."""
    result: dict[str, Any] = _clean(dataclasses.asdict(report))
    return result


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"
