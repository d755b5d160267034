"""``toque submit``: the pinned TrainingJob it creates, the exit code it reads off the run's
status, the progress lines, and the command end to end against fakes of our Kube wrapper,
the code push and the dataset store (no cluster, no MinIO)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import pathlib
from typing import Any

import pytest
import yaml

from toque.api import constants
from toque.cli import code_cmd, rollout_cmd, submit_cmd
from toque.clients import kube
from toque.core import exitcodes
from toque.data import errors, store
from toque.workflow import project as projects
from toque.workflow import submit

NOW = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CODE_REF = "churn-code@sha256:" + "c" * 64
DATA_REF = "churn-data@sha256:" + "d" * 64
TEMPLATE: dict[str, Any] = {
    "apiVersion": "toque.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "churn", "labels": {"team": "a"}, "resourceVersion": "7", "uid": "x"},
    "spec": {
        "code": {"ref": "churn-code:latest"},
        "entrypoint": "churn.modeling.train:train",
        "datasets": [
            {"ref": "churn-data:latest", "alias": "train"},
            {"ref": "holidays@sha256:" + "e" * 64},
        ],
        "params": {"n_estimators": 100, "max_depth": 6},
        "model": {"name": "churn"},
        "evaluation": {"thresholds": [{"metric": "val_accuracy", "op": ">=", "value": 0.8}]},
        "promote": {"alias": "champion"},
    },
}
PYPROJECT = """\
[tool.toque]
name = "churn"
package = "churn"
namespace = "ml"

[[tool.toque.datasets]]
name = "churn-data"
path = "data/raw"
alias = "train"
"""


def make_project(root: pathlib.Path, template: dict[str, Any] = TEMPLATE) -> pathlib.Path:
    (root / "deploy").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "deploy" / "trainingjob.yaml").write_text(yaml.safe_dump(template))
    return root


@pytest.fixture
def project(tmp_path: pathlib.Path) -> projects.Project:
    return projects.load(make_project(tmp_path / "churn"))


def build(project: projects.Project, **kwargs: Any) -> dict[str, Any]:
    return submit.manifest(project, COMMIT, CODE_REF, {"churn-data": DATA_REF}, {}, NOW, **kwargs)


# -- the manifest -----------------------------------------------------------------------------


def test_the_manifest_pins_the_code_and_the_pushed_dataset_and_keeps_the_others(
    project: projects.Project,
) -> None:
    body = build(project)
    assert body["spec"]["code"] == {"ref": CODE_REF}
    assert body["spec"]["datasets"] == [
        {"ref": DATA_REF, "alias": "train"},
        {"ref": "holidays@sha256:" + "e" * 64},
    ]


def test_the_manifest_adds_a_pushed_dataset_the_template_does_not_read(
    project: projects.Project,
) -> None:
    template = copy.deepcopy(TEMPLATE)
    del template["spec"]["datasets"]
    body = build(project, template=template)
    assert body["spec"]["datasets"] == [{"ref": DATA_REF, "alias": "train"}]


def test_the_manifest_records_revision_and_submitter_and_drops_server_fields(
    project: projects.Project,
) -> None:
    meta = build(project, namespace="ml")["metadata"]
    assert meta["annotations"] == {
        "toque.dev/revision": COMMIT,
        "toque.dev/submitted-by": "toque-submit",
    }
    assert meta["labels"] == {"team": "a"}
    assert meta["namespace"] == "ml"
    assert "resourceVersion" not in meta and "uid" not in meta


def test_the_manifest_name_is_template_name_short_revision_and_utc_time(
    project: projects.Project,
) -> None:
    assert build(project)["metadata"]["name"] == "churn-0123456-20250304-050607"
    assert build(project, name="mine")["metadata"]["name"] == "mine"


def test_a_long_name_is_cut_to_a_dns_label_keeping_revision_and_time() -> None:
    name = submit.run_name("A" * 80 + "_x", COMMIT, NOW)
    assert len(name) == submit.MAX_NAME
    assert name.endswith("-0123456-20250304-050607") and name.startswith("aaaa")


def test_params_override_and_extend_the_templates(project: projects.Project) -> None:
    body = submit.manifest(
        project, COMMIT, CODE_REF, {}, {"max_depth": 9, "lr": 0.1}, NOW, template=TEMPLATE
    )
    assert body["spec"]["params"] == {"n_estimators": 100, "max_depth": 9, "lr": 0.1}
    assert TEMPLATE["spec"]["params"] == {"n_estimators": 100, "max_depth": 6}


def test_the_manifest_reads_the_projects_trainingjob_yaml(project: projects.Project) -> None:
    assert build(project) == build(project, template=TEMPLATE)


def test_a_template_of_another_kind_is_refused(tmp_path: pathlib.Path) -> None:
    other = {**TEMPLATE, "kind": "ModelVersion"}
    loaded = projects.load(make_project(tmp_path / "p", other))
    with pytest.raises(ValueError, match=r"not a toque\.dev/v1alpha1/TrainingJob"):
        submit.read_template(loaded)


def test_param_values_are_read_as_yaml_scalars() -> None:
    assert submit.parse_params(["a=3", "b=0.5", "c=true", "d=rbf", "e=", "f=[1, 2]"]) == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": "rbf",
        "e": "",
        "f": "[1, 2]",
    }


@pytest.mark.parametrize("item", ["noequals", "=3"])
def test_a_param_without_a_key_is_refused(item: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        submit.parse_params([item])


def test_a_valid_manifest_has_no_problems(project: projects.Project) -> None:
    assert submit.validate(build(project)) == []


def test_validation_names_the_fields_in_error(project: projects.Project) -> None:
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["backoffLimit"] = "two"
    problems = submit.validate(build(project, template=template, name="Bad_Name"))
    assert problems[0].startswith("metadata.name: 'Bad_Name' is not a DNS subdomain name")
    assert problems[1].startswith("spec.backoffLimit: ")
    del template["spec"]["backoffLimit"]
    template["spec"]["command"] = ["python"]
    assert submit.validate(build(project, template=template)) == [
        "spec: exactly one of entrypoint or command must be set"
    ]


# -- the verdict ------------------------------------------------------------------------------


def job(status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "churn-1", "namespace": "ml", "uid": "u1", **meta},
        "spec": copy.deepcopy(TEMPLATE["spec"]),
        "status": status or {},
    }


GATE_OK = {"passed": True, "results": [{"rule": "threshold val_accuracy >= 0.8", "passed": True}]}
GATE_BAD = {
    "passed": False,
    "results": [
        {"rule": "threshold val_accuracy >= 0.8", "passed": False, "message": "val_accuracy = 0.5"},
        {"rule": "gap accuracy", "passed": True},
    ],
}
SUCCEEDED = {"phase": "Succeeded", "mlflowRunId": "r1", "metrics": {"val_accuracy": 0.9}}


def test_succeeded_with_the_gate_passed_exits_0_and_names_the_model_version() -> None:
    done, code, message = submit.outcome(
        job({**SUCCEEDED, "gate": GATE_OK, "modelVersion": "churn-1"})
    )
    assert (done, code) == (True, exitcodes.OK)
    assert "gate passed (1 rule)" in message and "churn-1" in message


def test_succeeded_with_the_gate_failed_exits_gate_failed_naming_the_failed_rule() -> None:
    done, code, message = submit.outcome(job({**SUCCEEDED, "gate": GATE_BAD}))
    assert (done, code) == (True, exitcodes.GATE_FAILED)
    assert message == "gate failed: threshold val_accuracy >= 0.8: val_accuracy = 0.5"


def test_failed_exits_failed_with_the_status_message() -> None:
    verdict = submit.outcome(job({"phase": "Failed", "message": "exit code 1: boom"}))
    assert verdict == (True, exitcodes.FAILED, "failed: exit code 1: boom")


@pytest.mark.parametrize("phase", [None, "Pending", "Running", "Suspended"])
def test_a_run_under_way_is_not_done(phase: str | None) -> None:
    done, code, _ = submit.outcome(job({"phase": phase} if phase else {}))
    assert (done, code) == (False, None)


def test_succeeded_while_the_gate_waits_for_the_registry_is_not_done() -> None:
    waiting = {
        "type": "GatePassed",
        "status": "Unknown",
        "reason": "RegistryUnavailable",
        "message": "cannot read the champion",
        "lastTransitionTime": "2025-03-04T05:06:07Z",
    }
    verdict = submit.outcome(job({**SUCCEEDED, "conditions": [waiting]}))
    assert verdict == (False, None, "Succeeded: cannot read the champion")


def test_a_deleted_run_exits_failed() -> None:
    assert submit.outcome(None) == (True, exitcodes.FAILED, "the TrainingJob was deleted")
    deleting = job({"phase": "Running"}, deletionTimestamp="2025-03-04T05:06:07Z")
    assert submit.outcome(deleting)[:2] == (True, exitcodes.FAILED)


def test_succeeded_without_a_training_result_passes_only_without_a_gate() -> None:
    body = job({"phase": "Succeeded"})
    assert submit.outcome(body)[:2] == (True, exitcodes.FAILED)
    del body["spec"]["evaluation"]
    assert submit.outcome(body)[:2] == (True, exitcodes.OK)


# -- progress lines ---------------------------------------------------------------------------


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-03-04T05:06:07Z",
    }


PENDING = {
    "phase": "Pending",
    "message": "waiting for the Job's pod",
    "jobName": "churn-1",
    "conditions": [condition("JobCreated", "True", "Created", "Job churn-1 created")],
}
RUNNING = {
    **PENDING,
    "phase": "Running",
    "message": "training",
    "conditions": [
        condition("JobCreated", "True", "Created", "Job churn-1 created"),
        condition("Running", "True", "PodRunning", "pod churn-1-abc runs"),
    ],
}


def test_the_first_observation_reports_phase_job_and_conditions() -> None:
    assert submit.changes(None, job(PENDING)) == [
        "phase: Pending (waiting for the Job's pod)",
        "job: churn-1",
        "condition JobCreated=True (Created): Job churn-1 created",
    ]


def test_only_what_changed_is_reported() -> None:
    assert submit.changes(job(PENDING), job(RUNNING)) == [
        "phase: Running (training)",
        "condition Running=True (PodRunning): pod churn-1-abc runs",
    ]
    assert submit.changes(job(RUNNING), job(RUNNING)) == []


def test_metrics_gate_rules_and_model_version_are_reported_as_they_arrive() -> None:
    finished = {
        **RUNNING,
        **SUCCEEDED,
        "metrics": {"val_accuracy": 0.5, "train_accuracy": 0.61234},
        "gate": GATE_BAD,
        "modelVersion": "churn-1",
    }
    lines = submit.changes(job(RUNNING), job(finished))
    assert lines[0] == "phase: Succeeded (training)"
    assert lines[1:] == [
        "mlflow run: r1",
        "metric train_accuracy = 0.6123",
        "metric val_accuracy = 0.5",
        "gate: FAILED",
        "  FAIL  threshold val_accuracy >= 0.8 (val_accuracy = 0.5)",
        "  pass  gap accuracy",
        "model version: churn-1",
    ]


def test_a_deleted_run_is_reported_once() -> None:
    assert submit.changes(job(RUNNING), None) == ["the TrainingJob is gone"]
    assert submit.changes(None, None) == []


def pod(name: str, phase: str, **container: Any) -> dict[str, Any]:
    statuses = [{"name": "trainer", "state": container}] if container else []
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def test_pod_lines_name_the_pod_and_its_state_changes() -> None:
    first = [pod("churn-1-abc", "Pending", waiting={"reason": "ContainerCreating"})]
    assert submit.pod_changes([], first) == ["pod churn-1-abc: Pending on node-1"]
    running = [pod("churn-1-abc", "Running", running={})]
    assert submit.pod_changes(first, running) == ["pod churn-1-abc: Running"]
    assert submit.pod_changes(running, running) == []
    crashed = [pod("churn-1-abc", "Failed", terminated={"reason": "Error", "exitCode": 1})]
    assert submit.pod_changes(running, crashed) == ["pod churn-1-abc: Error (exit 1)"]


def test_event_lines_keep_the_latest_in_time_order() -> None:
    found = [
        {
            "lastTimestamp": f"2025-03-04T05:06:0{i}Z",
            "type": "Warning" if i == 2 else "Normal",
            "reason": f"R{i}",
            "involvedObject": {"kind": "Pod", "name": "p"},
            "message": f"m{i}\nmore",
        }
        for i in (3, 1, 2)
    ]
    assert submit.event_lines(found, limit=2) == [
        "2025-03-04T05:06:02Z Warning R2 pod/p: m2 more",
        "2025-03-04T05:06:03Z Normal R3 pod/p: m3 more",
    ]


# -- following and the command, against fakes ------------------------------------------------


class FakeKube:
    """Our ``kube.Kube``: ``gets`` is the TrainingJob's successive bodies (None: gone); the
    last repeats. Records what is POSTed."""

    def __init__(self, gets: list[dict[str, Any] | None], error: Exception | None = None) -> None:
        self.gets = list(gets)
        self.created: list[dict[str, Any]] = []
        self.error = error
        self.events: list[dict[str, Any]] = []

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> Any:
        if self.error is not None:
            raise self.error
        if method == "POST":
            assert path == "/apis/toque.dev/v1alpha1/namespaces/ml/trainingjobs"
            assert query == [("fieldManager", "toque-submit")]
            self.created.append(body)
            return {**body, "metadata": {**body["metadata"], "uid": "u1"}}
        if "/events" in path:
            return {"items": self.events}
        return {"items": []}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        if kind == "Job":
            return {"metadata": {"uid": "job-uid"}}
        body = self.gets.pop(0) if len(self.gets) > 1 else self.gets[0]
        return copy.deepcopy(body)

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        assert label_selector == "toque.dev/trainingjob-uid=u1"
        return [pod("churn-1-abc", "Running", running={})]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def follow(client: FakeKube, timeout: float = 60.0) -> int:
    clock = Clock()
    return submit_cmd.follow(
        client,  # type: ignore[arg-type]
        "ml",
        "churn-1",
        timeout=timeout,
        interval=1.0,
        show=submit_cmd.Display(clock),
        clock=clock,
        sleep=clock.sleep,
    )


def test_following_a_passing_run_prints_its_progress_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    passed = {**RUNNING, **SUCCEEDED, "gate": GATE_OK, "modelVersion": "churn-1"}
    code = follow(FakeKube([job(PENDING), job(RUNNING), job(passed)]))
    err = capsys.readouterr().err
    assert code == exitcodes.OK
    assert "[     0s] phase: Pending" in err and "[     0s] pod churn-1-abc: Running" in err
    assert "[     1s] phase: Running (training)" in err
    assert "[     2s] model version: churn-1" in err
    assert err.rstrip().endswith("trainingjob ml/churn-1 succeeded, gate passed (1 rule); "
                                 "ModelVersion churn-1 created")  # fmt: skip


def test_following_a_failed_run_prints_its_message_and_last_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = FakeKube([job(RUNNING), job({"phase": "Failed", "message": "exit code 1: boom"})])
    client.events = [
        {
            "lastTimestamp": "2025-03-04T05:06:07Z",
            "type": "Warning",
            "reason": "Failed",
            "involvedObject": {"kind": "TrainingJob", "name": "churn-1"},
            "message": "exit code 1: boom",
        }
    ]
    assert follow(client) == exitcodes.FAILED
    err = capsys.readouterr().err
    assert "last events:\n  2025-03-04T05:06:07Z Warning Failed trainingjob/churn-1" in err
    assert "trainingjob ml/churn-1 failed: exit code 1: boom" in err


def test_following_stops_after_the_timeout_and_says_the_run_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert follow(FakeKube([job(RUNNING)]), timeout=5) == exitcodes.TIMED_OUT
    assert "stopped following after 5s; trainingjob ml/churn-1 goes on" in capsys.readouterr().err


def test_following_a_run_deleted_midway_exits_failed() -> None:
    assert follow(FakeKube([job(RUNNING), None])) == exitcodes.FAILED


def test_an_api_server_unreachable_past_the_grace_period_ends_the_follow() -> None:
    client = FakeKube([job(RUNNING)])
    client.get = lambda *a: (_ for _ in ()).throw(ConnectionRefusedError("refused"))  # type: ignore[method-assign]
    with pytest.raises(ConnectionRefusedError):
        follow(client, timeout=600)


@dataclasses.dataclass
class FakeStore:
    """``DataStore``: a push answers ``reused``; records what was pushed and resolved."""

    reused: bool = True
    pushed: list[tuple[pathlib.Path, str, tuple[str, ...]]] = dataclasses.field(
        default_factory=list
    )
    resolved: list[str] = dataclasses.field(default_factory=list)
    error: Exception | None = None

    def push(self, path: pathlib.Path, name: str, tags: tuple[str, ...] = ("latest",)) -> Any:
        if self.error is not None:
            raise self.error
        self.pushed.append((path, name, tags))
        return argparse.Namespace(ref=DATA_REF, reused=self.reused, uploaded_files=2)

    def resolve(self, ref: str) -> store.Resolved:
        self.resolved.append(ref)
        return store.Resolved("churn-data", "sha256:" + "f" * 64, ref)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toque")
    submit_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeKube, FakeStore, list[pathlib.Path]]:
    client = FakeKube([job({**RUNNING, **SUCCEEDED, "gate": GATE_OK})])
    data = FakeStore()
    code_pushes: list[pathlib.Path] = []

    def push_code(
        root: pathlib.Path, name: str, tags: tuple[str, ...] = ("latest",)
    ) -> code_cmd.Pushed:
        assert tags == (), "submit must not move tags unless --tag says so"
        code_pushes.append(root)
        result = argparse.Namespace(
            ref=CODE_REF, reused=False, manifest=argparse.Namespace(files=[1])
        )
        return code_cmd.Pushed(COMMIT, result, dirty=False)  # type: ignore[arg-type]

    monkeypatch.setattr(rollout_cmd, "connect", lambda kubeconfig: client)
    monkeypatch.setattr(code_cmd, "push", push_code)
    monkeypatch.setattr(store.DataStore, "from_env", classmethod(lambda cls, **kw: data))
    monkeypatch.setattr(submit_cmd, "display", submit_cmd.Display)
    return client, data, code_pushes


def test_submit_creates_the_pinned_run_prints_its_name_and_exits_with_its_verdict(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, data, code_pushes = fakes
    root = make_project(tmp_path / "churn")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "rows.csv").write_text("a\n1\n")
    args = parse(["submit", str(root), "--param", "max_depth=3", "--interval", "0.01"])
    assert args.func(args) == exitcodes.OK
    out, err = capsys.readouterr()
    (created,) = client.created
    assert out == created["metadata"]["name"] + "\n"
    assert created["metadata"]["namespace"] == "ml"  # the project's
    assert created["spec"]["code"]["ref"] == CODE_REF
    assert created["spec"]["datasets"][0]["ref"] == DATA_REF
    assert created["spec"]["params"]["max_depth"] == 3
    assert code_pushes == [root.resolve()]
    assert data.pushed == [(root.resolve() / "data" / "raw", "churn-data", ())]  # no tag moved
    assert f"dataset churn-data: {DATA_REF} (unchanged)" in err
    assert f"code: {CODE_REF} (new version" in err


def test_submit_pins_the_named_version_of_a_dataset_absent_locally(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
) -> None:
    client, data, _ = fakes
    args = parse(["submit", str(make_project(tmp_path / "churn")), "--no-wait"])
    assert args.func(args) == exitcodes.OK
    assert data.pushed == [] and data.resolved == ["churn-data:latest"]
    assert client.created[0]["spec"]["datasets"][0]["ref"] == "churn-data@sha256:" + "f" * 64


def test_submit_refuses_an_invalid_trainingjob_before_pushing_anything(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _, code_pushes = fakes
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["backoffLimit"] = -1
    args = parse(["submit", str(make_project(tmp_path / "churn", template))])
    assert args.func(args) == exitcodes.PERMANENT
    assert "the TrainingJob is invalid:\n  spec.backoffLimit:" in capsys.readouterr().err
    assert code_pushes == [] and client.created == []


def test_submit_outside_a_project_is_a_permanent_error(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse(["submit", str(tmp_path)])
    assert args.func(args) == exitcodes.PERMANENT
    assert "not a Toque project" in capsys.readouterr().err


def test_submit_without_a_kubeconfig_is_a_permanent_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path / "churn")
    args = parse(["submit", str(root), "--kubeconfig", str(tmp_path / "missing")])
    assert args.func(args) == exitcodes.PERMANENT
    assert "no Kubernetes configuration" in capsys.readouterr().err


def test_an_unreachable_cluster_is_transient_and_nothing_is_pushed(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
) -> None:
    client, _, code_pushes = fakes
    client.error = kube.ApiException(status=503, reason="Unavailable")
    args = parse(["submit", str(make_project(tmp_path / "churn"))])
    assert args.func(args) == exitcodes.TRANSIENT
    assert code_pushes == []


def test_an_unreachable_store_is_transient(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
) -> None:
    _, data, _ = fakes
    data.error = errors.StoreUnavailable("minio: connection refused")
    root = make_project(tmp_path / "churn")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "rows.csv").write_text("a\n1\n")
    args = parse(["submit", str(root)])
    assert args.func(args) == exitcodes.TRANSIENT


def test_a_run_name_that_exists_is_a_permanent_error(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _, _ = fakes

    def conflict(*args: Any, **kwargs: Any) -> Any:
        raise kube.ApiException(status=409, reason="Conflict")

    monkeypatch.setattr(client, "request", lambda method, *a, **k: (
        conflict() if method == "POST" else {"items": []}
    ))  # fmt: skip
    args = parse(["submit", str(make_project(tmp_path / "churn")), "--name", "taken"])
    assert args.func(args) == exitcodes.PERMANENT
    assert "trainingjob ml/taken exists already" in capsys.readouterr().err


def test_submit_takes_a_data_folder_holding_only_gitkeep_as_absent(
    tmp_path: pathlib.Path,
    fakes: tuple[FakeKube, FakeStore, list[pathlib.Path]],
) -> None:
    _, data, _ = fakes
    root = make_project(tmp_path / "churn")
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "data" / "raw" / ".gitkeep").write_text("")
    args = parse(["submit", str(root), "--no-wait"])
    assert args.func(args) == exitcodes.OK
    assert data.pushed == [] and data.resolved == ["churn-data:latest"]
