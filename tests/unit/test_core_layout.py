"""``toque.core`` imports nothing outside the standard library and itself.

import-linter checks the packages it is told about; this checks what importing every core
module really loads, so a new third-party import cannot slip in under another name.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import toque.core

PROBE = """
import importlib, json, sys
before = set(sys.modules)
for name in {names!r}:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_core_loads_only_the_standard_library() -> None:
    names = [f"toque.core.{m.name}" for m in pkgutil.iter_modules(toque.core.__path__)]
    assert {"toque.core.exitcodes", "toque.core.transient", "toque.core.retry"} <= set(names)
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(names=names)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded = json.loads(out)
    foreign = [
        m
        for m in loaded
        if m.partition(".")[0] not in sys.stdlib_module_names
        and m != "toque"
        and not m.startswith("toque.core")
    ]
    assert foreign == []
