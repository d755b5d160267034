"""What a new ModelVersion registers in MLflow: its resolved source and the version's tags.
Pure: the handler reads the TrainingJob and the run's tags, these functions decide.

The handler asks ``source_run`` which run's tags it needs (None: no run, or the source is
not ready), reads them, and hands everything to ``resolve``; a resolved source is then
registered with the tags of ``registry_tags``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from toque.api import modelversion as mv
from toque.api import trainingjob as tj
from toque.reconcile import kubestatus

DIGEST_TAG = "toque.model_digest"
LINEAGE_PREFIX = "toque."


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a version's model lives and the digest its files must have."""

    model_uri: str
    run_id: str | None
    digest: str | None
    # Served without a digest check (``toque serve --allow-unverified``): only when no digest
    # is known and ``spec.source.allowUnverified`` is true.
    allow_unverified: bool = False


@dataclasses.dataclass(frozen=True)
class Resolution:
    """Exactly one of: the source, a permanent problem, or a reason to wait."""

    source: Source | None = None
    problem: str | None = None  # the version fails: only a spec change helps
    waiting: str | None = None  # look again: the TrainingJob still runs


def _from_trainingjob(name: str, body: Mapping[str, Any] | None) -> Resolution:
    if body is None:
        return Resolution(waiting=f"TrainingJob {name} does not exist (yet)")
    status = kubestatus.parse(tj.TrainingJobStatus, body.get("status"))
    if status.phase == "Failed":
        return Resolution(problem=f"TrainingJob {name} failed: {status.message or ''}".strip())
    if status.phase != "Succeeded" or not status.model_uri:
        phase = status.phase or "-"
        return Resolution(waiting=f"waiting for TrainingJob {name} to succeed (phase {phase})")
    for c in status.conditions:
        if c.type == "GatePassed" and c.status == "False":
            return Resolution(problem=f"TrainingJob {name} did not pass its evaluation gate")
    return Resolution(Source(status.model_uri, status.mlflow_run_id, status.model_digest))


def _from_spec(source: mv.ModelSource, trainingjob: Mapping[str, Any] | None) -> Resolution:
    if source.training_job:
        return _from_trainingjob(source.training_job, trainingjob)
    if source.run_id:
        return Resolution(
            Source(f"runs:/{source.run_id}/model", source.run_id, source.model_digest)
        )
    return Resolution(Source(str(source.model_uri), None, source.model_digest))


def source_run(source: mv.ModelSource, trainingjob: Mapping[str, Any] | None) -> str | None:
    """The MLflow run whose tags ``resolve`` needs: None when there is none, or when the
    source is not ready (a TrainingJob that runs or failed: no registry call is needed)."""
    resolved = _from_spec(source, trainingjob).source
    return resolved.run_id if resolved else None


def resolve(
    source: mv.ModelSource,
    trainingjob: Mapping[str, Any] | None,
    run_tags: Mapping[str, str] | None,
) -> Resolution:
    """The source to register, from ``spec.source``, the TrainingJob it names (its body, or
    None when it does not exist) and the tags of the run of ``source_run`` (None: not read).

    The digest comes from the spec, else the TrainingJob, else the run's digest tag. A
    source without any digest is refused unless ``spec.source.allowUnverified`` is true:
    the model server would load files nobody can vouch for.
    """
    out = _from_spec(source, trainingjob)
    if out.source is None:
        return out
    digest = out.source.digest or (run_tags or {}).get(DIGEST_TAG) or None
    if digest is None and not source.allow_unverified:
        return Resolution(
            problem=f"no model digest on record for {out.source.model_uri}: set "
            "spec.source.modelDigest, log the model with Toque's trainer (it tags the run "
            f"with {DIGEST_TAG}), or set spec.source.allowUnverified: true to serve it "
            "unverified"
        )
    # A known digest is always checked, whatever allowUnverified says.
    unverified = digest is None
    return Resolution(dataclasses.replace(out.source, digest=digest, allow_unverified=unverified))


def registry_tags(
    namespace: str,
    name: str,
    source: mv.ModelSource,
    resolved: Source,
    run_tags: Mapping[str, str] | None,
) -> dict[str, str]:
    """The tags of the registry version: the run's lineage (``toque.*``: dataset digests,
    code revision, image), so the registry alone answers "what was this trained on", under
    ours (the ModelVersion, its TrainingJob, the digest)."""
    ours = {"toque.modelversion": f"{namespace}/{name}"}
    if source.training_job:
        ours["toque.trainingjob"] = f"{namespace}/{source.training_job}"
    lineage: dict[str, str] = {}
    if resolved.run_id:
        lineage = {k: v for k, v in (run_tags or {}).items() if k.startswith(LINEAGE_PREFIX)}
    tags = {**lineage, **ours}
    if resolved.digest:
        tags[DIGEST_TAG] = resolved.digest
    return tags
