"""``toque serve`` keeps ``/healthz`` and ``/readyz`` answering while large batches predict.

A compiled forest big enough that one 10,000-row prediction takes seconds is served from a
local model directory (no MLflow or MinIO needed); while three such requests are in flight
the probes must answer well inside a kubelet's probe timeout. Were predictions run on the
event loop, every probe would wait for the whole batch.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from toque.core import digest
from toque.local import cluster as local

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FEATURES = 8
BIG_ROWS = 10_000
PROBE_BOUND_S = 0.2


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, str]:
    """200 fully grown trees on noise: deep (about 50 levels), so every row costs."""
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.random((4000, FEATURES))
    y = rng.integers(0, 2, 4000)
    model = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1).fit(x, y)
    path = tmp_path_factory.mktemp("slow") / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format="skops",
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    return path, digest.model_digest(path)


@pytest.fixture(scope="module")
def server(
    slow_model: tuple[pathlib.Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    path, model_digest = slow_model
    log = tmp_path_factory.mktemp("slow-serve") / "serve.log"
    port = local.free_port()
    toque = str(pathlib.Path(sys.executable).with_name("toque"))
    proc = subprocess.Popen(
        [
            toque,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model-uri",
            str(path),
            "--model-name",
            "slow",
            "--version",
            "1",
            "--expected-digest",
            model_digest,
            "--sample-rate",
            "0",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _big_request(url: str, rows: int, out: list[tuple[int, int, float]]) -> None:
    data = np.random.default_rng(rows).random((rows, FEATURES))
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [rows, FEATURES],
                    "datatype": "FP64",
                    "data": data.ravel().tolist(),
                }
            ]
        }
    ).encode()
    request = urllib.request.Request(
        url + "/v2/models/slow/infer", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
        out.append((response.status, len(answer["outputs"][0]["data"]), time.monotonic()))


def _probe(url: str, path: str) -> float:
    host, port = url.removeprefix("http://").split(":")
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, path
    finally:
        conn.close()
    return time.perf_counter() - started


def test_probes_answer_while_10k_row_batches_predict(server: str) -> None:
    done: list[tuple[int, int, float]] = []
    big = [threading.Thread(target=_big_request, args=(server, BIG_ROWS, done)) for _ in range(3)]
    for thread in big:
        thread.start()
    time.sleep(0.5)  # the bodies are sent and parsed; the predictions are under way
    latencies: list[float] = []
    last_probe = time.monotonic()
    while not done and len(latencies) < 40:
        latencies.append(_probe(server, "/healthz"))
        latencies.append(_probe(server, "/readyz"))
        last_probe = time.monotonic()
        time.sleep(0.02)
    for thread in big:
        thread.join(120)
    assert [(status, rows) for status, rows, _ in done] == [(200, BIG_ROWS)] * 3
    # Each probe answered within the bound...
    assert max(latencies) < PROBE_BOUND_S, sorted(latencies)[-5:]
    # ...while every big request was still in flight.
    assert len(latencies) >= 4 and last_probe < min(at for _, _, at in done)
