"""Runs the Argo CD health checks of ``argocd/resource_customizations`` in a real Lua.

``health(kind, obj)`` is what Argo CD would show for a TrainingJob, ModelVersion or
DriftMonitor: ``tests/unit/test_argocd_health.py`` runs it on every ``health_test.yaml``
case, and the end-to-end tests run it on the objects the operator wrote during a scenario.

The interpreter is Lua 5.1 (``lupa.lua51``), the language of gopher-lua that Argo CD embeds,
and it gets at most what Argo CD gives a health script from ``argocd-cm``: the base, table
and package libraries (Argo CD adds a reduced ``os``, which the checks do not need), no
``string``, ``math``, ``io`` or ``debug`` (nor string methods), a global ``obj`` holding the
resource as JSON, and a bound on the work (Argo CD stops a script after one second). An
invalid status is reported as Argo CD reports it.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import lupa.lua51
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CUSTOMIZATIONS = ROOT / "argocd" / "resource_customizations"
GROUP = "toque.dev"
KINDS = ("TrainingJob", "ModelVersion", "DriftMonitor")
STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
INVALID = "Lua returned an invalid health status"
# Lua VM instructions a script may run; the checks need a few thousand.
MAX_INSTRUCTIONS = 10_000_000

# Libraries Argo CD's gopher-lua VM does not open for a script from argocd-cm. The string
# metatable goes too: without the string library ``s:sub(1)`` fails in Argo CD.
_SANDBOX = """
local limit = ...
debug.sethook(function() error("the health script ran too long") end, "", limit)
debug.setmetatable("", nil)
string, math, io, os, debug, coroutine, python = nil, nil, nil, nil, nil, nil, nil
"""


class HealthScriptError(RuntimeError):
    """The script failed or returned no table: Argo CD shows the resource's health as an error."""


def script_path(kind: str, group: str = GROUP) -> pathlib.Path:
    """Where Argo CD's layout keeps the health check of ``group/kind``."""
    return CUSTOMIZATIONS / group / kind / "health.lua"


class _JsonLikeLoader(yaml.SafeLoader):
    """YAML as Argo CD reads it (through JSON): timestamps stay strings."""


_JsonLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_object(path: pathlib.Path) -> dict[str, Any]:
    """A testdata resource as the JSON object Argo CD hands to the script."""
    data = yaml.load(path.read_text(), Loader=_JsonLikeLoader)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return data


def run(script: str, obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) of one health script on one object, as Argo CD computes it."""
    plain = json.loads(json.dumps(obj, default=str))
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=False)
    lua.execute(_SANDBOX, MAX_INSTRUCTIONS)
    lua.globals()["obj"] = lua.table_from(plain, recursive=True)
    try:
        result: Any = lua.execute(script)
    except lupa.lua51.LuaError as error:
        raise HealthScriptError(str(error)) from error
    if lupa.lua51.lua_type(result) != "table":
        raise HealthScriptError(f"expect table output from Lua script, not {result!r}")
    status, message = result["status"], result["message"]
    if status not in STATUSES:
        return "Unknown", INVALID
    return str(status), "" if message is None else str(message)


def health(kind: str, obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) Argo CD shows for a Toque resource of ``kind``."""
    return run(script_path(kind).read_text(), obj)
