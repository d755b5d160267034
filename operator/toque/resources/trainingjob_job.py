"""Builds the batch/v1 Job that runs a TrainingJob; called by ``reconcile.trainingjob``.

The pod meets the ``restricted`` Pod Security Standard: non-root, no privilege escalation,
all capabilities dropped, RuntimeDefault seccomp. GPUs are requested as requests *and*
limits of the configured extended resource, and a toleration for the usual GPU taint is added
because GPU node pools are tainted so that CPU work stays off them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from toque.api import constants
from toque.api import trainingjob as tj
from toque.core import exitcodes
from toque.resources import names, pods

CONTAINER_NAME = "trainer"
# The trainer runtime exits with this code for errors that a retry cannot fix (missing
# dataset, bad entrypoint); the Job's podFailurePolicy then fails at once instead of retrying.
PERMANENT_FAILURE_EXIT_CODE = exitcodes.PERMANENT
TEMPLATE_HASH_ANNOTATION = f"{constants.GROUP}/template-hash"
# Pod label values are capped at 63 characters; the full owner name rides in an annotation.
OWNER_ANNOTATION = f"{constants.GROUP}/trainingjob-name"


@dataclasses.dataclass(frozen=True)
class Owner:
    """Identity of the TrainingJob the Job belongs to."""

    name: str
    namespace: str
    uid: str


# The runtime's exit code for an unreachable MinIO or MLflow (after its own retries): the
# Job replaces the pod without counting it against backoffLimit.
TRANSIENT_FAILURE_EXIT_CODE = exitcodes.TRANSIENT


def job_name(owner_name: str) -> str:
    """The Job's name: the TrainingJob's, shortened to fit the job-name pod label."""
    return names.child_name(owner_name)


def labels(owner: Owner, spec: tj.TrainingJobSpec | None = None) -> dict[str, str]:
    """Labels on the Job and its pods; selectors of the operator's watches use them."""
    out = {
        constants.LABEL_TRAININGJOB: names.label_value(owner.name),
        constants.LABEL_TRAININGJOB_UID: owner.uid,
        constants.LABEL_MANAGED_BY: "toque",
        constants.LABEL_PART_OF: "toque",
        constants.LABEL_COMPONENT: "training",
    }
    if spec and spec.pod_metadata and spec.pod_metadata.labels:
        out = {**spec.pod_metadata.labels, **out}
    return out


def _command(spec: tj.TrainingJobSpec) -> tuple[list[str], list[str]]:
    if spec.command:
        return list(spec.command), list(spec.args or [])
    return ["toque", "train"], ["--entrypoint", spec.entrypoint or ""]


def _runtime_env(
    owner: Owner, spec: tj.TrainingJobSpec, config: pods.BuildConfig
) -> list[dict[str, Any]]:
    """What the trainer runtime needs to know about the run, as env vars."""
    run = {
        "code": spec.code.to_kube() if spec.code else None,
        "datasets": [d.to_kube() for d in spec.datasets or []],
        "params": spec.params or {},
        "experiment": spec.experiment,
        "model": spec.model.to_kube() if spec.model else None,
        "evaluation": spec.evaluation.to_kube() if spec.evaluation else None,
    }
    env: list[dict[str, Any]] = [
        {"name": "TOQUE_TRAININGJOB_NAMESPACE", "value": owner.namespace},
        {"name": "TOQUE_TRAININGJOB_NAME", "value": owner.name},
        {"name": "TOQUE_TRAININGJOB_UID", "value": owner.uid},
        {"name": "TOQUE_IMAGE", "value": spec.image or config.runtime_image},
        {"name": "TOQUE_RUN_SPEC", "value": json.dumps(run, sort_keys=True)},
    ]
    return pods.with_user_env(env + pods.store_env(config), spec.env)


def pod_template(
    owner: Owner, spec: tj.TrainingJobSpec, config: pods.BuildConfig
) -> dict[str, Any]:
    """The Job's pod template."""
    command, args = _command(spec)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or config.runtime_image,
        "command": command,
        "args": args,
        "env": _runtime_env(owner, spec, config),
        "resources": pods.compute_resources(spec.resources),
        "terminationMessagePath": constants.TERMINATION_MESSAGE_PATH,
        # A crash before the runtime writes its result still leaves the log tail for status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "workingDir": "/workspace",
        "securityContext": pods.container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "workspace", "mountPath": "/workspace"},
        ],
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "automountServiceAccountToken": spec.service_account_name is not None,
        "securityContext": pods.pod_security(),
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "workspace", "emptyDir": {}},
        ],
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    tolerations = pods.tolerations(spec.tolerations, spec.resources)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    annotations = dict(spec.pod_metadata.annotations or {}) if spec.pod_metadata else {}
    annotations[OWNER_ANNOTATION] = owner.name
    metadata: dict[str, Any] = {"labels": labels(owner, spec), "annotations": annotations}
    return {"metadata": metadata, "spec": pod_spec}


def template_hash(template: dict[str, Any]) -> str:
    """Stable hash of a pod template, to tell whether the live Job still matches the spec."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def mutable_fields(spec: tj.TrainingJobSpec) -> dict[str, Any]:
    """Job spec fields Kubernetes lets us change after creation."""
    out: dict[str, Any] = {"suspend": bool(spec.suspend)}
    if spec.active_deadline_seconds is not None:
        out["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        out["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return out


def build_job(owner: Owner, spec: tj.TrainingJobSpec, config: pods.BuildConfig) -> dict[str, Any]:
    """The complete Job manifest, ready for server-side apply."""
    template = pod_template(owner, spec, config)
    job_spec: dict[str, Any] = {
        "backoffLimit": (
            spec.backoff_limit
            if spec.backoff_limit is not None
            else constants.DEFAULT_BACKOFF_LIMIT
        ),
        "completions": 1,
        "parallelism": 1,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [PERMANENT_FAILURE_EXIT_CODE],
                    },
                },
                {
                    "action": "Ignore",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [TRANSIENT_FAILURE_EXIT_CODE],
                    },
                },
                # Preemption and node drains are not the trainer's fault: don't count them.
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": template,
        **mutable_fields(spec),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels(owner),
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash(template)},
            "ownerReferences": [
                {
                    "apiVersion": constants.API_VERSION,
                    "kind": "TrainingJob",
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }
