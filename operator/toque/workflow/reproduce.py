"""The pure parts of ``toque reproduce``: the TrainingJob that trains a registered model
again from its recorded lineage, what of it could not be pinned, and how the metrics of the
two runs compare. No I/O.

``plan`` reads a ModelVersion, the TrainingJob that trained it (when it still exists and still
holds that run) and the run as MLflow keeps it (tags, params, metrics), and pins every input
it can: datasets and the code snapshot by digest, the image by the digest the operator read
off the pod (``status.imageDigest``), params as the run logged them (typed as the spec wrote
them), the seed among them. ``Plan.inputs`` lists each input, pinned or not, and why;
``mark_gone`` marks the versions the data store no longer holds, which block the run.
``compare`` and ``markdown`` make the verdict and the table. Called by
``toque.cli.reproduce_cmd``, which does the reading, the applying and the following.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pydantic

from toque.api import constants, schema
from toque.api import trainingjob as tj
from toque.api import validators as v
from toque.core import redact
from toque.reconcile import kubestatus

ANNOTATION_REPRODUCES = f"{constants.GROUP}/reproduces"
ANNOTATION_REPRODUCES_RUN = f"{constants.GROUP}/reproduces-run"
# Names end up in label values (the Job's), which stop at 63 characters.
MAX_NAME = 63
# Params that, by the usual conventions (scikit-learn, PyTorch Lightning...), fix the seed.
SEED_PARAMS = ("seed", "random_state", "random_seed", "rng_seed")
# The trainer logs params with str() and cuts them here (``toque.trainer.run._flatten``).
PARAM_LIMIT = 6000
# Spec fields that are not inputs of a reproduction: promote would roll the copy out,
# suspend would keep it from running.
_DROPPED = ("promote", "suspend")
_RUNS_URI = re.compile(r"^runs:/([a-f0-9]{32})/")

State = Literal["pinned", "unpinned", "gone"]


class ReproduceError(Exception):
    """Nothing recorded is enough to train the model again; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class Run:
    """An MLflow run as ``runs/get`` answers it: tags, params (strings), latest metrics."""

    run_id: str
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    experiment: str | None = None  # the experiment's name


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a ModelVersion's model was trained: its TrainingJob's name and its run, as far as
    the ModelVersion says."""

    training_job: str | None
    run_id: str | None


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of the run: as the original recorded it, as the reproduction runs it."""

    what: str  # "dataset train", "code", "image", "params", "seed", "env TOKEN"...
    original: str
    reproduction: str
    state: State
    note: str = ""
    # A data-store version (``name@sha256:…``) the run reads, for the store check.
    stored: str | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """The TrainingJob to create, its inputs, and what the original run measured."""

    manifest: dict[str, Any]
    inputs: tuple[Input, ...]
    original_job: str
    run_id: str | None
    original_metrics: dict[str, float]
    # Whether the original's metrics are MLflow's (all of them), not only the status's.
    metrics_from_run: bool = False

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def unpinned(self) -> list[Input]:
        return [i for i in self.inputs if i.state != "pinned"]

    @property
    def blocked(self) -> list[Input]:
        """Inputs the run cannot read: it would fail, so it is not worth starting."""
        return [i for i in self.inputs if i.state == "gone"]

    @property
    def stored(self) -> list[str]:
        """The pinned data-store versions the run reads (datasets, the code snapshot)."""
        return [i.stored for i in self.inputs if i.stored]


# -- where the model came from ----------------------------------------------------------------


def source(modelversion: Mapping[str, Any]) -> Source:
    """The TrainingJob and MLflow run behind a ModelVersion, from its spec and status."""
    spec_source = (modelversion.get("spec") or {}).get("source") or {}
    status = modelversion.get("status") or {}
    run_id = spec_source.get("runId") or status.get("runId")
    uri = str(spec_source.get("modelUri") or "")
    found = _RUNS_URI.match(uri)
    if not run_id and found:
        run_id = found.group(1)
    job = spec_source.get("trainingJob")
    return Source(str(job) if job else None, str(run_id) if run_id else None)


def held_run(job: Mapping[str, Any] | None, run_id: str | None, run: Run | None) -> str | None:
    """Why ``job`` is not the TrainingJob that made run ``run_id`` (one re-created under the
    same name holds another run), or None when it is, or when nothing says otherwise."""
    if job is None:
        return None
    name = (job.get("metadata") or {}).get("name")
    uid = (job.get("metadata") or {}).get("uid")
    recorded_uid = run.tags.get("toque.trainingjob.uid") if run else None
    if recorded_uid and uid and recorded_uid != uid:
        return f"TrainingJob {name} was re-created since run {run_id}"
    held = kubestatus.parse(tj.TrainingJobStatus, job.get("status")).mlflow_run_id
    if run_id and held and held != run_id:
        return f"TrainingJob {name} now holds run {held}, not {run_id}"
    return None


# -- the plan ----------------------------------------------------------------------------------


def repro_name(base: str, now: dt.datetime) -> str:
    """``<base>-repro-<UTC yyyymmddhhmmss>``, at most 63 characters."""
    suffix = f"-repro-{now.astimezone(dt.UTC):%Y%m%d%H%M%S}"
    cleaned = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-") or "run"
    return cleaned[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def plan(
    modelversion: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    run: Run | None,
    now: dt.datetime,
) -> Plan:
    """The reproduction of ``modelversion``: from ``job`` (its TrainingJob, None when gone or
    re-created) and ``run`` (its MLflow run, None when MLflow could not be read).

    ReproduceError when neither is there, or the run alone does not say what to run.
    """
    meta = modelversion.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    src = source(modelversion)
    stale = held_run(job, run.run_id if run else src.run_id, run)
    if stale:
        job = None
    if job is not None:
        spec, inputs = _from_job(job, run)
        base = str((job.get("metadata") or {}).get("name") or src.training_job)
        status = kubestatus.parse(tj.TrainingJobStatus, job.get("status"))
        run_id = run.run_id if run else status.mlflow_run_id or src.run_id
        metrics = {**(status.metrics or {}), **(run.metrics if run else {})}
    elif run is not None:
        spec, inputs = _from_run(
            run,
            (modelversion.get("spec") or {}).get("model"),
            stale or "the TrainingJob is gone",
        )
        base = run.tags.get("toque.trainingjob.name") or src.training_job or "model"
        run_id, metrics = run.run_id, dict(run.metrics)
    else:
        raise ReproduceError(
            f"{stale or 'the TrainingJob is gone'} and the MLflow run of this model could not "
            "be read, so nothing says how it was trained"
        )
    annotations = {ANNOTATION_REPRODUCES: str(meta.get("name") or "")}
    if run_id:
        annotations[ANNOTATION_REPRODUCES_RUN] = run_id
    manifest = {
        "apiVersion": constants.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": repro_name(base, now),
            "namespace": namespace,
            "annotations": annotations,
        },
        "spec": spec,
    }
    problems = validate(manifest)
    if problems:
        raise ReproduceError("the rebuilt TrainingJob is not valid: " + "; ".join(problems))
    return Plan(manifest, tuple(inputs), base, run_id, metrics, metrics_from_run=run is not None)


def validate(manifest: Mapping[str, Any]) -> list[str]:
    """What the TrainingJob schema refuses in ``manifest`` (empty when it is valid)."""
    try:
        tj.TrainingJobSpec.model_validate(manifest.get("spec") or {})
    except pydantic.ValidationError as error:
        return [
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in error.errors()
        ]
    return []


def mark_gone(plan: Plan, gone: Mapping[str, str]) -> Plan:
    """``plan`` with each input whose stored version is in ``gone`` (version -> why) marked
    gone: the store no longer holds it, so the run could only fail."""
    inputs = tuple(
        dataclasses.replace(i, state="gone", note=gone[i.stored])
        if i.stored is not None and i.stored in gone
        else i
        for i in plan.inputs
    )
    return dataclasses.replace(plan, inputs=inputs)


def _dataset_name(ref: str) -> str:
    return ref.split("@")[0].split(":")[0]


def _pinned(ref: str) -> bool:
    return "@" in ref


def _from_job(job: Mapping[str, Any], run: Run | None) -> tuple[dict[str, Any], list[Input]]:
    """The original spec with every input pinned, and the inputs."""
    spec = copy.deepcopy(dict(job.get("spec") or {}))
    status = kubestatus.parse(tj.TrainingJobStatus, job.get("status"))
    tags = run.tags if run else {}
    for key in _DROPPED:
        spec.pop(key, None)
    evaluation = spec.get("evaluation")
    if isinstance(evaluation, dict):
        # The champion is whatever holds the alias today: comparing with it says nothing about
        # the copy, and waiting for the registry would only delay it. The other rules stay, as
        # they make the trainer compute and keep metrics (fairness per group).
        evaluation.pop("mustBeatChampion", None)
        if not evaluation:
            spec.pop("evaluation")
    inputs: list[Input] = []
    inputs += _job_datasets(spec, status, tags, run is not None)
    inputs.append(_job_code(spec, status, tags, run is not None))
    inputs.append(_job_image(spec, status, tags))
    params, param_input = _job_params(spec.get("params"), run)
    if spec.get("params") is not None or params:
        spec["params"] = params
    inputs.append(param_input)
    inputs.append(_seed(params))
    inputs += _env_from_refs(spec.get("env"))
    edited = next(
        (c for c in status.conditions if c.type == "SpecApplied" and c.status == "False"), None
    )
    if edited is not None:
        inputs.append(
            Input(
                "spec",
                "as it ran",
                "as it is now",
                "unpinned",
                "the TrainingJob's spec was edited after the run started, so fields MLflow "
                "does not record (resources, env, placement) are the edited ones",
            )
        )
    return spec, inputs


def _job_datasets(
    spec: dict[str, Any], status: tj.TrainingJobStatus, tags: Mapping[str, str], read: bool
) -> list[Input]:
    digests = {d.ref: d.digest for d in status.datasets or []}
    inputs = []
    entries = spec.get("datasets") or []
    for entry in entries:
        ref = str(entry.get("ref") or "")
        name = _dataset_name(ref)
        alias = entry.get("alias") or name
        what = f"dataset {alias}"
        if _pinned(ref):
            inputs.append(Input(what, ref, ref, "pinned", stored=ref))
            continue
        pinned = f"{name}@{digests[ref]}" if ref in digests else tags.get(f"toque.dataset.{alias}")
        if pinned:
            entry["ref"] = pinned
            inputs.append(Input(what, ref, pinned, "pinned", stored=pinned))
        else:
            where = "" if read else " (the MLflow run, which holds it too, could not be read)"
            inputs.append(
                Input(
                    what,
                    ref,
                    ref,
                    "unpinned",
                    f"no digest recorded{where}: reads whatever {ref} points at now",
                )
            )
    return inputs


def _job_code(
    spec: dict[str, Any], status: tj.TrainingJobStatus, tags: Mapping[str, str], read: bool
) -> Input:
    revision = status.code_revision or tags.get("toque.code_revision") or ""
    shown = f" (revision {revision})" if revision else ""
    code = spec.get("code")
    if not isinstance(code, dict):
        return Input(
            "code",
            f"in the image{shown}",
            "in the image",
            "pinned",
            "the code is part of the image, pinned as far as the image is",
        )
    ref = str(code.get("ref") or "")
    if _pinned(ref):
        return Input("code", ref + shown, ref, "pinned", stored=ref)
    pinned = tags.get("toque.code") or ""
    if pinned:
        code["ref"] = pinned
        return Input("code", ref + shown, pinned, "pinned", stored=pinned)
    why = (
        "the snapshot's digest is recorded only in the MLflow run (tag toque.code), which "
        "could not be read"
        if not read
        else "the run recorded no snapshot digest (tag toque.code)"
    )
    return Input("code", ref + shown, ref, "unpinned", f"{why}: runs whatever {ref} points at now")


def _image_digest(ref: str) -> bool:
    return "@" in ref and schema.matches(v.IMAGE_PATTERN, ref)


def _job_image(
    spec: dict[str, Any], status: tj.TrainingJobStatus, tags: Mapping[str, str]
) -> Input:
    written = str(spec.get("image") or "")
    ran = tags.get("toque.image") or written
    shown = written or (f"{ran} (the operator's default)" if ran else "the operator's default")
    for candidate in (status.image_digest, written, ran):
        if candidate and _image_digest(candidate):
            spec["image"] = candidate
            return Input("image", shown, candidate, "pinned")
    if ran:
        spec["image"] = ran
        return Input(
            "image",
            shown,
            ran,
            "unpinned",
            "by tag only (no digest recorded): the tag may point at other bits now",
        )
    return Input(
        "image",
        shown,
        "the operator's default",
        "unpinned",
        "not recorded: runs the operator's default runtime image of today",
    )


def _env_from_refs(env: Any) -> list[Input]:
    """Env vars read from a Secret, ConfigMap or the pod: their value now, not then."""
    inputs = []
    for item in env or []:
        if isinstance(item, dict) and item.get("valueFrom"):
            kind = next(iter(item["valueFrom"]), "valueFrom")
            inputs.append(
                Input(
                    f"env {item.get('name')}",
                    f"from {kind}",
                    f"from {kind}",
                    "unpinned",
                    "read when the pod starts: today's value",
                )
            )
    return inputs


# -- params ------------------------------------------------------------------------------------


def _flatten(params: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in params.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def logged_form(value: Any) -> str:
    """A param value as the trainer logs it to MLflow."""
    return redact.redact_url(str(value))[:PARAM_LIMIT]


def guess(text: str) -> Any:
    """A logged param read back without its spec: bool, None, int, float, a literal list or
    dict (``str()`` of one), else the string."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    if text[:1] in "[({":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        return list(value) if isinstance(value, tuple) else value
    return text


def typed_like(text: str, original: Any) -> Any:
    """A logged param read back as the type the spec wrote it in; ``guess`` when that fails."""
    try:
        if isinstance(original, bool):
            if text in ("True", "False"):
                return text == "True"
        elif isinstance(original, int):
            return int(text)
        elif isinstance(original, float):
            return float(text)
        elif isinstance(original, str):
            return text
    except ValueError:
        pass
    return guess(text)


def _set(params: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = params
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _job_params(written: Any, run: Run | None) -> tuple[dict[str, Any], Input]:
    """The spec's params, each replaced by what the run logged where the two differ (the spec
    was edited after the run), typed as the spec wrote it."""
    params: dict[str, Any] = copy.deepcopy(dict(written or {}))
    flat = _flatten(params)
    shown = f"{len(flat)} from the spec"
    if run is None:
        note = "as the spec writes them; the MLflow run they were logged to could not be read"
        return params, Input("params", shown, shown, "pinned", note)
    changed = []
    for path, value in flat.items():
        key = ".".join(path)
        logged = run.params.get(key)
        if logged is None or logged == logged_form(value):
            continue
        full = str(value)
        if len(full) > PARAM_LIMIT or redact.redact_url(full) != full:
            continue  # logged cut or redacted: the spec's value is the better record
        _set(params, path, typed_like(logged, value))
        changed.append(f"{key}={logged} (the spec now says {logged_form(value)[:80]})")
    if changed:
        return params, Input(
            "params",
            shown,
            f"{len(flat)}, as the run logged them",
            "pinned",
            "the spec changed after the run; the run's values are used: " + ", ".join(changed),
        )
    return params, Input("params", shown, f"{len(flat)}, the same", "pinned")


def _seed(params: Mapping[str, Any]) -> Input:
    for path, value in _flatten(params).items():
        if path[-1].lower() in SEED_PARAMS:
            return Input("seed", f"{'.'.join(path)}={value}", f"{'.'.join(path)}={value}", "pinned")
    return Input(
        "seed",
        "none",
        "none",
        "unpinned",
        f"no seed among the params ({', '.join(SEED_PARAMS)}): the trainer must fix its "
        "own seeds, or two runs differ",
    )


# -- from the MLflow run alone ------------------------------------------------------------------


def _from_run(run: Run, model: Any, why: str) -> tuple[dict[str, Any], list[Input]]:
    """A TrainingJob spec from what the run's tags and params record, when the TrainingJob
    cannot tell (``why``)."""
    entrypoint = run.tags.get("toque.entrypoint")
    if not entrypoint:
        raise ReproduceError(
            f"{why} and MLflow run {run.run_id} has no toque.entrypoint tag "
            "(it was not trained by the toque trainer), so nothing says what to run"
        )
    spec: dict[str, Any] = {"entrypoint": entrypoint}
    inputs: list[Input] = []
    datasets = []
    for key, pinned in sorted(run.tags.items()):
        if not key.startswith("toque.dataset.") or not pinned:
            continue
        alias = key.removeprefix("toque.dataset.")
        name = _dataset_name(pinned)
        datasets.append({"ref": pinned, **({"alias": alias} if alias != name else {})})
        inputs.append(Input(f"dataset {alias}", pinned, pinned, "pinned", stored=pinned))
    if datasets:
        spec["datasets"] = datasets
    revision = run.tags.get("toque.code_revision") or ""
    shown = f" (revision {revision})" if revision else ""
    code = run.tags.get("toque.code") or ""
    if code:
        spec["code"] = {"ref": code}
        inputs.append(Input("code", code + shown, code, "pinned", stored=code))
    else:
        inputs.append(Input("code", f"in the image{shown}", "in the image", "pinned"))
    image = run.tags.get("toque.image") or ""
    if image:
        spec["image"] = image
    inputs.append(
        Input("image", image, image, "pinned")
        if _image_digest(image)
        else Input(
            "image",
            image or "not recorded",
            image or "the operator's default",
            "unpinned",
            "by tag only (no digest recorded): the tag may point at other bits now"
            if image
            else "not recorded: runs the operator's default runtime image of today",
        )
    )
    params = {key: guess(value) for key, value in sorted(run.params.items())}
    if params:
        spec["params"] = params
    inputs.append(
        Input(
            "params",
            f"{len(params)} logged",
            f"{len(params)} logged, types guessed",
            "unpinned",
            f"{why}: params come from MLflow as strings, their types guessed "
            "(int, float, bool, None, lists), nested keys flat (a.b), and params the code "
            "logged itself passed in as if the spec had them",
        )
    )
    inputs.append(_seed(params))
    if run.experiment:
        spec["experiment"] = run.experiment
    if isinstance(model, str) and model:
        spec["model"] = {"name": model}
    inputs.append(
        Input(
            "spec",
            "the TrainingJob",
            "rebuilt from the run",
            "unpinned",
            f"{why}: its evaluation gate, model flavor (sklearn assumed), "
            "resources, env and placement are not recorded in the run; the defaults are used",
        )
    )
    return spec, inputs


# -- the comparison ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One metric of the two runs (None: the run did not log it)."""

    metric: str
    original: float | None
    reproduced: float | None
    same: bool

    @property
    def difference(self) -> float | None:
        if self.original is None or self.reproduced is None:
            return None
        return self.reproduced - self.original


@dataclasses.dataclass(frozen=True)
class Comparison:
    rows: tuple[Row, ...]
    tolerance: float

    @property
    def identical(self) -> bool:
        """Every metric of either run is in both, within the tolerance (and there is one)."""
        return bool(self.rows) and all(r.same for r in self.rows)

    @property
    def differing(self) -> list[Row]:
        return [r for r in self.rows if not r.same]


def _same(a: float | None, b: float | None, tolerance: float) -> bool:
    if a is None or b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= tolerance


def compare(
    original: Mapping[str, float], reproduced: Mapping[str, float], tolerance: float = 0.0
) -> Comparison:
    """Metric by metric: the same when both runs logged it and they differ by at most
    ``tolerance`` (absolute; 0 asks for the very same number)."""
    rows = tuple(
        Row(
            name,
            original.get(name),
            reproduced.get(name),
            _same(original.get(name), reproduced.get(name), tolerance),
        )
        for name in sorted({*original, *reproduced})
    )
    return Comparison(rows, tolerance)


# -- the report ----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "-"


def _number(value: float | None) -> str:
    return "-" if value is None else repr(value)


def _difference(row: Row) -> str:
    d = row.difference
    if d is None:
        return "missing"
    return "0" if d == 0 else f"{d:+.3g}"


def table(rows: Iterable[Row]) -> list[str]:
    """The metrics table (Markdown)."""
    lines = ["| metric | original | reproduced | difference |", "|---|---:|---:|---:|"]
    for r in rows:
        mark = "" if r.same else " ⚠"
        lines.append(
            f"| {_cell(r.metric)} | {_number(r.original)} | {_number(r.reproduced)} | "
            f"{_difference(r)}{mark} |"
        )
    return lines


def input_lines(inputs: Sequence[Input]) -> list[str]:
    """The inputs table and the list of those that could not be pinned (Markdown)."""
    lines = ["| input | original | reproduction | pinned |", "|---|---|---|---|"]
    marks = {"pinned": "yes", "unpinned": "**no**", "gone": "**gone**"}
    for i in inputs:
        lines.append(
            f"| {_cell(i.what)} | {_cell(i.original)} | {_cell(i.reproduction)} | "
            f"{marks[i.state]} |"
        )
    loose = [i for i in inputs if i.state != "pinned"]
    lines.append("")
    if not loose:
        lines.append("Every input is pinned.")
        return lines
    lines.append("Could not be pinned:")
    lines.append("")
    lines += [f"- **{i.what}** ({i.state}): {i.note}" for i in loose]
    return lines


def markdown(
    plan: Plan,
    comparison: Comparison | None,
    *,
    modelversion: str,
    outcome: str | None = None,
) -> str:
    """The report: verdict, metrics table, inputs and what could not be pinned."""
    lines = [f"## Reproduction of {modelversion}", ""]
    origin = f"TrainingJob `{plan.original_job}`"
    if plan.run_id:
        origin += f", MLflow run `{plan.run_id}`"
    lines.append(f"Original: {origin}. Reproduction: TrainingJob `{plan.name}`.")
    lines.append("")
    if plan.blocked:
        lines.append("**Not run**: the data store no longer holds what the original read.")
    elif comparison is None:
        lines.append(f"**Not compared**: {outcome or 'the reproduction has not finished'}.")
    else:
        tolerance = f" (tolerance {comparison.tolerance:g})" if comparison.tolerance else ""
        if comparison.identical:
            verdict = f"**Identical**: {len(comparison.rows)} metric(s) match{tolerance}."
        elif not comparison.rows:
            verdict = "**Nothing to compare**: neither run logged a metric."
        else:
            verdict = (
                f"**Differs**: {len(comparison.differing)} of {len(comparison.rows)} "
                f"metric(s){tolerance}."
            )
        lines += [verdict, "", *table(comparison.rows)]
    lines += ["", "### Inputs", "", *input_lines(plan.inputs)]
    return "\n".join(lines) + "\n"
