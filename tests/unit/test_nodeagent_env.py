"""The node agent builds a container's environment and command line as the kubelet does."""

from __future__ import annotations

from typing import Any

import pytest

from toque.local import nodeagent_env as envs

POD: dict[str, Any] = {
    "metadata": {
        "name": "trainer-0",
        "namespace": "ml",
        "uid": "1234",
        "labels": {"app": "toque"},
        "annotations": {"toque.dev/run": "r1"},
    },
    "spec": {"nodeName": "local-node-0", "serviceAccountName": "runner"},
}
OBJECTS = {
    ("Secret", "creds"): {"token": "s3cr3t", "user": "ada"},
    ("ConfigMap", "settings"): {"mode": "fast", "LEVEL": "3", "bad=key": "x"},
}


def lookup(kind: str, name: str) -> dict[str, str] | None:
    return OBJECTS.get((kind, name))


def resolve(**container: Any) -> dict[str, str]:
    return envs.container_env(POD, {"name": "main", **container}, lookup, "127.1.0.7", "127.0.0.1")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$(A)", "alpha"),
        ("___$(B)___", "___beta___"),
        ("$(A)-$(A)", "alpha-alpha"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$alpha"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("$", "$"),
        ("$$", "$"),
        ("f000-$$A", "f000-$A"),
        ("", ""),
        ("no refs", "no refs"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, want: str) -> None:
    assert envs.expand(text, {"A": "alpha", "B": "beta"}) == want


def test_env_values_come_from_secrets_configmaps_and_fields() -> None:
    env = resolve(
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "RUN",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['toque.dev/run']"}},
            },
        ]
    )
    assert env == {
        "TOKEN": "s3cr3t",
        "MODE": "fast",
        "IP": "127.1.0.7",
        "HOST": "127.0.0.1",
        "NAME": "trainer-0",
        "NS": "ml",
        "UID": "1234",
        "NODE": "local-node-0",
        "APP": "toque",
        "RUN": "r1",
    }


def test_values_expand_only_variables_defined_before_them() -> None:
    env = resolve(
        env=[
            {"name": "URL", "value": "http://$(HOST_IP):$(PORT)/"},
            {"name": "PORT", "value": "8080"},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL2", "value": "http://$(HOST_IP):$(PORT)/"},
            # Values read from objects are taken literally.
            {"name": "RAW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
        ]
    )
    assert env["URL"] == "http://$(HOST_IP):$(PORT)/"
    assert env["URL2"] == "http://127.1.0.7:8080/"


def test_env_from_adds_every_key_with_a_prefix_and_env_wins() -> None:
    env = resolve(
        envFrom=[
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
        ],
        env=[{"name": "user", "value": "override"}, {"name": "X", "value": "$(CFG_LEVEL)"}],
    )
    # A key that cannot be a variable name is skipped, as the kubelet skips it.
    assert env == {
        "CFG_mode": "fast",
        "CFG_LEVEL": "3",
        "token": "s3cr3t",
        "user": "override",
        "X": "3",
    }


@pytest.mark.parametrize(
    ("container", "message"),
    [
        (
            {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]},
            'secret "nope" not found',
        ),
        (
            {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]},
            "couldn't find key k in Secret ml/creds",
        ),
        (
            {"env": [{"name": "M", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]},
            'configmap "x" not found',
        ),
        ({"envFrom": [{"secretRef": {"name": "gone"}}]}, 'secret "gone" not found'),
        (
            {"env": [{"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]},
            "unsupported fieldRef fieldPath 'spec.hostname'",
        ),
        (
            {"env": [{"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]},
            "resourceFieldRef is not supported",
        ),
    ],
)
def test_missing_or_unsupported_references_are_config_errors(
    container: dict[str, Any], message: str
) -> None:
    with pytest.raises(envs.ConfigError, match=message.replace("(", r"\(")):
        resolve(**container)


def test_optional_references_may_be_missing() -> None:
    env = resolve(
        envFrom=[{"configMapRef": {"name": "absent", "optional": True}}],
        env=[
            {
                "name": "T",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
            {
                "name": "U",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": True}},
            },
        ],
    )
    assert env == {}


def test_command_line_expands_command_and_args() -> None:
    container = {"command": ["python", "-m", "$(MOD)"], "args": ["--bind", "$(IP)", "$$(IP)"]}
    argv = envs.command_line(container, {"MOD": "http.server", "IP": "127.1.0.2"})
    assert argv == ["python", "-m", "http.server", "--bind", "127.1.0.2", "$(IP)"]
    # Without an image there is no entrypoint: args alone are not a command line.
    assert envs.command_line({"args": ["x"]}, {}) == []


def test_paths_and_volume_variables() -> None:
    assert envs.flatten("/workspace/app/") == "workspace_app"
    assert envs.flatten("/../etc") == "etc"
    assert envs.flatten("") == ""
    assert envs.volume_variable("model-cache.v1") == "TOQUE_VOLUME_MODEL_CACHE_V1"
