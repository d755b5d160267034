"""``toque promote|abort|rollback|resume``: parsing, the annotation value, the patch it sends.

A fake stands in for ``toque.clients.kube.Kube`` (our wrapper), not for the HTTP client.
"""

from __future__ import annotations

import argparse
import datetime as dt
import pathlib
import re
from typing import Any

import pytest

from toque.api import constants
from toque.cli import rollout_cmd
from toque.clients import kube

VALUE = re.compile(r"^(promote|abort|rollback|resume):\d{8}T\d{6}\.\d{9}Z$")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toque")
    rollout_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


class FakeKube:
    """Records PATCHes; ``get`` answers from a queue of objects (None: it is gone)."""

    def __init__(self, gets: list[dict[str, Any] | None] | None = None, status: int = 0) -> None:
        self.patches: list[tuple[str, Any, str | None]] = []
        self.gets = list(gets or [])
        self.status = status

    def request(self, method: str, path: str, body: Any = None, content_type: Any = None) -> Any:
        assert method == "PATCH"
        if self.status:
            raise kube.ApiException(status=self.status, reason="Nope", body='{"message": "no"}')
        self.patches.append((path, body, content_type))
        return {}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert (api_version, kind) == (constants.API_VERSION, "ModelVersion")
        return self.gets.pop(0)

    def written(self) -> str:
        value: str = self.patches[-1][1]["metadata"]["annotations"][constants.ANNOTATION_ACTION]
        return value


@pytest.mark.parametrize("verb", constants.ACTIONS)
def test_each_verb_parses(verb: str) -> None:
    args = parse([verb, "iris-v3"])
    assert (args.verb, args.name, args.namespace, args.wait) == (verb, "iris-v3", None, False)
    assert args.timeout == rollout_cmd.DEFAULT_TIMEOUT and args.func is rollout_cmd.run


def test_options_parse() -> None:
    args = parse(["abort", "m", "-n", "ml", "--kubeconfig", "/k", "--wait", "--timeout", "9.5"])
    assert (args.namespace, args.kubeconfig, args.wait, args.timeout) == (
        "ml",
        pathlib.Path("/k"),
        True,
        9.5,
    )
    assert parse(["resume", "m", "--namespace", "x"]).namespace == "x"


@pytest.mark.parametrize(
    "argv",
    [["promote"], ["promote", "a", "b"], ["promote", "m", "--timeout", "0"], ["pause", "m"],
     ["promote", "m", "--timeout", "soon"]],
)  # fmt: skip
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(argv)
    assert caught.value.code == rollout_cmd.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_action_value_shape() -> None:
    assert VALUE.match(rollout_cmd.action_value("promote"))
    at = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)
    assert rollout_cmd.action_value("abort", at) == "abort:20260304T050607.890123000Z"
    assert len({rollout_cmd.action_value("resume") for _ in range(50)}) > 1
    with pytest.raises(ValueError, match="unknown action"):
        rollout_cmd.action_value("pause")


def test_request_action_merge_patches_the_annotation() -> None:
    fake = FakeKube()
    value = rollout_cmd.request_action(fake, "ml", "iris-v3", "rollback")  # type: ignore[arg-type]
    assert VALUE.match(value) and value.startswith("rollback:")
    path, body, content_type = fake.patches[0]
    assert path == "/apis/toque.dev/v1alpha1/namespaces/ml/modelversions/iris-v3"
    assert body == {"metadata": {"annotations": {"toque.dev/action": value}}}
    assert content_type == "application/merge-patch+json"
    # The same verb again is a new request: a new value.
    assert rollout_cmd.request_action(fake, "ml", "iris-v3", "rollback") != value  # type: ignore[arg-type]


def test_request_action_on_a_missing_modelversion() -> None:
    with pytest.raises(rollout_cmd.ModelVersionNotFoundError, match="ml/gone"):
        rollout_cmd.request_action(FakeKube(status=404), "ml", "gone", "promote")  # type: ignore[arg-type]


def test_wait_handled_polls_until_last_action_matches() -> None:
    slept: list[float] = []
    fake = FakeKube(
        gets=[
            {"status": {"lastAction": "promote:old"}},
            {"status": {}},
            {"status": {"lastAction": "promote:new", "phase": "Promoted", "message": "ok"}},
        ]
    )
    status = rollout_cmd.wait_handled(
        fake,  # type: ignore[arg-type]
        "ml",
        "m",
        "promote:new",
        timeout=10,
        clock=lambda: 0.0,
        sleep=slept.append,
    )
    assert status["phase"] == "Promoted" and slept == [1.0, 1.0]


def test_wait_handled_times_out_and_notices_deletion() -> None:
    times = iter([0.0, 0.5, 2.0])
    fake = FakeKube(gets=[{"status": {}}, {"status": {"lastAction": "abort:x"}}])
    with pytest.raises(TimeoutError, match="not handled after 1s"):
        rollout_cmd.wait_handled(
            fake,  # type: ignore[arg-type]
            "ml",
            "m",
            "abort:y",
            timeout=1,
            clock=lambda: next(times),
            sleep=lambda _: None,
        )
    with pytest.raises(rollout_cmd.ModelVersionNotFoundError):
        rollout_cmd.wait_handled(FakeKube(gets=[None]), "ml", "m", "abort:y")  # type: ignore[arg-type]


def test_execute_prints_and_exits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeKube()
    assert rollout_cmd.execute(fake, parse(["promote", "m"]), "ml") == 0  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert f"modelversion ml/m: requested promote (toque.dev/action={fake.written()})" in out

    class Handled(FakeKube):
        def get(self, *args: Any) -> Any:
            return {"status": {"lastAction": self.written(), "phase": "Aborted", "message": "by"}}

    assert rollout_cmd.execute(Handled(), parse(["abort", "m", "--wait"]), "ml") == 0  # type: ignore[arg-type]
    assert "phase: Aborted\nmessage: by\n" in capsys.readouterr().out

    missing = rollout_cmd.execute(FakeKube(status=404), parse(["abort", "m"]), "ml")  # type: ignore[arg-type]
    assert missing == rollout_cmd.EXIT_MISSING
    assert "modelversion ml/m not found" in capsys.readouterr().err

    refused = rollout_cmd.execute(FakeKube(status=403), parse(["abort", "m"]), "ml")  # type: ignore[arg-type]
    assert refused == rollout_cmd.EXIT_REFUSED and "ml/m: no" in capsys.readouterr().err
    down = rollout_cmd.execute(FakeKube(status=503), parse(["abort", "m"]), "ml")  # type: ignore[arg-type]
    assert down == rollout_cmd.EXIT_TRANSIENT


def test_default_namespace_from_the_kubeconfig(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = tmp_path / "config"
    config.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: a, context: {cluster: c, user: u, namespace: team-a}}
- {name: b, context: {cluster: c, user: u}}
current-context: a
"""
    )
    assert rollout_cmd.default_namespace(config) == "team-a"
    config.write_text(config.read_text().replace("current-context: a", "current-context: b"))
    assert rollout_cmd.default_namespace(config) == "default"
    assert rollout_cmd.default_namespace(tmp_path / "missing") == "default"
