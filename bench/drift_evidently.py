"""Benchmark child: Evidently 0.7's ``DataDriftPreset`` on two parquet files, as JSON.

Run by ``bench/drift.py`` in its own virtualenv (``.venv-evidently``: Evidently 0.7 needs
pandas < 3, Toque runs on pandas 3) and its own process, so that its peak memory is its own.
Reads the reference and current files (not timed), runs the preset (timed: dataset wrapping
and ``Report.run``), and writes to ``--out`` the wall time, the peak RSS, and per column the
method Evidently chose, its threshold, its score and the verdict. With ``--memory-limit`` the
process runs under ``RLIMIT_AS``; running out of memory is reported, not raised.
Imports only pandas, pyarrow and evidently: nothing of Toque.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import resource
import sys
import time
from typing import Any


def status_kib(field: str) -> int:
    # VmHWM is per address space and starts afresh at exec, unlike ru_maxrss, which keeps
    # the parent's high-water mark across fork + exec.
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def drifted(method: str, score: float, threshold: float) -> bool:
    # Evidently's p-value tests detect drift below the threshold, its distances at or above.
    if "p_value" in method:
        return score < threshold
    return score >= threshold


def columns(snapshot: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith(":ValueDrift"):
            continue
        score = float(metric["value"])
        found[config["column"]] = {
            "method": config["method"],
            "threshold": config["threshold"],
            "score": score,
            "drifted": drifted(config["method"], score, config["threshold"]),
        }
    return found


def run(args: argparse.Namespace, progress: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    progress["phase"] = "reading the parquet files"
    started = time.perf_counter()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    read_s = time.perf_counter() - started
    loaded_kib = status_kib("VmRSS")

    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in reference.columns if pd.api.types.is_numeric_dtype(reference[c])]
    categorical = [c for c in reference.columns if c not in numeric]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    progress["phase"] = "running the report"
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    run_s = time.perf_counter() - started
    return {
        "read_s": read_s,
        "run_s": run_s,
        "rows_reference": len(reference),
        "rows_current": len(current),
        "loaded_kib": loaded_kib,
        "columns": columns(snapshot),
        "versions": {
            "python": platform.python_version(),
            "evidently": evidently.__version__,
            "pandas": pd.__version__,
            "numpy": __import__("numpy").__version__,
            "scipy": __import__("scipy").__version__,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--memory-limit", type=int, default=0, help="RLIMIT_AS bytes; 0: none")
    args = parser.parse_args()
    if args.memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    progress: dict[str, Any] = {"phase": "starting"}
    try:
        result = run(args, progress)
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        result = {"error": f"MemoryError while {progress['phase']}{detail}"}
    result["peak_kib"] = status_kib("VmHWM")
    result["memory_limit"] = args.memory_limit
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
