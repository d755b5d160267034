"""The rows of ``toque status``: TrainingJobs, ModelVersions and DriftMonitors in one table,
grouped by the model they share, and its plain-text rendering. Pure: the objects come in as
the API server's dicts, the text goes out as a string.

Called by ``toque.cli.status_cmd``, which fetches the objects and renders the rows with
``rich`` on a terminal or with ``text`` otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from toque.api import driftmonitor as dm
from toque.api import modelversion as mv
from toque.api import trainingjob as tj
from toque.reconcile import kubestatus

Kind = Literal["TrainingJob", "ModelVersion", "DriftMonitor"]
Tone = Literal["good", "bad", "busy", "idle"]
KINDS: tuple[Kind, ...] = ("TrainingJob", "ModelVersion", "DriftMonitor")
# How many metrics, drifted features a row names before it says "+N".
MAX_METRICS = 3
MAX_FEATURES = 3

_TONES: dict[str, Tone] = {
    "Succeeded": "good",
    "Promoted": "good",
    "Healthy": "good",
    "Failed": "bad",
    "Aborted": "bad",
    "RolledBack": "bad",
    "Drifted": "bad",
    "Pending": "busy",
    "Running": "busy",
    "Registering": "busy",
    "Progressing": "busy",
    "Suspended": "idle",
    "Paused": "idle",
    "Superseded": "idle",
    "InsufficientData": "idle",
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One object in the table; ``model`` is "" when the object names none."""

    namespace: str
    model: str
    kind: Kind
    name: str
    phase: str
    details: str
    age: str

    @property
    def tone(self) -> Tone:
        """How the phase reads: done well, gone wrong, under way, or at rest."""
        return _TONES.get(self.phase, "busy")


def duration(seconds: float) -> str:
    """``kubectl``-style age: 45s, 12m, 5h, 3d."""
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _since(stamp: Any, now: dt.datetime) -> str:
    if isinstance(stamp, dt.datetime):
        when: dt.datetime | None = kubestatus.utc(stamp)
    else:
        when = kubestatus.parse_time(stamp)
    return duration((now - when).total_seconds()) if when else "-"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _join(parts: Sequence[str]) -> str:
    return ", ".join(p for p in parts if p) or "-"


def _listed(items: Sequence[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" +{len(items) - limit}" if len(items) > limit else "")


def metrics_summary(metrics: Mapping[str, float] | None, limit: int = MAX_METRICS) -> str:
    """A few metrics, validation ones first: ``val_accuracy=0.953 val_f1=0.94 +5``."""
    if not metrics:
        return ""
    keys = sorted(metrics, key=lambda k: (not k.startswith("val_"), k))
    shown = " ".join(f"{k}={metrics[k]:.4g}" for k in keys[:limit])
    return shown + (f" +{len(keys) - limit}" if len(keys) > limit else "")


def _trainingjob(obj: Mapping[str, Any]) -> tuple[str, str]:
    status = kubestatus.parse(tj.TrainingJobStatus, obj.get("status"))
    model = _spec(obj).get("model")
    parts = [metrics_summary(status.metrics)]
    if status.gate is not None:
        failed = [r.rule for r in status.gate.results if not r.passed]
        parts.append("gate passed" if status.gate.passed else f"gate failed: {_listed(failed, 2)}")
    elif status.phase == "Succeeded" and status.mlflow_run_id and _spec(obj).get("evaluation"):
        parts.append("gate pending")
    if status.model_version:
        parts.append(f"version {status.model_version}")
    if status.phase == "Failed" and status.message:
        parts.append(status.message[:80])
    name = model.get("name") if isinstance(model, Mapping) else None
    return str(name or ""), _join(parts)


def _modelversion(obj: Mapping[str, Any]) -> tuple[str, str]:
    status = kubestatus.parse(mv.ModelVersionStatus, obj.get("status"))
    spec = _spec(obj)
    name = str(_meta(obj).get("name") or "")
    parts: list[str] = []
    if status.registry and status.registry.version:
        parts.append(f"registry v{status.registry.version}")
    if status.canary_weight is not None and status.phase in ("Progressing", "Paused"):
        weight = f"canary {status.canary_weight}%"
        if status.actual_canary_weight not in (None, status.canary_weight):
            weight += f" (actual {status.actual_canary_weight}%)"
        parts.append(weight)
    steps = ((spec.get("rollout") or {}).get("steps") or []) if isinstance(spec, Mapping) else []
    if status.current_step is not None and steps and status.phase in ("Progressing", "Paused"):
        parts.append(f"step {min(status.current_step + 1, len(steps))}/{len(steps)}")
    alias = spec.get("alias") or (status.registry.alias if status.registry else None)
    if alias:
        parts.append(f"alias {alias}")
    if status.phase == "Promoted":
        parts.append("stable")
    elif status.stable_version and status.stable_version != name:
        parts.append(f"stable {status.stable_version}")
    return str(spec.get("model") or ""), _join(parts)


def _driftmonitor(obj: Mapping[str, Any], now: dt.datetime) -> tuple[str, str]:
    status = kubestatus.parse(dm.DriftMonitorStatus, obj.get("status"))
    parts: list[str] = []
    drifted = list(status.drifted_features or [])
    if drifted:
        parts.append(f"drifted: {_listed(drifted, MAX_FEATURES)}")
    elif status.phase in ("Healthy", "Drifted"):
        parts.append("no feature drifted")
    if status.samples is not None:
        parts.append(f"{status.samples} samples")
    if status.last_evaluation_time:
        parts.append(f"evaluated {_since(status.last_evaluation_time, now)} ago")
    return str(_spec(obj).get("model") or ""), _join(parts)


def _row(kind: Kind, obj: Mapping[str, Any], now: dt.datetime) -> Row:
    if kind == "TrainingJob":
        model, details = _trainingjob(obj)
    elif kind == "ModelVersion":
        model, details = _modelversion(obj)
    else:
        model, details = _driftmonitor(obj, now)
    meta = _meta(obj)
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    return Row(
        namespace=str(meta.get("namespace") or ""),
        model=model,
        kind=kind,
        name=str(meta.get("name") or ""),
        phase=str(phase or "-"),
        details=details,
        age=_since(meta.get("creationTimestamp"), now),
    )


def rows(
    tjs: Sequence[Mapping[str, Any]],
    mvs: Sequence[Mapping[str, Any]],
    dms: Sequence[Mapping[str, Any]],
    now: dt.datetime | None = None,
) -> list[Row]:
    """One row per object, grouped by namespace and model (objects naming no model last),
    then TrainingJobs, ModelVersions, DriftMonitors, oldest first within each."""
    now = now or dt.datetime.now(dt.UTC)
    keyed: list[tuple[tuple[str, bool, str, int, str, str], Row]] = []
    for kind, objects in zip(KINDS, (tjs, mvs, dms), strict=True):
        for obj in objects:
            row = _row(kind, obj, now)
            created = str(_meta(obj).get("creationTimestamp") or "")
            key = (row.namespace, not row.model, row.model, KINDS.index(kind), created, row.name)
            keyed.append((key, row))
    return [row for _, row in sorted(keyed, key=lambda item: item[0])]


def columns(all_namespaces: bool) -> tuple[str, ...]:
    head = ("MODEL", "KIND", "NAME", "PHASE", "DETAILS", "AGE")
    return ("NAMESPACE", *head) if all_namespaces else head


def cells(row: Row, all_namespaces: bool) -> tuple[str, ...]:
    out = (row.model or "-", row.kind, row.name, row.phase, row.details, row.age)
    return (row.namespace, *out) if all_namespaces else out


def text(table: Sequence[Row], all_namespaces: bool = False) -> str:
    """The rows as plain columns (``kubectl get`` style): no colour, no box characters, so
    a pipe or a CI log reads it as it is."""
    head = columns(all_namespaces)
    body = [cells(r, all_namespaces) for r in table]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = [
        "   ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [head, *body]
    ]
    return "\n".join(lines) + "\n"
