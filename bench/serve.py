"""Benchmark matrix: ``toque serve`` against ``mlflow models serve`` and MLServer, with wrk.

For each model of ``bench/serve_models.py`` (random forest, scaler + logistic regression,
histogram gradient boosting, ColumnTransformer + logistic regression on a mixed frame, a
PyTorch MLP), registered in a throw-away MLflow (SQLite store in a temporary directory),
three servers are started on loopback, one worker each, and kept up together while that
model's cells are measured one at a time:

- ``mlflow models serve -m models:/<name>/1 --env-manager local -w 1``: MLflow's
  ``/invocations`` with a ``dataframe_split`` body;
- ``toque serve --model-uri models:/<name>/1 --workers 1``: the same ``/invocations``
  bodies, and OIP v2 ``/v2/models/<name>/infer`` with MLServer's bodies;
- MLServer 1.7 (``mlserver start``, its own virtualenv): its scikit-learn runtime on a
  joblib dump of the same fitted estimator, or its MLflow runtime on the MLflow model (the
  MLP), OIP v2 ``infer``: one ``[N, 30]`` FP64 tensor for the numeric scikit-learn
  models, one tensor per column with ``content_type: pd`` for the mixed frame and the MLP.

Before any load, every server answers all 569 rows and both benchmark bodies, and its
predictions must equal the model's own (the MLP's within ``serve_models.TORCH_ATOL``);
any mismatch stops the run. Then wrk (``-c8``, a Lua script POSTing the body) warms each
cell up and measures it for a fixed time, 1 row and 100 rows per request. The report
(``bench/serve_report.py``) goes to ``--out``. Run by ``make bench-serve``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import serve_models
import serve_report

REPO = pathlib.Path(__file__).resolve().parent.parent
VENV_BIN = pathlib.Path(sys.executable).parent
ROWS = (1, 100)
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("TOQUE_BENCH_BODY"), "r")
wrk.body = f:read("*a")
f:close()
"""
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------- bodies


def invocations_body(model: serve_models.Model, rows: int) -> dict[str, Any]:
    frame = model.frame.iloc[:rows]
    return {
        "dataframe_split": {
            "columns": list(frame.columns),
            "data": frame.astype(object).to_numpy().tolist(),
        }
    }


def infer_body(model: serve_models.Model, rows: int) -> dict[str, Any]:
    frame = model.frame.iloc[:rows]
    if model.oip != "columns":
        dtype = np.float32 if model.oip == "FP32" else np.float64
        return {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(frame), frame.shape[1]],
                    "datatype": model.oip,
                    # float32 values print as the doubles they are, so they round-trip.
                    "data": frame.to_numpy(dtype=dtype).ravel().tolist(),
                }
            ]
        }
    inputs: list[dict[str, Any]] = []
    for name in frame.columns:
        column = frame[name]
        tensor: dict[str, Any] = {"name": name, "shape": [len(frame)]}
        if column.dtype == object:
            tensor |= {
                "datatype": "BYTES",
                "data": [str(v) for v in column],
                "parameters": {"content_type": "str"},
            }
        else:
            tensor |= {"datatype": "FP64", "data": column.to_numpy(dtype=np.float64).tolist()}
        inputs.append(tensor)
    # MLServer's pandas codec turns the columns back into a DataFrame.
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def write_bodies(
    model: serve_models.Model, workdir: pathlib.Path
) -> dict[tuple[str, int], pathlib.Path]:
    """(protocol, rows) → body file; rows 0 means all of them (the check)."""
    out = {}
    for protocol, make in (("invocations", invocations_body), ("infer", infer_body)):
        for rows in (*ROWS, 0):
            path = workdir / f"{model.key}-{protocol}-{rows or 'all'}.json"
            path.write_text(json.dumps(make(model, rows or len(model.frame))))
            out[(protocol, rows)] = path
    return out


# ---------------------------------------------------------------------------- servers


class Server:
    """One server process for one model: how to start it and which endpoints it has."""

    def __init__(
        self,
        label: str,
        argv: list[str],
        env: dict[str, str],
        ready: str,
        endpoints: dict[str, str],
        port: int,
    ) -> None:
        self.label = label
        self.argv = argv
        self.env = env
        self.port = port
        self.ready = f"http://127.0.0.1:{port}{ready}"
        self.endpoints = {k: f"http://127.0.0.1:{port}{v}" for k, v in endpoints.items()}


def with_path(env: dict[str, str], path: pathlib.Path | None) -> dict[str, str]:
    """``env`` with ``path`` first on PYTHONPATH."""
    if path is None:
        return env
    rest = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": f"{path}:{rest}" if rest else str(path)}


def servers(
    model: serve_models.Model,
    env: dict[str, str],
    mlserver: pathlib.Path,
    toque_source: pathlib.Path | None,
) -> list[Server]:
    out = []
    port = free_port()
    out.append(
        Server(
            "mlflow",
            [
                str(VENV_BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                model.uri,
                "--env-manager",
                "local",
                "-w",
                "1",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env,
            "/ping",
            {"invocations": "/invocations"},
            port,
        )
    )
    port = free_port()
    out.append(
        Server(
            "toque",
            [
                str(VENV_BIN / "toque"),
                "serve",
                "--model-uri",
                model.uri,
                "--model-name",
                model.name,
                "--version",
                "1",
                "--expected-digest",
                model.digest,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--drain-seconds",
                "0",
            ],
            with_path(env, toque_source),
            "/readyz",
            {"invocations": "/invocations", "infer": f"/v2/models/{model.name}/infer"},
            port,
        )
    )
    port = free_port()
    out.append(
        Server(
            "mlserver",
            [str(mlserver), "start", str(model.mlserver_dir)],
            {
                **env,
                "MLSERVER_HTTP_PORT": str(port),
                "MLSERVER_GRPC_PORT": str(free_port()),
                "MLSERVER_METRICS_PORT": str(free_port()),
            },
            f"/v2/models/{model.name}/ready",
            {"infer": f"/v2/models/{model.name}/infer"},
            port,
        )
    )
    return out


@contextlib.contextmanager
def running(server: Server, log: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            server.argv,
            env=server.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(server.ready, proc, log)
            yield proc
        finally:
            stop(proc)


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: pathlib.Path, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"server exited ({proc.returncode}) before {url} answered:\n{tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s:\n{tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def tail(log: pathlib.Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------- checks


def post(url: str, body: pathlib.Path) -> Any:
    request = urllib.request.Request(
        url, data=body.read_bytes(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read()[:2000]
        raise SystemExit(f"POST {url} ({body.name}): HTTP {error.code}: {detail!r}") from None


def predictions(document: Any) -> np.ndarray:
    """The one prediction per row in an /invocations or OIP v2 answer."""
    if isinstance(document, dict) and "outputs" in document:
        return np.asarray(document["outputs"][0]["data"]).reshape(-1)
    values = document["predictions"] if isinstance(document, dict) else document
    if values and isinstance(values[0], dict):  # a DataFrame as records
        values = [next(iter(record.values())) for record in values]
    array = np.asarray(values)
    return array[:, 0] if array.ndim == 2 and array.shape[1] == 1 else array


def check(
    model: serve_models.Model,
    server: Server,
    bodies: dict[tuple[str, int], pathlib.Path],
) -> None:
    """Every endpoint answers the model's own predictions, on all rows and on each body."""
    for endpoint, url in server.endpoints.items():
        for rows in (0, *ROWS):
            got = predictions(post(url, bodies[(endpoint, rows)]))
            want = model.reference[: rows or len(model.reference)]
            if model.atol:
                same = got.shape == want.shape and np.allclose(
                    got.astype(np.float64), want, rtol=0, atol=model.atol
                )
            else:
                same = got.shape == want.shape and bool(np.all(got == want))
            if not same:
                bad = (
                    np.flatnonzero(got != want)[:10].tolist()
                    if got.shape == want.shape
                    else f"shape {got.shape} vs {want.shape}"
                )
                raise SystemExit(
                    f"PREDICTION MISMATCH: {server.label} {endpoint} on {model.key} "
                    f"({rows or 'all'} rows): rows {bad}; got {got[:10]!r}, "
                    f"want {want[:10]!r}"
                )
    print(f"  {server.label}: predictions match on all {len(model.reference)} rows", flush=True)


# ---------------------------------------------------------------------------- load


def wrk(
    url: str, body: pathlib.Path, lua: pathlib.Path, seconds: int, args: argparse.Namespace
) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
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
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def measure(
    model: serve_models.Model,
    server: Server,
    endpoint: str,
    rows: int,
    paths: tuple[pathlib.Path, pathlib.Path, pathlib.Path],
    args: argparse.Namespace,
) -> serve_report.Cell:
    """One cell: warm up, then measure; ``paths`` are the body, the Lua script, the log."""
    body, lua, log = paths
    url = server.endpoints[endpoint]
    wrk(url, body, lua, args.warmup, args)
    got = wrk(url, body, lua, args.seconds, args)
    if got["non_2xx"] or not got["rps"]:
        raise SystemExit(
            f"{server.label} {endpoint} {model.key} {rows} rows: "
            f"{got['non_2xx']} non-2xx answers under load:\n{tail(log)}"
        )
    cell = serve_report.Cell(
        model.key,
        server.label,
        endpoint,
        rows,
        got["rps"],
        got["p50"],
        got["p99"],
        int(got["errors"]),
    )
    print(
        f"  {server.label:8} {endpoint:11} {rows:4} rows: {cell.rps:9,.1f} req/s  "
        f"p50 {cell.p50_ms:8.2f} ms  p99 {cell.p99_ms:8.2f} ms  "
        f"socket errors {cell.errors}",
        flush=True,
    )
    return cell


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per cell")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per cell")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument(
        "--models", default="rf,logreg,hgb,mixed,mlp", help="comma-separated subset"
    )
    parser.add_argument(
        "--mlserver",
        type=pathlib.Path,
        default=REPO / ".venv-mlserver" / "bin" / "mlserver",
        help="the mlserver executable (its own virtualenv)",
    )
    parser.add_argument(
        "--torch-path",
        type=pathlib.Path,
        default=REPO / ".venv-torch",
        help="directory holding torch (pip --target); added to the MLP servers' PYTHONPATH",
    )
    parser.add_argument(
        "--toque-ref",
        help="serve with toque as committed at this git ref (git archive; default: the "
        "working tree)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    started = time.monotonic()
    load_before = serve_report.load_average()
    # Ctrl-C or a kill still stops the server under test (each runs in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        print("serve bench: wrk is not installed (apt-get install -y wrk)")
        return 2
    if not args.mlserver.exists():
        print(f"serve bench: no MLServer at {args.mlserver} (make bench-serve installs it)")
        return 2
    wanted = set(args.models.split(","))
    if "mlp" in wanted and args.torch_path.is_dir():
        # Appended: this virtualenv's own packages win over the copies beside torch.
        sys.path.append(str(args.torch_path))
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="toque-bench-serve-"))
    print(f"work directory (server logs; removed after a complete run): {workdir}", flush=True)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        # mlflow models serve and MLServer's MLflow runtime unpickle the PyTorch module.
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("MLFLOW_")})
    toque_source = None
    args.toque_commit = ""
    if args.toque_ref:
        args.toque_commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", args.toque_ref],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        toque_source = workdir / "toque-src"
        toque_source.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.toque_commit, "operator"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(toque_source)], input=archive, check=True)
        toque_source = toque_source / "operator"
    print("fitting and logging the models ...", flush=True)
    models, torch_missing = serve_models.build(workdir, wanted)
    lua = workdir / "post.lua"
    lua.write_text(LUA)
    cells: list[serve_report.Cell] = []
    for model in models:
        print(f"{model.key}: {model.title}", flush=True)
        bodies = write_bodies(model, workdir)
        model_env = env
        if model.key == "mlp" and args.torch_path.is_dir():
            model_env = with_path(env, args.torch_path)
        with contextlib.ExitStack() as stack:
            live = []
            for server in servers(model, model_env, args.mlserver, toque_source):
                log = workdir / f"{model.key}-{server.label}.log"
                stack.enter_context(running(server, log))
                check(model, server, bodies)
                live.append((server, log))
            # All three stay up (idle ones cost next to nothing) and a row count's cells
            # run back to back, so load from elsewhere on the machine shifts them alike.
            for rows in ROWS:
                for server, log in live:
                    for endpoint in server.endpoints:
                        paths = (bodies[(endpoint, rows)], lua, log)
                        cells.append(measure(model, server, endpoint, rows, paths, args))
    elapsed = time.monotonic() - started
    load = (load_before, serve_report.load_average())
    report = serve_report.render(cells, models, torch_missing, args, elapsed, load)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
