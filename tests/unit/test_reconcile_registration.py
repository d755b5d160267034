"""Registration decisions of a new ModelVersion: which source it registers (or why it waits
or fails), which run's tags the handler must read, and the tags of the registry version."""

from __future__ import annotations

from typing import Any

import pytest

from toque.api import modelversion as mv
from toque.reconcile import registration as reg

DIGEST = "sha256:" + "d" * 64
OTHER_DIGEST = "sha256:" + "e" * 64
RUN = "a" * 32


def source(**fields: Any) -> mv.ModelSource:
    return mv.ModelSource.model_validate(fields)


def trainingjob(phase: str | None, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "train"}, "status": dict(status)}
    if phase is not None:
        body["status"]["phase"] = phase
    return body


def succeeded(**extra: Any) -> dict[str, Any]:
    fields = {
        "modelUri": "models:/m-123",
        "mlflowRunId": RUN,
        "modelDigest": DIGEST,
        "conditions": [
            {
                "type": "GatePassed",
                "status": "True",
                "reason": "GatePassed",
                "lastTransitionTime": "2026-11-27T12:00:00Z",
            }
        ],
    }
    return trainingjob("Succeeded", **{**fields, **extra})


FROM_TJ = source(trainingJob="train")


def test_a_missing_trainingjob_is_waited_for() -> None:
    out = reg.resolve(FROM_TJ, None, None)
    assert out.source is None and out.problem is None
    assert out.waiting == "TrainingJob train does not exist (yet)"
    assert reg.source_run(FROM_TJ, None) is None


@pytest.mark.parametrize("phase", [None, "Pending", "Running"])
def test_a_running_trainingjob_is_waited_for(phase: str | None) -> None:
    out = reg.resolve(FROM_TJ, trainingjob(phase), None)
    assert out.source is None and out.problem is None
    assert out.waiting == f"waiting for TrainingJob train to succeed (phase {phase or '-'})"
    assert reg.source_run(FROM_TJ, trainingjob(phase)) is None  # no registry call yet


def test_a_succeeded_trainingjob_without_a_model_is_still_waited_for() -> None:
    out = reg.resolve(FROM_TJ, trainingjob("Succeeded"), None)
    assert out.waiting and "phase Succeeded" in out.waiting


def test_a_failed_trainingjob_fails_the_version() -> None:
    out = reg.resolve(FROM_TJ, trainingjob("Failed", message="OOMKilled"), None)
    assert out.source is None and out.waiting is None
    assert out.problem == "TrainingJob train failed: OOMKilled"
    assert reg.resolve(FROM_TJ, trainingjob("Failed"), None).problem == "TrainingJob train failed:"
    assert reg.source_run(FROM_TJ, trainingjob("Failed")) is None


def test_a_trainingjob_that_failed_its_gate_fails_the_version() -> None:
    gate_failed = succeeded(
        conditions=[
            {
                "type": "GatePassed",
                "status": "False",
                "reason": "GateFailed",
                "lastTransitionTime": "2026-11-27T12:00:00Z",
            }
        ]
    )
    out = reg.resolve(FROM_TJ, gate_failed, None)
    assert out.problem == "TrainingJob train did not pass its evaluation gate"


def test_a_succeeded_trainingjob_gives_its_model_run_and_digest() -> None:
    body = succeeded()
    assert reg.source_run(FROM_TJ, body) == RUN
    out = reg.resolve(FROM_TJ, body, {})
    assert out.problem is None and out.waiting is None
    assert out.source == reg.Source("models:/m-123", RUN, DIGEST)


def test_a_trainingjob_without_a_digest_falls_back_to_the_runs_digest_tag() -> None:
    body = succeeded(modelDigest=None)
    out = reg.resolve(FROM_TJ, body, {reg.DIGEST_TAG: OTHER_DIGEST})
    assert out.source is not None and out.source.digest == OTHER_DIGEST


def test_old_or_unknown_status_keys_of_the_trainingjob_are_tolerated() -> None:
    body = succeeded(somethingOld=1, attempts="not a number")
    out = reg.resolve(FROM_TJ, body, None)
    assert out.source == reg.Source("models:/m-123", RUN, DIGEST)


def test_a_run_id_takes_its_digest_from_the_runs_tag() -> None:
    by_run = source(runId=RUN)
    assert reg.source_run(by_run, None) == RUN
    out = reg.resolve(by_run, None, {reg.DIGEST_TAG: DIGEST, "toque.code_revision": "git:1"})
    assert out.source == reg.Source(f"runs:/{RUN}/model", RUN, DIGEST)


def test_a_digest_in_the_spec_wins_over_the_runs_tag() -> None:
    pinned = source(runId=RUN, modelDigest=DIGEST)
    out = reg.resolve(pinned, None, {reg.DIGEST_TAG: OTHER_DIGEST})
    assert out.source is not None and out.source.digest == DIGEST


def test_a_run_id_without_a_digest_tag_is_a_permanent_problem() -> None:
    out = reg.resolve(source(runId=RUN), None, {"toque.code_revision": "git:1"})
    assert out.source is None and out.waiting is None
    assert out.problem is not None
    assert out.problem.startswith(f"no model digest on record for runs:/{RUN}/model")
    assert "set spec.source.allowUnverified: true to serve it unverified" in out.problem


def test_a_model_uri_with_a_digest_needs_no_run() -> None:
    by_uri = source(modelUri="s3://models/iris/", modelDigest=DIGEST)
    assert reg.source_run(by_uri, None) is None
    out = reg.resolve(by_uri, None, None)
    assert out.source == reg.Source("s3://models/iris/", None, DIGEST)


def test_a_model_uri_without_a_digest_is_refused_even_past_the_schema() -> None:
    # The API refuses it at apply time; an object admitted before that rule still fails here.
    unchecked = mv.ModelSource.model_construct(model_uri="s3://models/iris/")
    out = reg.resolve(unchecked, None, None)
    assert out.problem is not None and "no model digest on record" in out.problem
    assert reg.Source("s3://x", None, None).allow_unverified is False


def test_allow_unverified_serves_a_source_without_a_digest() -> None:
    lax = source(modelUri="s3://models/iris/", allowUnverified=True)
    out = reg.resolve(lax, None, None)
    assert out.problem is None
    assert out.source == reg.Source("s3://models/iris/", None, None, allow_unverified=True)
    run = reg.resolve(source(runId=RUN, allowUnverified=True), None, {})
    assert run.source == reg.Source(f"runs:/{RUN}/model", RUN, None, allow_unverified=True)
    tj = reg.resolve(source(trainingJob="t", allowUnverified=True), succeeded(modelDigest=None), {})
    assert tj.source is not None and tj.source.allow_unverified and tj.source.digest is None


def test_a_known_digest_is_checked_even_when_unverified_serving_is_allowed() -> None:
    out = reg.resolve(source(runId=RUN, allowUnverified=True), None, {reg.DIGEST_TAG: DIGEST})
    assert out.source == reg.Source(f"runs:/{RUN}/model", RUN, DIGEST, allow_unverified=False)


def test_registry_tags_carry_the_runs_lineage_under_ours() -> None:
    run_tags = {
        "toque.dataset.train": "bc@sha256:" + "1" * 64,
        "toque.code_revision": "git:abc",
        "toque.modelversion": "someone/else",  # ours win
        "mlflow.user": "alice",  # not lineage
    }
    resolved = reg.Source("models:/m-123", RUN, DIGEST)
    tags = reg.registry_tags("ns", "iris-v2", FROM_TJ, resolved, run_tags)
    assert tags == {
        "toque.dataset.train": "bc@sha256:" + "1" * 64,
        "toque.code_revision": "git:abc",
        "toque.modelversion": "ns/iris-v2",
        "toque.trainingjob": "ns/train",
        reg.DIGEST_TAG: DIGEST,
    }


def test_registry_tags_of_a_model_uri_have_no_lineage() -> None:
    by_uri = source(modelUri="s3://models/iris/", modelDigest=DIGEST)
    resolved = reg.Source("s3://models/iris/", None, DIGEST)
    tags = reg.registry_tags("ns", "v1", by_uri, resolved, {"toque.code_revision": "x"})
    assert tags == {"toque.modelversion": "ns/v1", reg.DIGEST_TAG: DIGEST}
