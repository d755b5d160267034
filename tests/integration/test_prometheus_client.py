"""The Prometheus client against a real Prometheus (scraping itself) and a fake that fails.

Kubernetes discovery of pods needs the control plane: ``tests/e2e/test_prometheus.py``.
"""

from __future__ import annotations

import http.server
import math
import pathlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import yaml

from toque.clients import prometheus as prom
from toque.local import cluster as local
from toque.local import services


@pytest.fixture(scope="module")
def binaries() -> dict[str, pathlib.Path]:
    return local.find_binaries(("prometheus", "promtool"))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, binaries: dict[str, pathlib.Path]
) -> Iterator[services.Prometheus]:
    p = services.Prometheus(
        workdir=tmp_path_factory.mktemp("prometheus"),
        binary=binaries["prometheus"],
        promtool=binaries["promtool"],
    )
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def client(server: services.Prometheus) -> prom.Prometheus:
    return prom.Prometheus(server.url, timeout=5)


def test_promtool_accepts_the_kubernetes_discovery_config(
    tmp_path: pathlib.Path, binaries: dict[str, pathlib.Path]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    p = services.Prometheus(
        workdir=tmp_path,
        binary=binaries["prometheus"],
        kubeconfig=kubeconfig,
        promtool=binaries["promtool"],
        port=9,
    )
    p.config_path.write_text(yaml.safe_dump(p.config()))
    assert "SUCCESS" in p.check_config()
    job = p.config()["scrape_configs"][1]
    assert job["job_name"] == "toque-serving"
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "kubeconfig_file": str(kubeconfig)}]

    p.config_path.write_text("scrape_configs: [{job_name: x, scrape_interval: soon}]\n")
    with pytest.raises(services.ServiceError, match="promtool rejected"):
        p.check_config()


def test_instant_vector_has_labels_and_values(
    server: services.Prometheus, client: prom.Prometheus
) -> None:
    def scraped() -> list[prom.Sample]:
        return client.query('up{job="prometheus"}')

    samples = _eventually(scraped, "Prometheus to scrape itself")
    assert samples == [
        prom.Sample(
            labels={"__name__": "up", "instance": f"127.0.0.1:{server.port}", "job": "prometheus"},
            value=1.0,
        )
    ]
    assert client.query('up{job="absent"}') == []
    assert client.scalar('up{job="absent"}') is None


def test_scalars_nan_and_infinities(client: prom.Prometheus) -> None:
    assert client.query("1 + 1") == [prom.Sample(labels={}, value=2.0)]
    assert client.scalar("sum(vector(3))") == 3.0
    nan = client.scalar("0 / 0")
    assert nan is not None and math.isnan(nan)
    assert client.scalar("vector(1) / 0") == math.inf
    assert client.scalar("-1 / 0") == -math.inf
    assert client.query("vector(5)", time=1_700_000_000.0) == [prom.Sample({}, 5.0)]


def test_query_errors_are_permanent(client: prom.Prometheus) -> None:
    with pytest.raises(prom.PrometheusQueryError, match="bad_data"):
        client.query("sum(")
    with pytest.raises(prom.PrometheusQueryError, match="matrix"):
        client.query("up[1m]")
    two = 'label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")'
    assert len(client.query(two)) == 2
    with pytest.raises(prom.PrometheusQueryError, match="2 series"):
        client.scalar(two)


def test_a_stopped_server_is_unavailable(
    tmp_path: pathlib.Path, binaries: dict[str, pathlib.Path]
) -> None:
    p = services.Prometheus(workdir=tmp_path, binary=binaries["prometheus"])
    p.start()
    client = prom.Prometheus(p.url, timeout=5)
    assert client.scalar("vector(1)") == 1.0
    p.stop()
    with pytest.raises(prom.PrometheusUnavailableError):
        client.query("vector(1)")


class _Failing(http.server.BaseHTTPRequestHandler):
    """503 with Prometheus' JSON error (a timed-out query), or a proxy's HTML 502."""

    def do_POST(self) -> None:
        if self.path.startswith("/json"):
            body = b'{"status":"error","errorType":"timeout","error":"query timed out"}'
            self.send_response(503)
        else:
            body = b"<html>502 Bad Gateway</html>"
            self.send_response(502)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_server_errors_are_transient() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with pytest.raises(prom.PrometheusUnavailableError, match="503 timeout"):
            prom.Prometheus(f"{base}/json").query("up")
        with pytest.raises(prom.PrometheusUnavailableError, match="502"):
            prom.Prometheus(f"{base}/html").query("up")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _eventually(
    probe: Callable[[], list[prom.Sample]], what: str, timeout: float = 30
) -> list[prom.Sample]:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() > deadline:
            assert result, f"timed out waiting for {what}"
            return result
        time.sleep(0.2)
