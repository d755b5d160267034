"""Benchmark: ``toque serve`` against ``mlflow models serve`` on the same model, with wrk.

Trains a 50-tree random forest on scikit-learn's bundled breast-cancer data (30 numeric
features), logs and registers it in a throw-away MLflow (SQLite store in a temporary
directory), then serves ``models:/<name>/1`` with both servers on loopback, one after the
other, each warmed first. wrk POSTs the same ``dataframe_split`` body (1 row, 100 rows) to
``/invocations`` of each, and the same rows as an OIP v2 tensor to toque's ``infer``.
Writes a Markdown table (req/s, p50, p99, ratios) to ``--out``. Run by ``make bench-serve``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

VENV_BIN = pathlib.Path(sys.executable).parent
MODEL = "bench-rf"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("TOQUE_BENCH_BODY"), "r")
wrk.body = f:read("*a")
f:close()
"""


@dataclasses.dataclass
class Result:
    server: str
    endpoint: str
    rows: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_model(
    tracking_uri: str, workdir: pathlib.Path
) -> tuple[str, str, list[str], list[list[float]]]:
    import mlflow
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from toque.core import digest
    from toque.serving import bins

    mlflow.set_tracking_uri(tracking_uri)
    # Artifacts beside the database: the default would be ./mlruns in the caller's directory.
    experiment = mlflow.create_experiment("bench", artifact_location=str(workdir / "artifacts"))
    mlflow.set_experiment(experiment_id=experiment)
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=MODEL,
            signature=mlflow.models.infer_signature(x, model.predict(x)),
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model)),
        )
        bins.log_bins(x, run.info.run_id, workdir)
    local = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1", dst_path=str(workdir / "dl"))
    return (
        f"models:/{MODEL}/1",
        digest.model_digest(pathlib.Path(local)),
        list(x.columns),
        x.values.tolist(),
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s")


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(
    url: str, body: pathlib.Path, lua: pathlib.Path, seconds: int, threads: int, connections: int
) -> tuple[float, float, float, int, int]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            url,
        ],
        env={**os.environ, "TOQUE_BENCH_BODY": str(body)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(match.group(1)) * _UNIT[match.group(2)] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (
        float(rps.group(1)) if rps else 0.0,
        latency("50"),
        latency("99"),
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(g) for g in errors.groups()) if errors else 0,
    )


def bodies(
    workdir: pathlib.Path, columns: list[str], data: list[list[float]]
) -> dict[str, pathlib.Path]:
    out = {}
    for rows in (1, 100):
        split = {"dataframe_split": {"columns": columns, "data": data[:rows]}}
        infer = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [rows, len(columns)],
                    "datatype": "FP64",
                    "data": [v for row in data[:rows] for v in row],
                }
            ]
        }
        for kind, document in (("split", split), ("infer", infer)):
            path = workdir / f"{kind}-{rows}.json"
            path.write_text(json.dumps(document))
            out[f"{kind}-{rows}"] = path
    return out


def start(argv: list[str], env: dict[str, str], log: pathlib.Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="toque serve --workers")
    parser.add_argument(
        "--compare-workers",
        type=int,
        default=2,
        help="also measure toque with this many workers (0: skip)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        return print("serve bench: wrk is not installed (apt-get install -y wrk)") or 2  # type: ignore[func-returns-value]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="toque-bench-serve-"))
    tracking = f"sqlite:///{workdir}/mlflow.db"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    }
    os.environ.update(
        {k: env[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION")}
    )
    uri, model_digest, columns, data = log_model(tracking, workdir)
    files = bodies(workdir, columns, data)
    lua = workdir / "post.lua"
    lua.write_text(LUA)
    results: list[Result] = []

    def measure(server: str, base: str, endpoint: str, path: str, kind: str) -> None:
        for rows in (1, 100):
            body = files[f"{kind}-{rows}"]
            wrk(base + path, body, lua, 2, args.threads, args.connections)  # warm-up
            rps, p50, p99, bad, errors = wrk(
                base + path, body, lua, args.seconds, args.threads, args.connections
            )
            results.append(Result(server, endpoint, rows, rps, p50, p99, bad, errors))
            print(
                f"{server:28} {endpoint:12} {rows:4} rows: {rps:8.1f} req/s  p50 {p50:7.2f} ms"
                f"  p99 {p99:7.2f} ms  non-2xx {bad}  errors {errors}",
                flush=True,
            )

    port = free_port()
    mlflow_proc = start(
        [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env,
        workdir / "mlflow-serve.log",
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", mlflow_proc)
        measure(
            "mlflow models serve",
            f"http://127.0.0.1:{port}",
            "invocations",
            "/invocations",
            "split",
        )
    finally:
        stop(mlflow_proc)
    worker_counts = [args.workers] + ([args.compare_workers] if args.compare_workers else [])
    for workers in worker_counts:
        port = free_port()
        toque_proc = start(
            [
                str(VENV_BIN / "toque"),
                "serve",
                "--model-uri",
                uri,
                "--model-name",
                MODEL,
                "--version",
                "1",
                "--expected-digest",
                model_digest,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--drain-seconds",
                "0",
            ],
            env,
            workdir / f"toque-{workers}.log",
        )
        name = f"toque serve ({workers} worker{'s' if workers > 1 else ''})"
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", toque_proc)
            base = f"http://127.0.0.1:{port}"
            measure(name, base, "invocations", "/invocations", "split")
            if workers == args.workers:
                measure(name, base, "OIP v2 infer", f"/v2/models/{MODEL}/infer", "infer")
        finally:
            stop(toque_proc)
    report = render(results, args)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def render(results: list[Result], args: argparse.Namespace) -> str:
    import mlflow

    base = {r.rows: r for r in results if r.server.startswith("mlflow")}
    lines = [
        "# `toque serve` vs `mlflow models serve`",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"mlflow {mlflow.__version__}; both servers and wrk share the machine.",
        "Model: 50-tree RandomForestClassifier on sklearn's breast-cancer data (30 features), "
        "served as `models:/bench-rf/1` from a local MLflow.",
        f"Load: `wrk -t{args.threads} -c{args.connections} -d{args.seconds}s --latency` after a "
        "2 s warm-up; the same `dataframe_split` body for both `/invocations`; OIP v2 gets "
        "the same rows as one `[N, 30]` FP64 tensor.",
        "Command: `make bench-serve` (`python bench/serve.py --out bench/results/serve.md`).",
        "",
        "| server | endpoint | rows/request | req/s | p50 | p99 | non-2xx | socket errors "
        "| req/s vs mlflow | p99 vs mlflow |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ref = base.get(r.rows)
        ratio = f"**{r.rps / ref.rps:.1f}x**" if ref and ref is not r and ref.rps else "1x"
        p99 = f"{r.p99_ms / ref.p99_ms:.2f}" if ref and ref is not r and ref.p99_ms else "1"
        lines.append(
            f"| {r.server} | {r.endpoint} | {r.rows} | {r.rps:,.0f} | {r.p50_ms:.1f} ms "
            f"| {r.p99_ms:.1f} ms | {r.non_2xx} | {r.errors} | {ratio} | {p99} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
