"""The I/O of ``toque report``: read a run, its champion and their data into ``report.Facts``.

Called by ``toque.cli.report_cmd``. The target is a TrainingJob (read from the cluster: its
MLflow run, model, gate verdict and gate rules) or an MLflow run (``run:ID``: the model from
its ``toque.model`` tag or the registry, the verdict from a ``toque.gate`` tag or its
TrainingJob when the cluster can be asked). MLflow is read over its REST API, as the operator
reads it, so the CLI needs no mlflow package: the run and the champion's run
(``runs/get``), the registry's alias and versions, the trainer's report artifacts
(``get-artifact``). Dataset manifests come from the data store; when it cannot be reached
the facts say so and the report goes on. ``upload`` logs the PNGs as artifacts of the run.

Errors: ``TargetNotFoundError`` (no such job or run, or the job has no run yet) is
permanent; ``UnavailableError`` (the API server or MLflow unreachable) is worth a retry.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import requests

from toque.api import constants
from toque.clients import mlflow_artifacts, mlflow_registry
from toque.core import redact
from toque.data import errors as data_errors
from toque.data import manifest
from toque.trainer import report_artifacts as artifacts
from toque.workflow import report

TIMEOUT = 30
MAX_VERSIONS = 50  # the history plot's newest versions
DEFAULT_ALIAS = "champion"
MODEL_TAG = "toque.model"
# A gate verdict recorded on the run: {"passed": bool, "results": [{rule, passed, message}]}.
GATE_TAG = "toque.gate"
REPORT_DIR = "toque/report"


class GatherError(Exception):
    """Base of the report's errors; the message is redacted."""

    def __init__(self, message: str) -> None:
        super().__init__(redact.redact(message))


class TargetNotFoundError(GatherError):
    """The TrainingJob or run does not exist, or the job has no MLflow run yet."""


class UnavailableError(GatherError):
    """The API server or MLflow could not be reached."""


class KubeReader(Protocol):
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""


class Store(Protocol):
    def show(self, ref: str) -> manifest.Manifest:
        """The manifest of a dataset version."""


@dataclasses.dataclass(frozen=True)
class Target:
    kind: str  # "job" or "run"
    name: str

    def __str__(self) -> str:
        return f"run:{self.name}" if self.kind == "run" else f"trainingjob/{self.name}"


def parse_target(text: str) -> Target:
    """``run:ID``, ``tj/NAME`` (or ``trainingjob/NAME``), or a bare TrainingJob ``NAME``."""
    if text.startswith("run:"):
        run_id = text[len("run:") :].strip()
        if not run_id:
            raise ValueError("run: needs an MLflow run id (run:RUN_ID)")
        return Target("run", run_id)
    kind, sep, name = text.partition("/")
    if sep:
        if kind.lower() not in ("tj", "trainingjob", "trainingjobs"):
            raise ValueError(f"{text!r}: expected tj/NAME, NAME or run:RUN_ID")
        text = name
    if not text:
        raise ValueError("the TrainingJob name is empty")
    return Target("job", text)


def public_url(tracking_uri: str) -> str:
    """The tracking URI without ``user:pass@``: links in a comment must not carry them."""
    parts = urllib.parse.urlsplit(tracking_uri.rstrip("/"))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclasses.dataclass
class Mlflow:
    """The REST calls the report makes, on top of the registry client."""

    tracking_uri: str
    runs: dict[str, report.Run] = dataclasses.field(default_factory=dict)

    @property
    def registry(self) -> mlflow_registry.Registry:
        return mlflow_registry.Registry(self.tracking_uri)

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
        try:
            response = requests.get(url, params=params, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise mlflow_registry.RegistryUnavailableError(f"{url}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise mlflow_registry.RegistryUnavailableError(
                f"{url}: HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            data = {}
        if response.status_code >= 300:
            code = str(data.get("error_code") or f"HTTP_{response.status_code}")
            message = str(data.get("message") or response.text[:200])
            if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or response.status_code == 404:
                raise mlflow_registry.RegistryNotFoundError(f"{code}: {message}")
            raise mlflow_registry.RegistryRejectedError(code, message)
        return data

    def run(self, run_id: str) -> report.Run:
        """The run's info, latest metric values, params and tags (cached)."""
        if run_id not in self.runs:
            found = self._get("runs/get", {"run_id": run_id}).get("run") or {}
            self.runs[run_id] = run_from_json(found)
        return self.runs[run_id]

    def models_of_run(self, run_id: str) -> list[str]:
        """Registered models with a version made from the run."""
        found = self._get(
            "model-versions/search", {"filter": f"run_id = '{run_id}'", "max_results": "100"}
        )
        return sorted({str(v["name"]) for v in found.get("model_versions") or []})


def run_from_json(found: dict[str, Any]) -> report.Run:
    """A ``report.Run`` from the ``run`` object of ``runs/get``."""
    info = found.get("info") or {}
    data = found.get("data") or {}
    metrics = {str(m["key"]): float(m["value"]) for m in data.get("metrics") or []}
    params = {str(p["key"]): str(p.get("value", "")) for p in data.get("params") or []}
    tags = {str(t["key"]): str(t.get("value", "")) for t in data.get("tags") or []}
    return report.Run(
        run_id=str(info.get("run_id") or info.get("run_uuid") or ""),
        name=info.get("run_name") or tags.get("mlflow.runName"),
        experiment_id=str(info["experiment_id"]) if info.get("experiment_id") else None,
        artifact_uri=info.get("artifact_uri"),
        metrics=metrics,
        params=params,
        tags=tags,
    )


def gate_from_status(status: dict[str, Any], source: str) -> report.Gate | None:
    """The verdict a TrainingJob's (or a tag's) ``gate`` holds, if any."""
    gate = status.get("gate")
    if not isinstance(gate, dict) or "passed" not in gate:
        return None
    results = tuple(
        report.GateRule(str(r.get("rule", "")), bool(r.get("passed")), str(r.get("message") or ""))
        for r in gate.get("results") or []
        if isinstance(r, dict)
    )
    return report.Gate(bool(gate["passed"]), results, source)


@dataclasses.dataclass(frozen=True)
class Hints:
    """What a TrainingJob's spec says about the model and its gate."""

    model: str | None = None
    alias: str | None = None
    metric: str | None = None
    directions: dict[str, str] = dataclasses.field(default_factory=dict)
    # The job's namespace and the ModelVersion its gate created, if any.
    namespace: str | None = None
    model_version: str | None = None


def hints_from_job(job: dict[str, Any], namespace: str) -> Hints:
    version = (job.get("status") or {}).get("modelVersion")
    return dataclasses.replace(
        hints_from_spec(job.get("spec") or {}),
        namespace=namespace,
        model_version=str(version) if version else None,
    )


def hints_from_spec(spec: dict[str, Any]) -> Hints:
    model = (spec.get("model") or {}).get("name")
    evaluation = spec.get("evaluation") or {}
    champion = evaluation.get("mustBeatChampion") or {}
    thresholds = [t.get("metric") for t in evaluation.get("thresholds") or [] if t.get("metric")]
    metric = champion.get("metric") or (thresholds[0] if thresholds else None)
    directions = {}
    if champion.get("metric"):
        directions[str(champion["metric"])] = str(champion.get("direction") or "maximize")
    return Hints(
        model=str(model) if model else None,
        alias=str(champion["alias"]) if champion.get("alias") else None,
        metric=str(metric) if metric else None,
        directions=directions,
    )


@dataclasses.dataclass(frozen=True)
class Options:
    tracking_uri: str
    champion: str | None = None  # the alias; default: the gate's, else "champion"
    metric: str | None = None
    model: str | None = None
    namespace: str = "default"
    # The MLflow address readers' links use (default: the tracking URI, without credentials).
    link_url: str | None = None


def _job(kube: KubeReader, namespace: str, name: str) -> dict[str, Any] | None:
    from toque.clients import kube as kube_client

    try:
        return kube.get(constants.API_VERSION, "TrainingJob", namespace, name)
    except kube_client.ApiException as error:
        raise UnavailableError(f"trainingjob {namespace}/{name}: {error.reason}") from error
    except OSError as error:
        raise UnavailableError(f"the API server: {error}") from error


def _job_target(
    kube: KubeReader | None, namespace: str, name: str
) -> tuple[str, Hints, report.Gate | None]:
    if kube is None:
        raise UnavailableError("no Kubernetes configuration to read TrainingJobs with")
    job = _job(kube, namespace, name)
    if job is None:
        raise TargetNotFoundError(f"trainingjob {namespace}/{name} not found")
    status = job.get("status") or {}
    run_id = status.get("mlflowRunId")
    if not run_id:
        phase = status.get("phase") or "Pending"
        raise TargetNotFoundError(
            f"trainingjob {namespace}/{name} has no MLflow run yet (phase {phase})"
        )
    gate = gate_from_status(status, f"TrainingJob {namespace}/{name}")
    return str(run_id), hints_from_job(job, namespace), gate


def _gate_of_run(
    run: report.Run, kube: KubeReader | None, notes: list[str]
) -> tuple[report.Gate | None, Hints]:
    """The verdict a run records in a tag, else its TrainingJob's when the cluster answers."""
    if run.tags.get(GATE_TAG):
        try:
            return gate_from_status(
                {"gate": json.loads(run.tags[GATE_TAG])}, "the run's tags"
            ), Hints()
        except (ValueError, AttributeError):
            notes.append(f"the run's {GATE_TAG} tag is not a gate verdict")
    namespace = run.tags.get("toque.trainingjob.namespace")
    name = run.tags.get("toque.trainingjob.name")
    if kube is None or not namespace or not name:
        return None, Hints()
    try:
        job = _job(kube, namespace, name)
    except Exception as error:  # the report goes on without the cluster
        notes.append(f"trainingjob {namespace}/{name} could not be read: {error}")
        return None, Hints()
    if job is None or (job.get("status") or {}).get("mlflowRunId") != run.run_id:
        return None, Hints()
    gate = gate_from_status(job.get("status") or {}, f"TrainingJob {namespace}/{name}")
    return gate, hints_from_job(job, namespace)


def _champion(mlflow: Mlflow, model: str, alias: str) -> report.Champion:
    version = mlflow.registry.alias_version(model, alias)
    if version is None:
        return report.Champion(alias, None)
    run_id = mlflow.registry.version(model, version).get("run_id")
    return report.Champion(alias, version, mlflow.run(str(run_id)) if run_id else None)


def _replaced(kube: KubeReader, namespace: str, name: str) -> tuple[str, str] | None:
    """(registry version, run id) of the ModelVersion that ``name`` replaced, if any."""
    try:
        found = kube.get(constants.API_VERSION, "ModelVersion", namespace, name)
        previous = ((found or {}).get("status") or {}).get("previous")
        if not previous:
            return None
        old = kube.get(constants.API_VERSION, "ModelVersion", namespace, str(previous))
    except Exception:  # without the cluster the report says the run is the champion
        return None
    status = (old or {}).get("status") or {}
    version, run_id = (status.get("registry") or {}).get("version"), status.get("runId")
    return (str(version), str(run_id)) if version and run_id else None


def _history(mlflow: Mlflow, model: str, metric: str | None) -> tuple[report.VersionPoint, ...]:
    points = []
    for version in mlflow.registry.versions(model)[-MAX_VERSIONS:]:
        run_id = version.get("run_id") or None
        value = None
        if run_id and metric:
            try:
                value = mlflow.run(str(run_id)).metrics.get(metric)
            except mlflow_registry.RegistryNotFoundError:  # the run was deleted
                value = None
        points.append(report.VersionPoint(str(version.get("version")), run_id, value))
    return tuple(points)


def _manifests(
    refs: Sequence[str], store: Callable[[], Store] | None
) -> tuple[dict[str, manifest.Manifest], str | None]:
    if not refs:
        return {}, None
    if store is None:
        return {}, "no data store configured: set TOQUE_S3_ENDPOINT and its credentials"
    found: dict[str, manifest.Manifest] = {}
    try:
        opened = store()
        for ref in refs:
            try:
                found[ref] = opened.show(ref)
            except (data_errors.DatasetNotFound, data_errors.CorruptedObject):
                continue  # the report names what it could not show
    except Exception as error:
        return found, redact.redact(" ".join(str(error).split()))[:300]
    return found, None


def _artifacts(
    tracking_uri: str, run_id: str, notes: list[str]
) -> tuple[Any, str | None, tuple[tuple[str, float], ...]]:
    reader = mlflow_artifacts.Artifacts(tracking_uri)
    frame = task = None
    importance: tuple[tuple[str, float], ...] = ()
    try:
        frame, task = artifacts.read_predictions(reader.read(run_id, artifacts.PREDICTIONS_PATH))
    except mlflow_registry.RegistryNotFoundError:
        notes.append(f"the run has no {artifacts.PREDICTIONS_PATH}: no curves or matrix")
    except Exception as error:
        notes.append(f"{artifacts.PREDICTIONS_PATH} could not be read: {error}")
    try:
        found = json.loads(reader.read(run_id, artifacts.IMPORTANCE_PATH))
        importance = tuple(
            (str(f["name"]), float(f["importance"])) for f in found.get("features") or []
        )
    except mlflow_registry.RegistryNotFoundError:
        notes.append(f"the run has no {artifacts.IMPORTANCE_PATH}")
    except Exception as error:
        notes.append(f"{artifacts.IMPORTANCE_PATH} could not be read: {error}")
    return frame, task, importance


def gather(
    target: Target,
    options: Options,
    kube: KubeReader | None = None,
    store: Callable[[], Store] | None = None,
) -> report.Facts:
    """Every fact the report needs about ``target``."""
    mlflow = Mlflow(options.tracking_uri)
    notes: list[str] = []
    try:
        if target.kind == "job":
            run_id, hints, gate = _job_target(kube, options.namespace, target.name)
        else:
            run_id, hints, gate = target.name, Hints(), None
        try:
            run = mlflow.run(run_id)
        except mlflow_registry.RegistryNotFoundError as error:
            raise TargetNotFoundError(f"MLflow has no run {run_id}") from error
        if target.kind == "run":
            gate, hints = _gate_of_run(run, kube, notes)
        model = options.model or hints.model or run.tags.get(MODEL_TAG)
        if model is None and target.kind == "run":
            found = mlflow.models_of_run(run_id)
            model = found[0] if len(found) == 1 else None
        metric = options.metric or hints.metric or report.primary_metric(run.metrics)
        champion = history = None
        if model:
            champion = _champion(mlflow, model, options.champion or hints.alias or DEFAULT_ALIAS)
            history = _history(mlflow, model, metric)
        if champion and champion.run and champion.run.run_id == run_id:
            # Promoted already: what it beat is the version its ModelVersion replaced.
            replaced = None
            if kube is not None and hints.namespace and hints.model_version:
                replaced = _replaced(kube, hints.namespace, hints.model_version)
            if replaced is not None:
                champion = report.Champion(champion.alias, replaced[0], mlflow.run(replaced[1]))
                notes.append(
                    f"this run's model now holds @{champion.alias}; compared with the version "
                    f"it replaced, v{replaced[0]}"
                )
    except mlflow_registry.RegistryUnavailableError as error:
        raise UnavailableError(f"MLflow: {error}") from error
    except mlflow_registry.RegistryError as error:
        raise GatherError(f"MLflow refused: {error}") from error
    theirs = champion.run.datasets() if champion and champion.run else {}
    refs = sorted(set(run.datasets().values()) | set(theirs.values()))
    manifests, store_error = _manifests(refs, store)
    frame, task, importance = _artifacts(options.tracking_uri, run_id, notes)
    base = public_url(options.link_url or options.tracking_uri)
    url = f"{base}/#/experiments/{run.experiment_id}/runs/{run_id}" if run.experiment_id else None
    return report.Facts(
        target=str(target),
        run=run,
        model=model,
        champion=champion,
        gate=gate,
        manifests=manifests,
        store_error=store_error,
        primary_metric=metric,
        directions=hints.directions,
        history=history or (),
        run_url=url,
        notes=tuple(notes),
        predictions=frame,
        task=task,
        importance=importance,
    )


# -- upload --------------------------------------------------------------------------------


def artifact_link(tracking_uri: str, run_id: str, path: str) -> str:
    """The tracking server's URL of one artifact (what the MLflow UI shows images with)."""
    query = urllib.parse.urlencode({"path": path, "run_uuid": run_id})
    return f"{public_url(tracking_uri)}/get-artifact?{query}"


def upload(
    tracking_uri: str,
    run: report.Run,
    files: Sequence[pathlib.Path],
    link_url: str | None = None,
) -> dict[pathlib.Path, str]:
    """Log ``files`` as artifacts of the run under ``toque/report/``; each file's link.

    A run whose artifacts the server proxies (``mlflow-artifacts:``) is written over REST;
    any other store through the mlflow package, with the caller's store credentials.
    """
    uri = run.artifact_uri or ""
    linked = link_url or tracking_uri
    links = {f: artifact_link(linked, run.run_id, f"{REPORT_DIR}/{f.name}") for f in files}
    if uri.startswith("mlflow-artifacts:"):
        root = urllib.parse.urlsplit(uri).path.strip("/")
        base = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{root}/{REPORT_DIR}"
        for f in files:
            url = f"{base}/{urllib.parse.quote(f.name)}"
            try:
                response = requests.put(url, data=f.read_bytes(), timeout=TIMEOUT)
            except requests.RequestException as error:
                raise UnavailableError(f"upload {f.name}: {error}") from error
            if response.status_code >= 300:
                message = f"upload {f.name}: HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code == 429 or response.status_code >= 500:
                    raise UnavailableError(message)
                raise GatherError(message)
        return links
    try:
        import mlflow
    except ImportError as error:
        raise GatherError(
            f"the run's artifacts are in {redact.redact_url(uri)}, which only the mlflow "
            "package can write: pip install mlflow, or attach the plots instead of --upload"
        ) from error
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    for f in files:
        client.log_artifact(run.run_id, str(f), REPORT_DIR)
    return links
