"""Deterministic names for child objects, so a retry or a restart finds what it made."""

from __future__ import annotations

import hashlib

MAX_LABEL_VALUE = 63


def child_name(parent: str, suffix: str = "", limit: int = MAX_LABEL_VALUE) -> str:
    """``parent[-suffix]`` cut to ``limit`` with a stable hash when it is too long.

    Job names end up in the ``batch.kubernetes.io/job-name`` pod label, so they must fit a
    label value (63 characters), not just a DNS subdomain.
    """
    name = f"{parent}-{suffix}" if suffix else parent
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def label_value(value: str) -> str:
    """A label-safe form of ``value`` (names of parents may be up to 253 characters)."""
    return child_name(value)


def registry_name(namespace: str, model: str) -> str:
    """The MLflow registered model behind ``model`` in ``namespace``: ``<namespace>.<model>``.

    The MLflow registry is global while ModelVersions are namespaced; without the prefix two
    teams using the same model name would move each other's aliases. A namespace has no
    dot, so the first dot always splits the two parts.
    """
    return f"{namespace}.{model}"
