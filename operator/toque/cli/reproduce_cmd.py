"""``toque reproduce MODELVERSION``: train a registered model again from its recorded lineage
and say whether the metrics come out the same.

Reads the ModelVersion, the TrainingJob that trained it (if it still exists and still holds
that run) and the MLflow run (``--tracking-uri``, default ``$MLFLOW_TRACKING_URI``; without
it only what the TrainingJob recorded is used), asks the data store whether the pinned
dataset and code versions are still there, creates the TrainingJob ``toque.workflow.reproduce``
builds (``<job>-repro-<time>``, annotated with what it reproduces, never promoted), follows it
as ``toque submit`` does (progress on stderr), and prints a Markdown report on stdout: the
metrics side by side, every input and whether it is pinned.

Exit codes: 0 identical metrics (within ``--tolerance``; ``--no-wait`` and ``--dry-run``:
created / planned), 1 the metrics differ or the reproduction failed, 2 usage (no Kubernetes
configuration), 3 ``PERMANENT`` (no such ModelVersion, nothing recorded to rebuild from, a
pinned version gone from the store, the API server refused), 75 ``TRANSIENT`` (the cluster or
MLflow unreachable), 124 ``TIMED_OUT`` (the reproduction goes on). Registered by
``toque.cli.main``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from toque.api import constants
from toque.core import exitcodes

if TYPE_CHECKING:
    from toque.clients import kube as kube_client
    from toque.workflow import reproduce

PROG = "toque reproduce"
EXIT_USAGE = 2
DEFAULT_TIMEOUT = 3600.0
MLFLOW_TIMEOUT = 10


class ReproduceCommandError(Exception):
    """A problem that ends the command; ``code`` is its exit code."""

    def __init__(self, message: str, code: int = exitcodes.PERMANENT) -> None:
        super().__init__(message)
        self.code = code


def register(subs: Any) -> None:
    parser = subs.add_parser(
        "reproduce",
        help="train a ModelVersion's model again from its lineage and compare the metrics",
    )
    parser.add_argument("modelversion", help="the ModelVersion whose training to reproduce")
    parser.add_argument(
        "-n", "--namespace", help="default: the kubeconfig context's namespace, else default"
    )
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="default: $KUBECONFIG")
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or None,
        help="MLflow, for the run's tags, params and metrics (default: $MLFLOW_TRACKING_URI)",
    )
    parser.add_argument(
        "--no-wait", dest="wait", action="store_false", help="exit once the run is created"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the TrainingJob (YAML) and create nothing"
    )
    parser.add_argument(
        "--timeout", type=_positive, default=DEFAULT_TIMEOUT,
        help=f"seconds to follow the run (default {DEFAULT_TIMEOUT:.0f}); the run goes on",
    )  # fmt: skip
    parser.add_argument(
        "--tolerance", type=_non_negative, default=0.0,
        help="largest absolute difference of a metric still counted the same (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--no-store-check", dest="store_check", action="store_false",
        help="do not ask the data store whether the pinned versions still exist",
    )  # fmt: skip
    parser.add_argument("--interval", type=_positive, default=2.0, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import kubernetes
    import urllib3

    from toque.cli import rollout_cmd, submit_cmd
    from toque.clients import kube

    try:
        namespace = args.namespace or rollout_cmd.default_namespace(args.kubeconfig)
        client = rollout_cmd.connect(args.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        _say(f"{PROG}: no Kubernetes configuration: {error}")
        return EXIT_USAGE
    try:
        return execute(client, args, namespace, dt.datetime.now(dt.UTC))
    except (ReproduceCommandError, submit_cmd.SubmitError) as error:
        _say(f"{PROG}: {error}")
        return error.code
    except kube.ApiException as error:
        _say(f"{PROG}: the API server: {submit_cmd.api_message(error)}")
        return exitcodes.TRANSIENT if kube.is_transient(error) else exitcodes.PERMANENT
    except (OSError, urllib3.exceptions.HTTPError) as error:
        _say(f"{PROG}: unreachable: {error}")
        return exitcodes.TRANSIENT


def execute(
    client: kube_client.Kube, args: argparse.Namespace, namespace: str, now: dt.datetime
) -> int:
    """The command with a connected client (``run`` minus the configuration)."""
    import yaml

    from toque.cli import submit_cmd
    from toque.workflow import reproduce

    modelversion = client.get(constants.API_VERSION, "ModelVersion", namespace, args.modelversion)
    if modelversion is None:
        raise ReproduceCommandError(f"modelversion {namespace}/{args.modelversion} not found")
    plan = make_plan(client, modelversion, namespace, args.tracking_uri, now)
    if args.store_check:
        plan = reproduce.mark_gone(plan, gone_versions(plan.stored))
    title = f"modelversion {namespace}/{args.modelversion}"
    if plan.blocked:
        print(reproduce.markdown(plan, None, modelversion=title), end="")
        raise ReproduceCommandError(
            "not run: " + "; ".join(f"{i.what}: {i.note}" for i in plan.blocked)
        )
    if args.dry_run:
        print(yaml.safe_dump(plan.manifest, sort_keys=False), end="")
        _say("\n".join(reproduce.input_lines(plan.inputs)))
        return exitcodes.OK
    created = submit_cmd.create(client, plan.manifest)
    name = created["metadata"]["name"]
    _say(f"trainingjob {namespace}/{name} created, reproducing {title}")
    if not args.wait:
        waiting = "not waited for (--no-wait)"
        print(reproduce.markdown(plan, None, modelversion=title, outcome=waiting), end="")
        return exitcodes.OK
    # A failed gate still trained the model: its metrics are what is compared.
    code = submit_cmd.follow(client, namespace, name, args.timeout, args.interval)
    if code == exitcodes.TIMED_OUT:
        ended = f"the reproduction did not finish within {args.timeout:g}s"
        print(reproduce.markdown(plan, None, modelversion=title, outcome=ended), end="")
        return code
    if code not in (exitcodes.OK, exitcodes.GATE_FAILED):
        ended = "the reproduction failed"
        print(reproduce.markdown(plan, None, modelversion=title, outcome=ended), end="")
        return exitcodes.FAILED
    body = client.get(constants.API_VERSION, "TrainingJob", namespace, name) or {}
    original, reproduced = metrics_of(body, plan, args.tracking_uri)
    comparison = reproduce.compare(original, reproduced, args.tolerance)
    print(reproduce.markdown(plan, comparison, modelversion=title), end="")
    return exitcodes.OK if comparison.identical else exitcodes.FAILED


def make_plan(
    client: kube_client.Kube,
    modelversion: dict[str, Any],
    namespace: str,
    tracking_uri: str | None,
    now: dt.datetime,
) -> reproduce.Plan:
    """Read the TrainingJob and the MLflow run behind ``modelversion`` and build the plan."""
    from toque.workflow import reproduce

    src = reproduce.source(modelversion)
    job = (
        client.get(constants.API_VERSION, "TrainingJob", namespace, src.training_job)
        if src.training_job
        else None
    )
    run_id = src.run_id or ((job or {}).get("status") or {}).get("mlflowRunId")
    run: reproduce.Run | None = None
    unreachable: str | None = None
    if run_id and tracking_uri:
        try:
            run = read_run(tracking_uri, str(run_id))
        except MlflowUnavailableError as error:
            unreachable = str(error)
            _say(f"{PROG}: MLflow: {error}; using what the TrainingJob recorded")
    elif run_id:
        _say(
            f"{PROG}: no --tracking-uri (MLFLOW_TRACKING_URI): using what the TrainingJob recorded"
        )
    if job is None and run is not None:
        named = run.tags.get("toque.trainingjob.name")
        if named and run.tags.get("toque.trainingjob.namespace", namespace) == namespace:
            job = client.get(constants.API_VERSION, "TrainingJob", namespace, named)
    try:
        return reproduce.plan(modelversion, job, run, now)
    except reproduce.ReproduceError as error:
        if unreachable:
            raise ReproduceCommandError(
                f"{error} (MLflow: {unreachable})", exitcodes.TRANSIENT
            ) from None
        raise ReproduceCommandError(str(error)) from None


def gone_versions(stored: list[str]) -> dict[str, str]:
    """The pinned versions the data store no longer holds (version -> why); empty, with a
    note, when the store cannot be asked."""
    from toque.data import errors
    from toque.data import store as data_store

    if not stored:
        return {}
    gone: dict[str, str] = {}
    try:
        store = data_store.DataStore.from_env()
        for ref in stored:
            try:
                store.resolve(ref)
            except errors.DatasetNotFound as error:
                gone[ref] = f"{ref} is no longer in the data store ({' '.join(str(error).split())})"
    except errors.DataError as error:
        _say(f"{PROG}: the data store was not checked: {' '.join(str(error).split())}")
    return gone


def metrics_of(
    body: Mapping[str, Any], plan: reproduce.Plan, tracking_uri: str | None
) -> tuple[dict[str, float], dict[str, float]]:
    """The original's and the reproduction's metrics, read the same way: from MLflow when it
    holds the original's, else from the TrainingJobs' status."""
    from toque.api import trainingjob as tj
    from toque.reconcile import kubestatus

    status = kubestatus.parse(tj.TrainingJobStatus, body.get("status"))
    reproduced = dict(status.metrics or {})
    original = dict(plan.original_metrics)
    if plan.metrics_from_run and tracking_uri and status.mlflow_run_id:
        try:
            found = read_run(tracking_uri, status.mlflow_run_id)
        except MlflowUnavailableError as error:
            found = None
            _say(f"{PROG}: MLflow: {error}; comparing the metrics the TrainingJobs recorded")
        if found is not None:
            return original, {**reproduced, **found.metrics}
    # The status keeps only what fits a termination message: compare those alone.
    return {k: v for k, v in original.items() if k in reproduced}, reproduced


# -- MLflow ------------------------------------------------------------------------------------


class MlflowUnavailableError(Exception):
    """MLflow did not answer, or refused."""


def _mlflow_get(tracking_uri: str, path: str, params: dict[str, str]) -> dict[str, Any] | None:
    """A GET of MLflow's REST API; None when it says the object does not exist."""
    import requests

    from toque.core import redact

    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
    try:
        response = requests.get(url, params=params, timeout=MLFLOW_TIMEOUT)
    except requests.RequestException as error:
        raise MlflowUnavailableError(redact.redact(f"{url}: {error}")) from None
    if response.status_code == 404 or (
        response.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in response.text
    ):
        return None
    if response.status_code >= 300:
        raise MlflowUnavailableError(
            redact.redact(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        )
    data: dict[str, Any] = response.json()
    return data


def read_run(tracking_uri: str, run_id: str) -> reproduce.Run | None:
    """The run's tags, params, metrics and experiment name; None when MLflow has no such run."""
    from toque.workflow import reproduce

    found = _mlflow_get(tracking_uri, "runs/get", {"run_id": run_id})
    if found is None:
        return None
    run = found.get("run") or {}
    data = run.get("data") or {}

    def pairs(key: str) -> dict[str, Any]:
        return {str(i["key"]): i.get("value") for i in data.get(key) or [] if "key" in i}

    experiment = None
    experiment_id = (run.get("info") or {}).get("experiment_id")
    if experiment_id:
        answer = _mlflow_get(tracking_uri, "experiments/get", {"experiment_id": experiment_id})
        experiment = ((answer or {}).get("experiment") or {}).get("name")
    return reproduce.Run(
        run_id=run_id,
        tags={k: str(v) for k, v in pairs("tags").items()},
        params={k: str(v) for k, v in pairs("params").items()},
        metrics={k: float(v) for k, v in pairs("metrics").items() if v is not None},
        experiment=str(experiment) if experiment else None,
    )
