"""Builds the CronJob of a scheduled DriftMonitor; called by ``reconcile.driftmonitor``.

Each run is ``toque drift check`` in the runtime image over the rows the model servers
sampled to the data store (``samples:<namespace>/<model>/<version>``, newer than the window) against
the reference (``runs:/<live run id>`` or ``dataset:<ref>``), with the monitor's rules.
The compact JSON report goes to the termination message, where the operator reads it back.
The pod has the data store's and MLflow's settings as training pods do (credentials only
through the Secret ref), ``spec.checkPod``'s image, resources and scheduling, and meets the
``restricted`` Pod Security Standard.

The CronJob is owned by the monitor (deleting the monitor deletes it and its Jobs); runs
never overlap, and a few finished Jobs are kept for the operator and for ``kubectl logs``.
The exit codes 1 (drifted), 2 (bad input) and 3 (insufficient data) are verdicts or
mistakes a retry cannot change, so they end the Job at once.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from toque.api import constants, schema
from toque.api import driftmonitor as dm
from toque.resources import names, pods

CONTAINER_NAME = "drift"
COMPONENT = "drift-check"
# The CronJob controller appends 11 characters to name its Jobs.
CRONJOB_NAME_LIMIT = 52
HISTORY = 3
STARTING_DEADLINE_SECONDS = 300
ACTIVE_DEADLINE_SECONDS = 3600
BACKOFF_LIMIT = 1
VERDICT_EXIT_CODES = (1, 2, 3)
# The full monitor name (its label value may be shortened with a hash).
MONITOR_ANNOTATION = f"{constants.GROUP}/drift-monitor-name"
RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


@dataclasses.dataclass(frozen=True)
class Owner:
    """The DriftMonitor the CronJob belongs to."""

    name: str
    namespace: str
    uid: str


@dataclasses.dataclass(frozen=True)
class Live:
    """The version to check: its registry version (the samples' prefix) and its run."""

    model: str
    registry_version: str
    run_id: str | None


def cronjob_name(monitor: str) -> str:
    return names.child_name(monitor, "drift", limit=CRONJOB_NAME_LIMIT)


def labels(owner: Owner) -> dict[str, str]:
    return {
        dm.LABEL_DRIFT_MONITOR: names.label_value(owner.name),
        constants.LABEL_MANAGED_BY: "toque",
        constants.LABEL_PART_OF: "toque",
        constants.LABEL_COMPONENT: COMPONENT,
    }


def reference(spec: dm.DriftMonitorSpec, live: Live) -> str | None:
    """The ``--reference`` argument, or None when the live version has no run to read."""
    if spec.reference.dataset is not None:
        return f"dataset:{spec.reference.dataset}"
    return f"runs:/{live.run_id}" if live.run_id else None


def args(spec: dm.DriftMonitorSpec, live: Live, reference_arg: str, namespace: str) -> list[str]:
    return [
        "drift",
        "check",
        "--reference",
        reference_arg,
        "--current",
        # The servers of this namespace's model only: another namespace may serve a model
        # of the same name.
        f"samples:{namespace}/{live.model}/{live.registry_version}",
        "--window",
        # The CLI reads one number and unit; the spec may say 1h30m.
        f"{max(int(schema.duration_seconds(spec.window)), 1)}s",
        "--rules",
        json.dumps(dm.rules_document(spec), sort_keys=True, separators=(",", ":")),
        "--termination-log",
        constants.TERMINATION_MESSAGE_PATH,
        # A drift verdict is the check's result: the Job stays Complete, not Failed.
        "--exit-zero",
    ]


def build(
    owner: Owner,
    spec: dm.DriftMonitorSpec,
    live: Live,
    reference_arg: str,
    config: pods.BuildConfig,
) -> dict[str, Any]:
    """The complete CronJob manifest, ready for server-side apply."""
    pod_spec = spec.check_pod or dm.CheckPod()
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": pod_spec.image or config.runtime_image,
        "command": ["toque"],
        "args": args(spec, live, reference_arg, owner.namespace),
        "env": [{"name": "HOME", "value": "/tmp"}, *pods.store_env(config)],
        "resources": pods.compute_resources(pod_spec.resources)
        if pod_spec.resources
        else RESOURCES,
        "terminationMessagePath": constants.TERMINATION_MESSAGE_PATH,
        # A crash before the report is written still leaves the log tail for status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "workingDir": "/tmp",
        "securityContext": pods.container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    own = labels(owner)
    annotations = {MONITOR_ANNOTATION: owner.name}
    scheduling: dict[str, Any] = {}
    if pod_spec.node_selector:
        scheduling["nodeSelector"] = dict(pod_spec.node_selector)
    tolerations = pods.tolerations(pod_spec.tolerations, pod_spec.resources)
    if tolerations:
        scheduling["tolerations"] = tolerations
    pod = {
        "metadata": {"labels": own, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "automountServiceAccountToken": False,
            "securityContext": pods.pod_security(),
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            **scheduling,
        },
    }
    job_spec = {
        "backoffLimit": BACKOFF_LIMIT,
        "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": list(VERDICT_EXIT_CODES),
                    },
                },
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": pod,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(owner.name),
            "namespace": owner.namespace,
            "labels": own,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": constants.API_VERSION,
                    "kind": "DriftMonitor",
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "schedule": spec.schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": HISTORY,
            "failedJobsHistoryLimit": HISTORY,
            "suspend": False,
            "jobTemplate": {
                "metadata": {"labels": own, "annotations": annotations},
                "spec": job_spec,
            },
        },
    }
