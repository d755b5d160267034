"""``toque reproduce``: the TrainingJob rebuilt from a ModelVersion's lineage, what it cannot
pin, the metric comparison, and the command's exit codes.

A fake stands in for ``toque.clients.kube.Kube`` (our wrapper), and ``read_run`` / ``follow``
are replaced where the command would reach MLflow or wait on the operator.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Any

import pytest
import yaml

from toque.api import constants
from toque.cli import reproduce_cmd, submit_cmd
from toque.core import exitcodes
from toque.workflow import reproduce

NOW = dt.datetime(2026, 11, 27, 12, 30, 5, tzinfo=dt.UTC)
RUN_ID = "a" * 32
OTHER_RUN = "b" * 32
DATA = "sha256:" + "d" * 64
CODE = "sha256:" + "c" * 64
IMAGE = "sha256:" + "e" * 64


def modelversion(**source: Any) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "ModelVersion",
        "metadata": {"name": "bc-v2", "namespace": "team"},
        "spec": {"model": "bc", "source": source or {"trainingJob": "bc-rf"}},
        "status": {"runId": RUN_ID},
    }


def trainingjob(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "bc-rf", "namespace": "team", "uid": "uid-1"},
        "spec": {
            "code": {"ref": "bc-code:latest"},
            "entrypoint": "examples.project.train:train",
            "datasets": [{"ref": "breast-cancer:latest", "alias": "train"}],
            "params": {"n_estimators": 100, "max_depth": 6, "random_state": 42, "lr": 0.1},
            "experiment": "breast-cancer",
            "model": {"name": "bc"},
            "evaluation": {
                "thresholds": [{"metric": "val_accuracy", "op": ">=", "value": 0.9}],
                "mustBeatChampion": {"metric": "val_f1"},
                "fairness": {"groupColumn": "g", "metric": "recall", "maxDisparity": 0.2},
            },
            "promote": {"alias": "champion"},
            "suspend": False,
        },
        "status": {
            "phase": "Succeeded",
            "mlflowRunId": RUN_ID,
            "metrics": {"val_accuracy": 0.95},
            "datasets": [{"ref": "breast-cancer:latest", "digest": DATA}],
            "codeRevision": "git:1234567",
            **status,
        },
    }


def mlflow_run(drop: tuple[str, ...] = (), **tags: str) -> reproduce.Run:
    recorded = {
        "toque.trainingjob.name": "bc-rf",
        "toque.trainingjob.namespace": "team",
        "toque.trainingjob.uid": "uid-1",
        "toque.entrypoint": "examples.project.train:train",
        "toque.image": "ghcr.io/toque-dev/toque:0.1.0",
        "toque.code": f"bc-code@{CODE}",
        "toque.code_revision": "git:1234567",
        "toque.dataset.train": f"breast-cancer@{DATA}",
        **tags,
    }
    return reproduce.Run(
        run_id=RUN_ID,
        tags={k: v for k, v in recorded.items() if k not in drop},
        params={"n_estimators": "100", "max_depth": "6", "random_state": "42", "lr": "0.1"},
        metrics={"val_accuracy": 0.95, "val_f1": 0.96},
        experiment="breast-cancer",
    )


def by_what(plan: reproduce.Plan) -> dict[str, reproduce.Input]:
    return {i.what: i for i in plan.inputs}


# -- where the model came from ---------------------------------------------------------------------


def test_the_source_is_read_from_the_trainingjob_the_run_id_or_a_runs_uri() -> None:
    assert reproduce.source(modelversion()) == reproduce.Source("bc-rf", RUN_ID)
    by_run = modelversion(runId=OTHER_RUN)
    assert reproduce.source(by_run) == reproduce.Source(None, OTHER_RUN)
    by_uri = modelversion(modelUri=f"runs:/{OTHER_RUN}/model", modelDigest=DATA)
    del by_uri["status"]
    assert reproduce.source(by_uri) == reproduce.Source(None, OTHER_RUN)


# -- with the TrainingJob --------------------------------------------------------------------------


def test_every_recorded_input_is_pinned_from_the_trainingjob_and_its_run() -> None:
    job = trainingjob(imageDigest=f"ghcr.io/toque-dev/toque@{IMAGE}")
    plan = reproduce.plan(modelversion(), job, mlflow_run(), NOW)
    spec = plan.manifest["spec"]
    assert spec["datasets"] == [{"ref": f"breast-cancer@{DATA}", "alias": "train"}]
    assert spec["code"] == {"ref": f"bc-code@{CODE}"}
    assert spec["image"] == f"ghcr.io/toque-dev/toque@{IMAGE}"
    assert spec["params"] == {"n_estimators": 100, "max_depth": 6, "random_state": 42, "lr": 0.1}
    assert [type(v) for v in spec["params"].values()] == [int, int, int, float]
    assert plan.unpinned == []
    assert by_what(plan)["seed"].original == "random_state=42"
    assert plan.stored == [f"breast-cancer@{DATA}", f"bc-code@{CODE}"]


def test_the_copy_is_named_annotated_and_never_promoted() -> None:
    plan = reproduce.plan(modelversion(), trainingjob(), mlflow_run(), NOW)
    meta, spec = plan.manifest["metadata"], plan.manifest["spec"]
    assert meta["name"] == "bc-rf-repro-20261127123005" == plan.name
    assert meta["namespace"] == "team"
    assert meta["annotations"] == {
        "toque.dev/reproduces": "bc-v2",
        "toque.dev/reproduces-run": RUN_ID,
    }
    assert "promote" not in spec and "suspend" not in spec
    # The champion rule goes (it compares with today's champion); fairness stays (metrics).
    assert "mustBeatChampion" not in spec["evaluation"]
    assert spec["evaluation"]["fairness"]["groupColumn"] == "g"
    assert reproduce.validate(plan.manifest) == []


def test_the_original_trainingjob_is_left_untouched() -> None:
    job = trainingjob()
    reproduce.plan(modelversion(), job, mlflow_run(), NOW)
    assert job["spec"]["datasets"][0]["ref"] == "breast-cancer:latest"
    assert "promote" in job["spec"]


def test_without_mlflow_the_code_tag_and_the_image_tag_are_listed_as_unpinned() -> None:
    plan = reproduce.plan(modelversion(), trainingjob(), None, NOW)
    inputs = by_what(plan)
    assert plan.manifest["spec"]["code"] == {"ref": "bc-code:latest"}
    assert inputs["code"].state == "unpinned" and "toque.code" in inputs["code"].note
    assert inputs["image"].state == "unpinned" and "default" in inputs["image"].note
    assert "image" not in plan.manifest["spec"]
    # The dataset digest is in the TrainingJob's status, MLflow or not.
    assert inputs["dataset train"].state == "pinned"
    assert plan.original_metrics == {"val_accuracy": 0.95} and not plan.metrics_from_run


def test_an_image_known_by_tag_only_is_kept_but_listed_as_unpinned() -> None:
    plan = reproduce.plan(modelversion(), trainingjob(), mlflow_run(), NOW)
    image = by_what(plan)["image"]
    assert plan.manifest["spec"]["image"] == "ghcr.io/toque-dev/toque:0.1.0"
    assert image.state == "unpinned" and "tag" in image.note
    assert [i.what for i in plan.unpinned] == ["image"]


def test_a_dataset_without_a_recorded_digest_is_unpinned() -> None:
    job = trainingjob(datasets=[])
    plan = reproduce.plan(modelversion(), job, mlflow_run(drop=("toque.dataset.train",)), NOW)
    dataset = by_what(plan)["dataset train"]
    assert dataset.state == "unpinned" and dataset.reproduction == "breast-cancer:latest"
    assert dataset.stored is None


def test_params_edited_after_the_run_are_taken_from_the_run_in_the_specs_types() -> None:
    job = trainingjob()
    job["spec"]["params"]["n_estimators"] = 500
    job["status"]["conditions"] = [
        {
            "type": "SpecApplied",
            "status": "False",
            "reason": "ImmutableAfterStart",
            "message": "x",
            "lastTransitionTime": "2026-11-27T12:00:00Z",
        }
    ]
    plan = reproduce.plan(modelversion(), job, mlflow_run(), NOW)
    assert plan.manifest["spec"]["params"]["n_estimators"] == 100
    assert "n_estimators=100" in by_what(plan)["params"].note
    assert by_what(plan)["spec"].state == "unpinned"


def test_params_the_code_logged_itself_are_not_passed_in() -> None:
    run = mlflow_run()
    run = reproduce.Run(run.run_id, run.tags, {**run.params, "n_features": "30"}, run.metrics)
    plan = reproduce.plan(modelversion(), trainingjob(), run, NOW)
    assert "n_features" not in plan.manifest["spec"]["params"]


def test_no_seed_param_is_listed_as_unpinned() -> None:
    job = trainingjob()
    del job["spec"]["params"]["random_state"]
    plan = reproduce.plan(modelversion(), job, None, NOW)
    assert by_what(plan)["seed"].state == "unpinned"


def test_a_trainingjob_that_now_holds_another_run_is_not_used() -> None:
    job = trainingjob(mlflowRunId=OTHER_RUN)
    job["spec"]["params"]["n_estimators"] = 999
    plan = reproduce.plan(modelversion(), job, mlflow_run(), NOW)
    assert plan.manifest["spec"]["params"]["n_estimators"] == 100  # from the run
    assert f"now holds run {OTHER_RUN}" in by_what(plan)["spec"].note
    recreated = trainingjob()
    recreated["metadata"]["uid"] = "uid-2"
    again = reproduce.plan(modelversion(), recreated, mlflow_run(), NOW)
    assert "re-created" in by_what(again)["spec"].note


# -- from the MLflow run alone ---------------------------------------------------------------------


def test_without_the_trainingjob_the_run_tags_and_params_rebuild_it() -> None:
    plan = reproduce.plan(modelversion(), None, mlflow_run(), NOW)
    spec = plan.manifest["spec"]
    assert spec["entrypoint"] == "examples.project.train:train"
    assert spec["datasets"] == [{"ref": f"breast-cancer@{DATA}", "alias": "train"}]
    assert spec["code"] == {"ref": f"bc-code@{CODE}"}
    assert spec["params"] == {"lr": 0.1, "max_depth": 6, "n_estimators": 100, "random_state": 42}
    assert spec["experiment"] == "breast-cancer" and spec["model"] == {"name": "bc"}
    assert plan.name.startswith("bc-rf-repro-")
    assert {i.what for i in plan.unpinned} == {"image", "params", "spec"}
    assert plan.metrics_from_run and plan.original_metrics["val_f1"] == 0.96


def test_a_dataset_alias_equal_to_its_name_is_left_out() -> None:
    run = mlflow_run(
        drop=("toque.dataset.train",), **{"toque.dataset.breast-cancer": f"breast-cancer@{DATA}"}
    )
    plan = reproduce.plan(modelversion(), None, run, NOW)
    assert plan.manifest["spec"]["datasets"] == [{"ref": f"breast-cancer@{DATA}"}]


def test_a_run_without_an_entrypoint_tag_cannot_be_rebuilt() -> None:
    run = mlflow_run(drop=("toque.entrypoint",))
    with pytest.raises(reproduce.ReproduceError, match=r"toque\.entrypoint"):
        reproduce.plan(modelversion(), None, run, NOW)


def test_nothing_to_rebuild_from_is_an_error() -> None:
    with pytest.raises(reproduce.ReproduceError, match="could not be read"):
        reproduce.plan(modelversion(), None, None, NOW)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100", 100),
        ("-3", -3),
        ("0.1", 0.1),
        ("1e-05", 1e-05),
        ("True", True),
        ("False", False),
        ("None", None),
        ("[1, 2]", [1, 2]),
        ("(1, 2)", [1, 2]),
        ("{'a': 1}", {"a": 1}),
        ("gini", "gini"),
        ("[not python", "[not python"),
    ],
)
def test_logged_params_are_read_back_as_the_value_they_were_logged_from(
    text: str, value: Any
) -> None:
    found = reproduce.guess(text)
    assert found == value and type(found) is type(value)


def test_a_logged_param_takes_the_type_the_spec_wrote_it_in() -> None:
    assert reproduce.typed_like("7", 1.5) == 7.0 and isinstance(
        reproduce.typed_like("7", 1.5), float
    )
    assert reproduce.typed_like("7", "s") == "7"
    assert reproduce.typed_like("False", True) is False
    assert reproduce.typed_like("0.5", 3) == 0.5  # not an int after all: guessed


# -- the store, the name ---------------------------------------------------------------------------


def test_a_version_gone_from_the_store_blocks_the_run() -> None:
    plan = reproduce.plan(modelversion(), trainingjob(), mlflow_run(), NOW)
    gone = reproduce.mark_gone(plan, {f"breast-cancer@{DATA}": "deleted"})
    assert [(i.what, i.state, i.note) for i in gone.blocked] == [
        ("dataset train", "gone", "deleted")
    ]
    assert plan.blocked == []


def test_a_long_name_is_cut_to_a_label_value() -> None:
    name = reproduce.repro_name("x" * 80, NOW)
    assert len(name) == 63 and name.endswith("-repro-20261127123005")
    assert reproduce.repro_name("My_Job", NOW) == "my-job-repro-20261127123005"


# -- the comparison --------------------------------------------------------------------------------


def test_identical_metrics_within_the_tolerance() -> None:
    assert reproduce.compare({"a": 0.9, "b": 1.0}, {"a": 0.9, "b": 1.0}).identical
    assert not reproduce.compare({"a": 0.9}, {"a": 0.9000001}).identical
    assert reproduce.compare({"a": 0.9}, {"a": 0.9000001}, tolerance=1e-6).identical
    assert reproduce.compare({"a": math.nan}, {"a": math.nan}).identical


def test_a_metric_only_one_run_logged_is_a_difference() -> None:
    comparison = reproduce.compare({"a": 1.0}, {"a": 1.0, "b": 2.0})
    assert not comparison.identical
    assert [(r.metric, r.original, r.reproduced) for r in comparison.differing] == [
        ("b", None, 2.0)
    ]


def test_no_metrics_at_all_is_not_identical() -> None:
    assert not reproduce.compare({}, {}).identical


def test_the_markdown_shows_exact_values_differences_and_unpinned_inputs() -> None:
    plan = reproduce.plan(modelversion(), trainingjob(), mlflow_run(), NOW)
    comparison = reproduce.compare(
        {"val_f1": 0.96, "val_accuracy": 0.95}, {"val_f1": 0.9, "val_accuracy": 0.95}
    )
    text = reproduce.markdown(plan, comparison, modelversion="team/bc-v2")
    assert "**Differs**: 1 of 2 metric(s)" in text
    assert "| val_accuracy | 0.95 | 0.95 | 0 |" in text
    assert "| val_f1 | 0.96 | 0.9 | -0.06 ⚠ |" in text
    image = "ghcr.io/toque-dev/toque:0.1.0"
    assert f"| image | {image} (the operator's default) | {image} | **no** |" in text
    assert "- **image** (unpinned): by tag only" in text
    same = reproduce.markdown(
        plan, reproduce.compare({"a": 1.0}, {"a": 1.0}), modelversion="team/bc-v2"
    )
    assert "**Identical**: 1 metric(s) match." in same


# -- the command -----------------------------------------------------------------------------------


class FakeKube:
    """Objects by (kind, name); records what is created."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.created: list[dict[str, Any]] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert api_version == constants.API_VERSION and namespace == "team"
        return self.objects.get((kind, name))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        assert method == "POST" and path.endswith("/namespaces/team/trainingjobs")
        body = kwargs["body"]
        self.created.append(body)
        return body


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toque")
    reproduce_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    job = trainingjob(imageDigest=f"ghcr.io/toque-dev/toque@{IMAGE}")
    fake = FakeKube({("ModelVersion", "bc-v2"): modelversion(), ("TrainingJob", "bc-rf"): job})
    monkeypatch.setattr(reproduce_cmd, "gone_versions", lambda stored: {})
    return fake


def finish(
    monkeypatch: pytest.MonkeyPatch, fake: FakeKube, code: int, metrics: dict[str, float]
) -> None:
    """The operator's part: the created run ends with ``code`` and ``metrics``."""

    def follow(client: Any, namespace: str, name: str, *args: Any) -> int:
        body = fake.created[-1]
        body["status"] = {"phase": "Succeeded", "metrics": metrics}
        fake.objects[("TrainingJob", name)] = body
        return code

    monkeypatch.setattr(submit_cmd, "follow", follow)


def test_the_command_parses_its_options() -> None:
    args = parse(["reproduce", "bc-v2", "-n", "team", "--tolerance", "0.001", "--no-wait"])
    assert (args.modelversion, args.namespace, args.tolerance, args.wait) == (
        "bc-v2",
        "team",
        0.001,
        False,
    )
    assert args.func is reproduce_cmd.run and args.store_check and not args.dry_run
    with pytest.raises(SystemExit):
        parse(["reproduce", "bc-v2", "--tolerance", "-1"])


def test_identical_metrics_exit_zero_and_print_the_report(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    finish(monkeypatch, cluster, exitcodes.OK, {"val_accuracy": 0.95})
    code = reproduce_cmd.execute(cluster, parse(["reproduce", "bc-v2"]), "team", NOW)
    out = capsys.readouterr().out
    assert code == exitcodes.OK
    assert "**Identical**" in out and "| val_accuracy | 0.95 | 0.95 | 0 |" in out
    created = cluster.created[0]
    assert created["metadata"]["name"] == "bc-rf-repro-20261127123005"
    assert created["spec"]["image"] == f"ghcr.io/toque-dev/toque@{IMAGE}"


def test_differing_metrics_exit_one(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    finish(monkeypatch, cluster, exitcodes.GATE_FAILED, {"val_accuracy": 0.5})
    code = reproduce_cmd.execute(cluster, parse(["reproduce", "bc-v2"]), "team", NOW)
    assert code == exitcodes.FAILED
    assert "**Differs**" in capsys.readouterr().out


def test_a_failed_reproduction_exits_one_and_a_timeout_124(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    finish(monkeypatch, cluster, exitcodes.FAILED, {})
    assert reproduce_cmd.execute(cluster, parse(["reproduce", "bc-v2"]), "team", NOW) == 1
    assert "the reproduction failed" in capsys.readouterr().out
    finish(monkeypatch, cluster, exitcodes.TIMED_OUT, {})
    later = NOW + dt.timedelta(seconds=1)
    assert reproduce_cmd.execute(cluster, parse(["reproduce", "bc-v2"]), "team", later) == 124


def test_dry_run_prints_the_trainingjob_and_creates_nothing(
    cluster: FakeKube, capsys: pytest.CaptureFixture[str]
) -> None:
    code = reproduce_cmd.execute(cluster, parse(["reproduce", "bc-v2", "--dry-run"]), "team", NOW)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert code == 0 and cluster.created == []
    assert printed["kind"] == "TrainingJob" and "promote" not in printed["spec"]


def test_a_missing_modelversion_or_a_gone_dataset_is_permanent(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(reproduce_cmd.ReproduceCommandError) as missing:
        reproduce_cmd.execute(cluster, parse(["reproduce", "nope"]), "team", NOW)
    assert missing.value.code == exitcodes.PERMANENT
    monkeypatch.setattr(
        reproduce_cmd, "gone_versions", lambda stored: {s: "deleted" for s in stored}
    )
    with pytest.raises(reproduce_cmd.ReproduceCommandError, match="not run") as gone:
        reproduce_cmd.execute(cluster, parse(["reproduce", "bc-v2"]), "team", NOW)
    assert gone.value.code == exitcodes.PERMANENT and cluster.created == []


def test_the_run_is_read_from_mlflow_and_its_metrics_compared_from_mlflow(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    new_run = "f" * 32

    def read_run(uri: str, run_id: str) -> reproduce.Run:
        assert uri == "http://mlflow"
        if run_id == RUN_ID:
            return mlflow_run()
        return reproduce.Run(run_id, metrics={"val_accuracy": 0.95, "val_f1": 0.96})

    monkeypatch.setattr(reproduce_cmd, "read_run", read_run)

    def follow(client: Any, namespace: str, name: str, *args: Any) -> int:
        body = cluster.created[-1]
        body["status"] = {"phase": "Succeeded", "mlflowRunId": new_run, "metrics": {}}
        cluster.objects[("TrainingJob", name)] = body
        return exitcodes.OK

    monkeypatch.setattr(submit_cmd, "follow", follow)
    args = parse(["reproduce", "bc-v2", "--tracking-uri", "http://mlflow"])
    assert reproduce_cmd.execute(cluster, args, "team", NOW) == exitcodes.OK
    out = capsys.readouterr().out
    assert "| val_f1 | 0.96 | 0.96 | 0 |" in out
    assert cluster.created[0]["spec"]["code"] == {"ref": f"bc-code@{CODE}"}


class Answer:
    def __init__(self, status: int, data: dict[str, Any]) -> None:
        self.status_code, self.data = status, data
        self.text = str(data)

    def json(self) -> dict[str, Any]:
        return self.data


def test_read_run_takes_tags_params_metrics_and_the_experiment_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import requests

    answers = {
        "runs/get": {
            "run": {
                "info": {"experiment_id": "7"},
                "data": {
                    "tags": [{"key": "toque.code", "value": f"bc-code@{CODE}"}],
                    "params": [{"key": "n_estimators", "value": "100"}],
                    "metrics": [{"key": "val_accuracy", "value": 0.95, "step": 0}],
                },
            }
        },
        "experiments/get": {"experiment": {"name": "breast-cancer"}},
    }

    def get(url: str, params: dict[str, str], timeout: float) -> Answer:
        assert url.startswith("http://mlflow:5000/api/2.0/mlflow/")
        return Answer(200, answers[url.rsplit("/mlflow/", 1)[1]])

    monkeypatch.setattr(requests, "get", get)
    run = reproduce_cmd.read_run("http://mlflow:5000/", RUN_ID)
    assert run == reproduce.Run(
        RUN_ID,
        tags={"toque.code": f"bc-code@{CODE}"},
        params={"n_estimators": "100"},
        metrics={"val_accuracy": 0.95},
        experiment="breast-cancer",
    )


def test_read_run_is_none_for_a_missing_run_and_raises_when_mlflow_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import requests

    answer = Answer(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})
    monkeypatch.setattr(requests, "get", lambda url, params, timeout: answer)
    assert reproduce_cmd.read_run("http://u:secret@mlflow", RUN_ID) is None
    answer = Answer(503, {"error_code": "TEMPORARILY_UNAVAILABLE"})
    with pytest.raises(reproduce_cmd.MlflowUnavailableError) as error:
        reproduce_cmd.read_run("http://u:secret@mlflow", RUN_ID)
    assert "secret" not in str(error.value)


def test_run_maps_no_configuration_to_2_and_a_refused_create_to_3(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toque.cli import rollout_cmd
    from toque.clients import kube

    def no_config(path: Any) -> Any:
        raise OSError("no kubeconfig")

    monkeypatch.setattr(rollout_cmd, "default_namespace", lambda path: "team")
    monkeypatch.setattr(rollout_cmd, "connect", no_config)
    assert reproduce_cmd.run(parse(["reproduce", "bc-v2"])) == 2

    def refuse(method: str, path: str, **kwargs: Any) -> Any:
        raise kube.ApiException(status=422, reason="Invalid", body='{"message": "bad"}')

    monkeypatch.setattr(cluster, "request", refuse)
    monkeypatch.setattr(rollout_cmd, "connect", lambda path: cluster)
    assert reproduce_cmd.run(parse(["reproduce", "bc-v2"])) == exitcodes.PERMANENT


def test_gone_versions_names_what_the_store_lost_and_skips_an_unreachable_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from toque.data import errors
    from toque.data import store as data_store

    class Store:
        def resolve(self, ref: str) -> None:
            if ref.startswith("lost"):
                raise errors.DatasetNotFound(f"no version {ref}")

    monkeypatch.setattr(data_store.DataStore, "from_env", classmethod(lambda cls: Store()))
    gone = reproduce_cmd.gone_versions([f"lost@{DATA}", f"kept@{DATA}"])
    assert list(gone) == [f"lost@{DATA}"] and "no longer in the data store" in gone[f"lost@{DATA}"]

    class Down:
        def resolve(self, ref: str) -> None:
            raise errors.StoreUnavailable("connection refused")

    monkeypatch.setattr(data_store.DataStore, "from_env", classmethod(lambda cls: Down()))
    assert reproduce_cmd.gone_versions([f"kept@{DATA}"]) == {}
    assert "not checked" in capsys.readouterr().err
