"""Builds the TrainingJob a DriftMonitor starts to retrain its model. Pure: no I/O.

Called by ``reconcile.driftmonitor`` when drift (or a performance drop) asks for a
retraining. The clone keeps the template TrainingJob's spec (its code, entrypoint,
resources, gate and promotion) and re-points every dataset to ``onDrift.dataTag``, so the
run resolves the newest data when it starts. Its name follows from the monitor and the
evaluation time, so a cycle repeated after a crash asks for the same object again.

No ownerReference to the monitor on purpose: the retrained version may be the live one a
minute later, and deleting a monitor must not take a model down with it. The label
``toque.dev/drift-monitor`` and the ``toque.dev/trigger-*`` annotations keep the lineage.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pydantic

from toque.api import constants
from toque.api import driftmonitor as dm
from toque.api import trainingjob as tj
from toque.resources import names

KIND = "TrainingJob"
# Job and pod names derive from a TrainingJob's name and must fit a label value.
NAME_LIMIT = names.MAX_LABEL_VALUE
REASON_LIMIT = 1000


class CloneError(ValueError):
    """The template cannot be cloned (its spec does not validate any more)."""


def stamp(time: dt.datetime) -> str:
    """The evaluation time in a name: ``20261127-100000`` (UTC, seconds)."""
    return time.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")


def rfc3339(time: dt.datetime) -> str:
    return time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_name(monitor: str, evaluation: dt.datetime) -> str:
    """``<monitor>-retrain-<yyyymmdd-hhmmss>``, shortened with a hash when too long."""
    return names.child_name(monitor, f"retrain-{stamp(evaluation)}", limit=NAME_LIMIT)


def retag(ref: str, tag: str) -> str:
    """``name@sha256:…``, ``name:tag`` or ``name`` re-pointed to ``name:<tag>``."""
    return f"{ref.split('@', 1)[0].split(':', 1)[0]}:{tag}"


def template_name(spec: dm.DriftMonitorSpec, live_trainingjob: str | None) -> str | None:
    """The TrainingJob to clone: ``onDrift.trainingJob``, else the live version's own."""
    if spec.on_drift and spec.on_drift.training_job:
        return spec.on_drift.training_job
    return live_trainingjob


def clone(
    template: dict[str, Any],
    monitor: str,
    namespace: str,
    evaluation: dt.datetime,
    data_tag: str,
    reason: str,
) -> dict[str, Any]:
    """The retraining TrainingJob: the template's spec on ``data_tag``, never suspended,
    labelled and annotated with the monitor, the evaluation and the reason."""
    source = str((template.get("metadata") or {}).get("name") or "")
    spec = copy.deepcopy(template.get("spec") or {})
    for dataset in spec.get("datasets") or []:
        if isinstance(dataset, dict) and isinstance(dataset.get("ref"), str):
            dataset["ref"] = retag(dataset["ref"], data_tag)
    # A template kept suspended (a "recipe" TrainingJob) must still train when cloned.
    spec.pop("suspend", None)
    try:
        tj.TrainingJobSpec.model_validate(spec)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CloneError(
            f"TrainingJob {source} cannot be cloned: spec.{where}: {first['msg']}"
        ) from error
    return {
        "apiVersion": constants.API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": job_name(monitor, evaluation),
            "namespace": namespace,
            "labels": {
                dm.LABEL_DRIFT_MONITOR: names.label_value(monitor),
                constants.LABEL_PART_OF: "toque",
            },
            "annotations": {
                dm.ANNOTATION_TRIGGERED_BY: f"DriftMonitor/{monitor}",
                dm.ANNOTATION_TRIGGER_EVALUATION: rfc3339(evaluation),
                dm.ANNOTATION_TRIGGER_REASON: reason[:REASON_LIMIT],
                dm.ANNOTATION_RETRAINED_FROM: source,
            },
        },
        "spec": spec,
    }
