"""A container's environment as a kubelet builds it, for the local node agent.

Pure functions called by ``nodeagent`` before it starts a container: ``$(VAR)`` expansion
with Kubernetes' exact rules, ``env`` / ``envFrom`` with Secret and ConfigMap references
(read through a lookup function the agent passes in, so these functions do no I/O),
``fieldRef`` values, and the file-system names the agent uses instead of mount paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# (kind, name) -> the object's decoded data, or None when it does not exist.
Lookup = Callable[[str, str], dict[str, str] | None]

_OPERATOR = "$"
_ITEM = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


class ConfigError(Exception):
    """The container cannot start yet: kubelet's CreateContainerConfigError; retried."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` expansion as in k8s.io/kubernetes third_party/forked/golang/expansion.

    ``$$`` is an escaped ``$``; a reference to an undefined variable, an unclosed ``$(`` and
    a ``$`` before any other character are kept as written.
    """
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == _OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1 :])
            if is_var:
                out.append(env.get(read, f"$({read})"))
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def _read_variable(rest: str) -> tuple[str, bool, int]:
    if rest[0] == _OPERATOR:
        return _OPERATOR, False, 1
    if rest[0] == "(":
        end = rest.find(")", 1)
        if end != -1:
            return rest[1:end], True, end + 1
        return "$(", False, 1
    return _OPERATOR + rest[0], False, 1


def field_value(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    """The value of a ``fieldRef.fieldPath`` the downward API allows in env vars."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    item = _ITEM.match(path)
    if item:
        return str((meta.get(item.group(1)) or {}).get(item.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _source(kind: str, name: str, lookup: Lookup, optional: bool) -> dict[str, str] | None:
    data = lookup(kind, name)
    if data is None and not optional:
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    return data


def _key_ref(
    kind: str, ref: dict[str, Any], lookup: Lookup, namespace: str, var: str
) -> str | None:
    optional = bool(ref.get("optional", False))
    data = _source(kind, ref.get("name", ""), lookup, optional)
    key = ref.get("key", "")
    if data is not None and key in data:
        return data[key]
    if optional:
        return None
    raise ConfigError(
        f"couldn't find key {key} in {kind} {namespace}/{ref.get('name', '')} (env {var})"
    )


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    lookup: Lookup,
    pod_ip: str,
    host_ip: str,
) -> dict[str, str]:
    """The variables the pod spec gives the container: ``envFrom`` first, then ``env``.

    ``value`` is expanded against the variables defined before it, as the kubelet does;
    values from Secrets, ConfigMaps and fields are taken literally.
    """
    namespace = pod.get("metadata", {}).get("namespace", "")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(field)
            if ref is None:
                continue
            data = _source(kind, ref.get("name", ""), lookup, bool(ref.get("optional", False)))
            for key, value in (data or {}).items():
                # The kubelet skips keys that cannot be variable names rather than failing.
                if key and "=" not in key:
                    env[prefix + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        found: str | None
        if "secretKeyRef" in source:
            found = _key_ref("Secret", source["secretKeyRef"], lookup, namespace, name)
        elif "configMapKeyRef" in source:
            found = _key_ref("ConfigMap", source["configMapKeyRef"], lookup, namespace, name)
        elif "fieldRef" in source:
            found = field_value(pod, source["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        else:
            kinds = ", ".join(sorted(source))
            raise ConfigError(f"env {name}: valueFrom {kinds} is not supported by the node agent")
        if found is not None:
            env[name] = found
    return env


def command_line(container: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; empty when there is no command."""
    command = container.get("command") or []
    if not command:
        # Without an image there is no entrypoint for args to be appended to.
        return []
    return [expand(part, env) for part in [*command, *(container.get("args") or [])]]


def flatten(path: str) -> str:
    """A container path as one directory name: ``/work/app`` -> ``work_app``."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    return "_".join(parts)


def volume_variable(volume: str) -> str:
    """``TOQUE_VOLUME_<NAME>``: where an emptyDir volume really is (mountPath is ignored)."""
    return "TOQUE_VOLUME_" + re.sub(r"[^A-Za-z0-9]", "_", volume).upper()
