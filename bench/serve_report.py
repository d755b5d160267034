"""The Markdown report of the serving benchmark: machine, versions, tables, goals.

Two tables, each comparing servers that got the very same bodies: MLflow's
``/invocations`` (``mlflow models serve`` vs ``toque serve``) and OIP v2 ``infer``
(MLServer vs ``toque serve``), with the ratios and issue 12's goals per cell (toque at
least 5x mlflow's and 2x MLServer's requests per second, toque's p99 at most a quarter of
mlflow's). Called by ``bench/serve.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import os
import pathlib
import platform
import subprocess
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
RPS_VS_MLFLOW = 5.0
RPS_VS_MLSERVER = 2.0
P99_VS_MLFLOW = 0.25


@dataclasses.dataclass
class Cell:
    model: str
    server: str  # mlflow, toque, mlserver
    endpoint: str  # invocations, infer
    rows: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # wrk socket errors (timeouts, resets)


def _find(cells: list[Cell], model: str, server: str, endpoint: str, rows: int) -> Cell | None:
    for cell in cells:
        if (cell.model, cell.server, cell.endpoint, cell.rows) == (model, server, endpoint, rows):
            return cell
    return None


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(pathlib.Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}){memory}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def load_average() -> str:
    """The 1-minute load average, which tells how busy the machine was around the run."""
    try:
        return pathlib.Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def versions(mlserver: pathlib.Path, toque_ref: str | None, toque_commit: str) -> str:
    if toque_ref:
        toque = f"toque as committed at {toque_ref} ({toque_commit})"
    else:
        commit = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "unknown"
        dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "operator/toque/serving"])
        toque = f"toque {commit}" + (
            " + uncommitted changes in operator/toque/serving" if dirty else ""
        )
    query = (
        "import importlib.metadata as m; print(', '.join(f'{n} {m.version(n)}' for n in "
        "('mlserver', 'mlserver-sklearn', 'mlserver-mlflow', 'uvloop', 'scikit-learn', "
        "'mlflow')))"
    )
    side = _run([str(mlserver.parent / "python"), "-c", query]) or "unknown"
    wrk = _run(["sh", "-c", "wrk -v 2>&1 | head -1"]).split(" [")[0] or "wrk"
    here = ", ".join(
        f"{n} {_version(n)}" for n in ("mlflow", "scikit-learn", "numpy", "pandas", "torch")
    )
    # PyPI's Linux torch wheel is the CUDA build; it runs on the CPU here.
    return f"{toque}; {here} (PyPI's CUDA build, on the CPU); MLServer side: {side}; {wrk}"


def render(
    cells: list[Cell],
    models: list[Any],
    torch_missing: str,
    args: argparse.Namespace,
    elapsed_s: float,
    load: tuple[str, str],
) -> str:
    lines = [
        "# Serving benchmark: `toque serve` vs `mlflow models serve` vs MLServer",
        "",
        f"Run {datetime.date.today().isoformat()}, {elapsed_s / 60:.1f} min end to end "
        f"(`make bench-serve`); 1-minute load average {load[0]} at the start, {load[1]} at "
        "the end.",
        f"Machine: {machine()}; the servers and wrk share it. A model's three servers stay "
        "up together (idle), and each row count's cells run back to back, one at a time.",
        f"Versions: {versions(args.mlserver, args.toque_ref, args.toque_commit)}.",
        f"Load: `wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s --latency`, a "
        f"Lua script POSTing the body, after a {args.warmup:g} s warm-up per cell. One worker "
        "per server: `toque serve --workers 1`, `mlflow models serve -w 1 --env-manager "
        "local`, MLServer with its defaults (`parallel_workers` 1, as KServe runs it).",
        "Data: scikit-learn's breast-cancer rows (30 numeric features; the mixed frame adds "
        "3 seeded string columns); 1-row bodies are row 0, 100-row bodies rows 0-99.",
        "Checked before any load: every server and endpoint answered all 569 rows and both "
        "bodies with the model's own predictions (labels equal; the MLP's probabilities "
        "within 1e-5).",
        "",
        "## MLflow `/invocations` (`dataframe_split`): `mlflow models serve` vs `toque serve`",
        "",
        f"Goals: toque ≥ {RPS_VS_MLFLOW:g}x mlflow's req/s, toque p99 ≤ "
        f"{P99_VS_MLFLOW:g}x mlflow's.",
        "",
        "| model | rows | mlflow req/s | mlflow p50 / p99 ms | toque req/s | toque p50 / p99 ms "
        "| req/s ratio | p99 ratio | ≥5x | p99 ≤ ¼ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    goals: list[tuple[str, int, bool]] = []
    for model in models:
        for rows in sorted({c.rows for c in cells}):
            ref = _find(cells, model.key, "mlflow", "invocations", rows)
            got = _find(cells, model.key, "toque", "invocations", rows)
            if ref is None or got is None:
                continue
            ratio, p99 = got.rps / ref.rps, got.p99_ms / ref.p99_ms
            ok_rps, ok_p99 = ratio >= RPS_VS_MLFLOW, p99 <= P99_VS_MLFLOW
            goals.append((model.key, rows, ok_rps and ok_p99))
            lines.append(
                f"| {model.title} | {rows} | {ref.rps:,.0f} | {_ms(ref.p50_ms)} / "
                f"{_ms(ref.p99_ms)} | {got.rps:,.0f} | {_ms(got.p50_ms)} / {_ms(got.p99_ms)} "
                f"| {ratio:.1f}x | {p99:.2f} | {_mark(ok_rps)} | {_mark(ok_p99)} |"
            )
    lines += [
        "",
        "## OIP v2 `infer`: MLServer vs `toque serve`",
        "",
        f"Goal: toque ≥ {RPS_VS_MLSERVER:g}x MLServer's req/s. Bodies: one `[N, 30]` FP64 "
        "tensor for the numeric scikit-learn models (MLServer's scikit-learn runtime gets "
        "a joblib dump of the same fitted estimator); one tensor per column (strings as "
        "BYTES) with request `content_type: pd` for the mixed frame (MLServer's pandas "
        "codec makes the DataFrame its ColumnTransformer needs); one `[N, 30]` FP32 tensor "
        "for the MLP (MLServer's MLflow runtime serves the same module saved with a tensor "
        "signature: under the column signature it decodes a DataFrame, mlflow.pytorch "
        "answers a DataFrame with an integer column name, and MLServer fails to encode "
        "it).",
        "",
        "| model | MLServer runtime | rows | MLServer req/s | MLServer p50 / p99 ms "
        "| toque req/s | toque p50 / p99 ms | req/s ratio | p99 ratio | ≥2x |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for model in models:
        runtime = model.mlserver_runtime.split(".")[0].replace("_", "-")
        for rows in sorted({c.rows for c in cells}):
            ref = _find(cells, model.key, "mlserver", "infer", rows)
            got = _find(cells, model.key, "toque", "infer", rows)
            if ref is None or got is None:
                continue
            ratio, p99 = got.rps / ref.rps, got.p99_ms / ref.p99_ms
            goals.append((model.key, rows, ratio >= RPS_VS_MLSERVER))
            lines.append(
                f"| {model.title} | `{runtime}` | {rows} | {ref.rps:,.0f} | {_ms(ref.p50_ms)} / "
                f"{_ms(ref.p99_ms)} | {got.rps:,.0f} | {_ms(got.p50_ms)} / {_ms(got.p99_ms)} "
                f"| {ratio:.1f}x | {p99:.2f} | {_mark(ratio >= RPS_VS_MLSERVER)} |"
            )
    met = sum(ok for _, _, ok in goals)
    errors = sum(c.errors for c in cells)
    lines += [
        "",
        f"Goals met in {met} of {len(goals)} comparisons (a row of the first table counts "
        "once, both goals needed). "
        + (
            f"wrk counted {errors} socket errors (timeouts/resets) in all."
            if errors
            else "No socket errors, no non-2xx answers."
        ),
    ]
    if torch_missing:
        lines.append(f"The PyTorch MLP is missing from this run: {torch_missing}.")
    return "\n".join(lines) + "\n"
