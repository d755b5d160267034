"""The pure parts of ``toque submit``: the TrainingJob it creates, the verdict it reads off the
run's status, and the progress lines it prints as that status changes.

``manifest`` pins the project's TrainingJob to what was just pushed (the code snapshot, the
dataset versions) and records the git revision; ``outcome`` maps a TrainingJob body to
"done yet, with which exit code"; ``changes`` and ``pod_changes`` turn two successive
observations into the lines a CI log shows. Called by ``toque.cli.submit_cmd``; no I/O here
except ``read_template``, which reads the project's YAML.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pydantic
import yaml

from toque.api import constants
from toque.api import trainingjob as tj
from toque.core import exitcodes
from toque.reconcile import kubestatus
from toque.workflow import project as projects

ANNOTATION_REVISION = f"{constants.GROUP}/revision"
ANNOTATION_SUBMITTED_BY = f"{constants.GROUP}/submitted-by"
SUBMITTED_BY = "toque-submit"
# A run's name ends up in label values (the Job's, the ModelVersion's), which stop at 63.
MAX_NAME = 63
# Condition types the operator sets (``toque.reconcile.trainingjob``), read here by name.
GATE_CONDITION = "GatePassed"
# What the operator's metadata holds that a new object must not carry over from a template.
_SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "finalizers",
    "generateName",
    "selfLink",
)


class Outcome(NamedTuple):
    """Whether the run is over, the exit code it ends ``toque submit`` with (None while it
    runs), and a line saying why."""

    done: bool
    code: int | None
    message: str


# -- the manifest -----------------------------------------------------------------------------


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is read as a YAML scalar (``3`` an int, ``0.1`` a float,
    ``true`` a bool, anything else a string). ValueError names a malformed pair."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        # A value that parses to a mapping or list was meant as text on a command line.
        params[key.strip()] = value if not isinstance(value, dict | list) else text
    return params


def short_revision(revision: str) -> str:
    """The first 7 hex digits of a commit (``git:`` prefix allowed)."""
    return revision.removeprefix("git:")[:7]


def run_name(base: str, revision: str, now: dt.datetime) -> str:
    """``<base>-<short revision>-<UTC yyyymmdd-hhmmss>``, a DNS label of at most 63."""
    suffix = f"-{short_revision(revision)}-{now.astimezone(dt.UTC):%Y%m%d-%H%M%S}"
    cleaned = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-") or "run"
    return cleaned[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def read_template(project: projects.Project) -> dict[str, Any]:
    """The project's TrainingJob YAML (one document). ValueError when it is missing, not
    YAML, or not a TrainingJob."""
    path = project.path(project.trainingjob)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read the TrainingJob {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not YAML: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no TrainingJob (a YAML mapping)")
    if (data.get("apiVersion"), data.get("kind")) != (constants.API_VERSION, "TrainingJob"):
        raise ValueError(
            f"{path} is a {data.get('apiVersion')}/{data.get('kind')}, not a "
            f"{constants.API_VERSION}/TrainingJob"
        )
    return data


def dataset_name(ref: str) -> str:
    """The dataset a reference names (``NAME``, ``NAME:TAG`` or ``NAME@sha256:…``)."""
    return ref.split("@")[0].split(":")[0]


def manifest(
    project: projects.Project,
    revision: str,
    code_ref: str,
    datasets: Mapping[str, str],
    params: Mapping[str, Any],
    now: dt.datetime,
    *,
    name: str | None = None,
    namespace: str | None = None,
    template: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The TrainingJob to create: the project's (``template``, else its YAML) under a fresh
    name, with ``spec.code.ref`` = ``code_ref``, each dataset named in ``datasets`` (dataset
    name -> pinned ``NAME@sha256:…``) pinned, ``params`` over the template's, and the revision
    and submitter recorded as annotations. ``name`` replaces the generated name."""
    body = copy.deepcopy(dict(template) if template is not None else read_template(project))
    meta: dict[str, Any] = dict(body.get("metadata") or {})
    for key in _SERVER_FIELDS:
        meta.pop(key, None)
    base = str(meta.get("name") or project.name)
    meta["name"] = name or run_name(base, revision, now)
    if namespace:
        meta["namespace"] = namespace
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        ANNOTATION_REVISION: revision,
        ANNOTATION_SUBMITTED_BY: SUBMITTED_BY,
    }
    body["metadata"] = meta
    body.pop("status", None)
    spec: dict[str, Any] = dict(body.get("spec") or {})
    spec["code"] = {"ref": code_ref}
    if datasets:
        spec["datasets"] = _pin_datasets(project, list(spec.get("datasets") or []), datasets)
    if params:
        spec["params"] = {**(spec.get("params") or {}), **params}
    body["spec"] = spec
    return body


def _pin_datasets(
    project: projects.Project, entries: list[Any], pinned: Mapping[str, str]
) -> list[Any]:
    """The template's dataset entries with refs pinned; a project dataset the template does
    not read is added under its alias."""
    out = [dict(e) if isinstance(e, Mapping) else e for e in entries]
    seen: set[str] = set()
    for entry in out:
        if isinstance(entry, dict) and isinstance(entry.get("ref"), str):
            found = dataset_name(entry["ref"])
            if found in pinned:
                entry["ref"] = pinned[found]
                seen.add(found)
    aliases = {d.name: d.alias for d in project.datasets}
    for dataset, ref in pinned.items():
        if dataset not in seen:
            alias = aliases.get(dataset)
            out.append({"ref": ref, **({"alias": alias} if alias else {})})
    return out


def validate(body: Mapping[str, Any]) -> list[str]:
    """The problems the TrainingJob schema finds in ``body`` (``spec.x.y: message``), as the
    API server would refuse them; empty when it is valid."""
    problems: list[str] = []
    name = (body.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not re.fullmatch(
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name
    ):
        problems.append(f"metadata.name: {name!r} is not a DNS subdomain name")
    try:
        tj.TrainingJobSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as error:
        for e in error.errors():
            where = ".".join(str(p) for p in ("spec", *e["loc"]))
            problems.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return problems


# -- the verdict ------------------------------------------------------------------------------


def _status(body: Mapping[str, Any] | None) -> tj.TrainingJobStatus:
    return kubestatus.parse(tj.TrainingJobStatus, (body or {}).get("status"))


def _failed_rules(gate: tj.GateStatus) -> str:
    failed = [r for r in gate.results if not r.passed]
    return "; ".join(f"{r.rule}: {r.message}" if r.message else r.rule for r in failed)


def outcome(body: Mapping[str, Any] | None) -> Outcome:
    """Whether the TrainingJob ``body`` (None: it is gone) has ended, and how.

    Succeeded with the gate passed (or no gate) is ``OK``; with it failed ``GATE_FAILED``;
    Failed, deleted, or succeeded without the result the gate needs is ``FAILED``. A run
    that succeeded but whose gate still waits (for the registry) is not done.
    """
    if body is None:
        return Outcome(True, exitcodes.FAILED, "the TrainingJob was deleted")
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Outcome(True, exitcodes.FAILED, "the TrainingJob is being deleted")
    status = _status(body)
    message = status.message or ""
    if status.phase == "Failed":
        return Outcome(True, exitcodes.FAILED, f"failed: {message or 'no message'}")
    if status.phase != "Succeeded":
        return Outcome(False, None, f"{status.phase or 'Pending'}: {message or 'waiting'}")
    if status.gate is not None:
        if not status.gate.passed:
            return Outcome(
                True, exitcodes.GATE_FAILED, f"gate failed: {_failed_rules(status.gate)}"
            )
        rules = len(status.gate.results)
        text = f"gate passed ({rules} rule{'s' if rules != 1 else ''})" if rules else "no gate"
        if status.model_version:
            text += f"; ModelVersion {status.model_version} created"
        return Outcome(True, exitcodes.OK, f"succeeded, {text}")
    if status.mlflow_run_id:
        waiting = next((c for c in status.conditions if c.type == GATE_CONDITION), None)
        why = waiting.message if waiting else "the gate is not evaluated yet"
        return Outcome(False, None, f"Succeeded: {why}")
    spec = body.get("spec") or {}
    if spec.get("evaluation"):
        return Outcome(
            True,
            exitcodes.FAILED,
            "succeeded but recorded no training result, so the gate was not evaluated",
        )
    return Outcome(True, exitcodes.OK, "succeeded (no training result recorded, no gate)")


# -- progress lines ---------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:.4g}"


def gate_lines(gate: tj.GateStatus) -> list[str]:
    """The verdict and one line per rule."""
    lines = [f"gate: {'passed' if gate.passed else 'FAILED'}"]
    for r in gate.results:
        mark = "pass" if r.passed else "FAIL"
        lines.append(f"  {mark}  {r.rule}" + (f" ({r.message})" if r.message else ""))
    return lines


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """What changed between two observations of a TrainingJob, one line each: the phase, the
    Job, attempts, conditions as they flip, the run's metrics, dataset digests, the gate
    verdict per rule, the ModelVersion. ``old`` None: everything is new."""
    if new is None:
        return ["the TrainingJob is gone"] if old is not None else []
    before, after = _status(old), _status(new)
    lines: list[str] = []
    if after.phase != before.phase and after.phase:
        lines.append(f"phase: {after.phase}" + (f" ({after.message})" if after.message else ""))
    elif after.message and after.message != before.message:
        lines.append(f"message: {after.message}")
    if after.job_name and after.job_name != before.job_name:
        lines.append(f"job: {after.job_name}")
    if after.attempts and after.attempts > 1 and after.attempts != before.attempts:
        lines.append(f"attempt {after.attempts}")
    seen = {c.type: (c.status, c.reason, c.message) for c in before.conditions}
    for c in after.conditions:
        if seen.get(c.type) != (c.status, c.reason, c.message):
            text = f"condition {c.type}={c.status} ({c.reason})"
            lines.append(text + (f": {c.message}" if c.message else ""))
    if after.mlflow_run_id and after.mlflow_run_id != before.mlflow_run_id:
        lines.append(f"mlflow run: {after.mlflow_run_id}")
    if after.code_revision and after.code_revision != before.code_revision:
        lines.append(f"code: {after.code_revision}")
    old_digests = {(d.ref, d.digest) for d in before.datasets or []}
    for d in after.datasets or []:
        if (d.ref, d.digest) not in old_digests:
            lines.append(f"dataset {d.ref}: {d.digest}")
    old_metrics = before.metrics or {}
    for key, value in sorted((after.metrics or {}).items()):
        if old_metrics.get(key) != value:
            lines.append(f"metric {key} = {_number(value)}")
    if after.gate is not None and after.gate != before.gate:
        lines.extend(gate_lines(after.gate))
    if after.model_version and after.model_version != before.model_version:
        lines.append(f"model version: {after.model_version}")
    return lines


def _pod_state(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
            return str(waiting["reason"])
        terminated = state.get("terminated") or {}
        if terminated:
            return f"{terminated.get('reason') or 'Terminated'} (exit {terminated.get('exitCode')})"
    return str(status.get("phase") or "Pending")


def pod_changes(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[str]:
    """A line per training pod that appeared or changed state (``pod NAME: Running``, or a
    container's waiting or terminated reason)."""
    before = {(p.get("metadata") or {}).get("name"): _pod_state(p) for p in old}
    lines = []
    for pod in new:
        name = (pod.get("metadata") or {}).get("name")
        state = _pod_state(pod)
        if before.get(name) != state:
            node = (pod.get("spec") or {}).get("nodeName")
            lines.append(
                f"pod {name}: {state}" + (f" on {node}" if node and name not in before else "")
            )
    return lines


def event_lines(events: Sequence[Mapping[str, Any]], limit: int = 10) -> list[str]:
    """The last ``limit`` Events, oldest first: ``time type reason kind/name: message``."""

    def when(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or "")

    lines = []
    for event in sorted(events, key=when)[-limit:]:
        involved = event.get("involvedObject") or {}
        what = f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or '?'}"
        message = " ".join(str(event.get("message") or "").split())
        lines.append(
            f"{when(event) or '-'} {event.get('type') or '-'} {event.get('reason') or '-'} "
            f"{what}: {message}"
        )
    return lines
