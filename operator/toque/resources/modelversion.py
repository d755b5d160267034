"""Builds the ModelVersion a TrainingJob creates when its evaluation gate passes.

No ownerReference to the TrainingJob on purpose: deleting a finished run (by hand, by a
GitOps prune) must not take a live model down with it. The labels keep the lineage.
"""

from __future__ import annotations

from typing import Any

from toque.api import constants
from toque.api import trainingjob as tj
from toque.resources import names
from toque.resources import trainingjob_job as jobs


def build(owner: jobs.Owner, spec: tj.TrainingJobSpec, run_id: str | None) -> dict[str, Any] | None:
    """The ModelVersion manifest, or None when the spec asks for no promotion."""
    if spec.promote is None or spec.model is None:
        return None
    template = spec.promote
    mv_spec: dict[str, Any] = {
        "model": spec.model.name,
        "source": {"trainingJob": owner.name},
    }
    if template.alias:
        mv_spec["alias"] = template.alias
    if template.serving:
        mv_spec["serving"] = template.serving.to_kube()
    if template.rollout:
        mv_spec["rollout"] = template.rollout.to_kube()
    labels = {
        **(template.labels or {}),
        constants.LABEL_TRAININGJOB: names.label_value(owner.name),
        constants.LABEL_TRAININGJOB_UID: owner.uid,
        constants.LABEL_MANAGED_BY: "toque",
    }
    annotations = dict(template.annotations or {})
    if run_id:
        annotations[f"{constants.GROUP}/mlflow-run-id"] = run_id
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": names.child_name(owner.name, limit=253),
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": mv_spec,
    }
