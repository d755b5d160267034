"""Prometheus finds annotated pods through the test apiserver and scrapes them where they run.

The pods run in containers from Toque's image on the real node, each serving ``/metrics`` with
``prometheus_client`` on its own pod IP in the node's bridge network, as Toque's serving pods do.
"""

from __future__ import annotations

from typing import Any

from tests.e2e import pods
from tests.e2e.helpers import apply
from toque.clients import prometheus as prom
from toque.local import cluster as local
from toque.local import services

# A counter with one labelled child; the process then serves until the pod is deleted.
SERVER = (
    "import os, time\n"
    "import prometheus_client as pc\n"
    "c = pc.Counter('toque_demo_requests', 'Demo requests.', ['route'])\n"
    "c.labels('infer').inc(7)\n"
    "pc.start_http_server(8080, addr=os.environ['POD_IP'])\n"
    "while True:\n"
    "    time.sleep(3600)\n"
)


def metrics_pod(name: str, image: str, annotations: dict[str, str]) -> dict[str, Any]:
    server = pods.container(
        "server",
        image,
        SERVER,
        env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        ports=[{"name": "metrics", "containerPort": 8080}],
    )
    doc = pods.pod(name, server)
    doc["metadata"]["labels"] = {"toque.dev/model": "demo-model"}
    doc["metadata"]["annotations"] = annotations
    return doc


def test_annotated_pods_are_discovered_and_scraped(
    cluster: local.LocalCluster,
    namespace: str,
    prometheus: services.Prometheus,
    toque_image: str,
) -> None:
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    apply(cluster, namespace, metrics_pod("scraped", toque_image, scrape))
    # Serves metrics too, but does not ask to be scraped.
    apply(cluster, namespace, metrics_pod("ignored", toque_image, {"prometheus.io/port": "8080"}))
    ip = pods.wait_pod(cluster, namespace, "scraped", pods.phase_is("Running"), "to run")["status"][
        "podIP"
    ]
    pods.wait_pod(cluster, namespace, "ignored", pods.phase_is("Running"), "to run")
    client = prom.Prometheus(prometheus.url, timeout=5)

    def scraped() -> list[prom.Sample]:
        return client.query(f'toque_demo_requests_total{{namespace="{namespace}"}}')

    # Discovery is a watch, but the scrape manager applies new targets every 5 s.
    samples = cluster.wait_for(scraped, 60, "Prometheus to scrape the annotated pod")
    assert samples == [
        prom.Sample(
            labels={
                "__name__": "toque_demo_requests_total",
                "job": "toque-serving",
                "instance": f"{ip}:8080",
                "namespace": namespace,
                "pod": "scraped",
                "toque_model": "demo-model",
                "route": "infer",
            },
            value=7.0,
        )
    ]
    up = client.query(f'up{{namespace="{namespace}"}}')
    assert [(s.labels["pod"], s.value) for s in up] == [("scraped", 1.0)]
