"""``toque-local``: the whole stack on one machine (``make up`` / ``make down``).

``up`` creates the pods' bridge (``toque0``, 10.250.0.0/24), starts the real control plane
(etcd, kube-apiserver, controller-manager, scheduler), a real node (containerd, runc, CNI,
kubelet, kube-proxy) pulling from a local registry, a kwok GPU node, and MinIO, the MLflow
tracking server and Prometheus on the bridge's gateway address; builds Toque's image from the
Dockerfile, pushes it to the registry and installs the chart with ``helm install`` (the
operator runs as a pod); then runs the main example end to end: push the breast-cancer
dataset and the example's code snapshot, ``kubectl apply -f examples/trainingjob.yaml``, the
training pod runs in a container, MLflow tracks it, the gate passes, the ModelVersion goes live
on serving pods, and one request is answered. Everything keeps running after ``up`` returns;
``down`` stops it and removes what the node left. State lives in ``$TOQUE_HOME`` (default
``~/.toque/local``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import shutil
import sys
import time
import urllib.request

from toque.local import cluster as local
from toque.local import install, node, processes, registry, services
from toque.resources import serving

HOME = pathlib.Path(os.environ.get("TOQUE_HOME", pathlib.Path.home() / ".toque" / "local"))
STATE = HOME / "state.json"
DEMO_NAMESPACE = "toque-demo"
CREDENTIALS_SECRET = "toque-s3"
NETWORK = node.STACK_NETWORK
NODES = (
    # Untainted, so the example as written (no nodeSelector) trains here in a container.
    local.NodeSpec("real-node-0", real=True, tainted=False),
    local.NodeSpec(
        "gpu-node-0",
        cpu="16",
        memory="64Gi",
        gpus=2,
        labels={"toque.dev/accelerator": "nvidia-h100"},
    ),
)


def _say(text: str) -> None:
    print(f"[toque-local] {text}", flush=True)


def up(timeout: float) -> int:
    if STATE.exists():
        _say(f"a local stack is already recorded in {STATE}; run `make down` first")
        return 1
    # What a killed earlier `up` left runs on (containers, mounts): stopped before its files go.
    for workdir in node.sweep(NETWORK):
        _say(f"removed what a killed run left in {workdir}")
    # A failed `up` keeps its logs for reading; its state (etcd, buckets) must not leak into
    # this one.
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    NETWORK.create()
    c = local.LocalCluster(workdir=HOME / "cluster", nodes=NODES, detached=True, network=NETWORK)
    binary = local.find_binaries(("minio",))["minio"]
    minio = services.Minio(HOME / "minio", binary, detached=True, host=c.host)
    mlflow = services.Mlflow(HOME / "mlflow", minio, detached=True)
    prom_bin = local.find_binaries(("prometheus",))["prometheus"]
    prometheus = services.Prometheus(
        HOME / "prometheus", prom_bin, c.kubeconfig, detached=True, host=c.host
    )
    release: install.OperatorRelease | None = None
    try:
        _say("starting etcd, kube-apiserver, controller-manager, scheduler, kwok, the registry,")
        _say("and the real node: containerd, kubelet, kube-proxy")
        c.start()
        _say("starting MinIO, the MLflow tracking server and Prometheus")
        minio.start()
        mlflow.start()
        prometheus.start()
        _say("building Toque's image (hack/build-image.sh) and pushing it to the registry")
        assert c.registry is not None
        built = registry.build_toque_image(local.REPO_ROOT)
        image = c.registry.push(built, "toque:" + built.rpartition(":")[2])
        _say(f"helm install toque helm/toque -n {install.NAMESPACE} (image {image})")
        release = install.OperatorRelease(
            c,
            image,
            {
                "mlflow": {"trackingUri": mlflow.uri},
                "storage": {
                    "endpoint": minio.endpoint,
                    "dataBucket": "toque-data",
                    "credentialsSecret": CREDENTIALS_SECRET,
                },
                "prometheus": {"url": prometheus.url},
                "operator": install.on_real_node(tainted=False),
            },
        )
        release.install()
        pids = {n: p.pid for n, p in c.processes.items()}
        if c.registry.process:
            pids["registry"] = c.registry.process.pid
        if c.real_node:
            pids.update({n: p.pid for n, p in c.real_node.processes.items()})
        for name, proc in (
            ("minio", minio.process),
            ("mlflow", mlflow.process),
            ("prometheus", prometheus.process),
        ):
            pids[name] = proc.pid if proc else 0
        STATE.write_text(
            json.dumps(
                {
                    "pids": pids,
                    "kubeconfig": str(c.kubeconfig),
                    "node": {"name": NODES[0].name, "workdir": str(c.workdir / "node")},
                    "network": {"bridge": NETWORK.bridge, "subnet": NETWORK.subnet},
                    "image": image,
                    "mlflow": mlflow.uri,
                    "s3": minio.endpoint,
                    "prometheus": prometheus.url,
                    "metrics": release.metrics_url,
                },
                indent=2,
            )
        )
        _say(f"stack up in {time.monotonic() - started:.0f}s")
    except BaseException:
        _say("start failed; stopping what was started (logs stay in " + str(HOME) + ")")
        for part in (prometheus, mlflow, minio):
            part.stop()
        c.stop(keep_workdir=True)
        NETWORK.delete()
        STATE.unlink(missing_ok=True)
        raise
    try:
        run_example(c, minio, timeout)
    except (local.ClusterError, OSError) as error:
        # The stack stays up, so the failure can be looked at where it happened.
        _say(f"the example failed: {error}")
        _say(f"the stack is still up: export KUBECONFIG={c.kubeconfig}; make down when done")
        return 1
    _say(f"done in {time.monotonic() - started:.0f}s. Use the stack with:")
    print(f"  export KUBECONFIG={c.kubeconfig}")
    print(f"  export PATH={c.binaries['kubectl'].parent}:$PATH   # kubectl and helm")
    print("  kubectl get tj,mv,deploy,svc,endpointslices -n " + DEMO_NAMESPACE)
    print(f"  MLflow UI: {mlflow.uri}    operator metrics: {release.metrics_url}")
    print(f"  Prometheus API: {prometheus.url}")
    print("  stop everything with: make down")
    return 0


def run_example(c: local.LocalCluster, minio: services.Minio, timeout: float) -> None:
    # The example project sits in the repository, not in the installed package.
    sys.path.insert(0, str(local.REPO_ROOT))
    from examples.project import make_dataset

    data = make_dataset.write(HOME / "data" / "breast-cancer").parent
    _say(f"toque data push {data} --name breast-cancer")
    print("  " + minio.push_dataset(data, "breast-cancer", "toque-data"))
    _say("toque code push examples --name breast-cancer-code")
    print("  " + minio.push_code(local.REPO_ROOT, ["examples"], "breast-cancer-code", "toque-data"))
    c.kubectl("create", "namespace", DEMO_NAMESPACE)
    c.kubectl("label", "namespace", DEMO_NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    c.kubectl(
        "create",
        "secret",
        "generic",
        CREDENTIALS_SECRET,
        "-n",
        DEMO_NAMESPACE,
        f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}",
    )
    example = local.REPO_ROOT / "examples" / "trainingjob.yaml"
    _say(f"kubectl apply -f {example.relative_to(local.REPO_ROOT)}")
    print("  " + c.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(example)).stdout.strip())
    name = "breast-cancer-rf"
    seen: set[str] = set()

    def finished() -> dict[str, object] | None:
        obj = c.kubectl_json("get", "trainingjob", name, "-n", DEMO_NAMESPACE)
        status = obj.get("status", {})
        phase = status.get("phase")
        if phase and phase not in seen:
            seen.add(phase)
            _say(f"TrainingJob {name}: {phase} — {status.get('message', '')}")
        return obj if phase in ("Succeeded", "Failed") else None

    obj = c.wait_for(finished, timeout, f"TrainingJob {name} to finish", interval=0.5)
    status = obj["status"]
    print(c.kubectl("get", "trainingjob,modelversion,job,pod", "-n", DEMO_NAMESPACE).stdout)
    if status["phase"] != "Succeeded":
        raise local.ClusterError(f"the example ended {status['phase']}: {status.get('message')}")
    metrics = status.get("metrics", {})
    _say(
        f"MLflow run {status.get('mlflowRunId')}: val_accuracy "
        f"{metrics.get('val_accuracy', float('nan')):.3f}, model {status.get('modelUri')} "
        f"({status.get('modelDigest', '')[:19]}…)"
    )
    for result in status.get("gate", {}).get("results", []):
        _say(
            f"gate: {'pass' if result['passed'] else 'FAIL'} {result['rule']} ({result['message']})"
        )
    _say(f"ModelVersion: {status.get('modelVersion', 'none')}")
    if status.get("modelVersion"):
        serve_example(c, str(status["modelVersion"]), data / "breast_cancer.csv", timeout)


def serve_example(c: local.LocalCluster, name: str, table: pathlib.Path, timeout: float) -> None:
    """The ModelVersion goes live (the model's first version: no canary), then one request
    goes to a ready endpoint of the model's Service, as kube-proxy would send it."""
    seen: set[str] = set()

    def promoted() -> dict[str, object] | None:
        obj = c.kubectl_json("get", "modelversion", name, "-n", DEMO_NAMESPACE)
        status = obj.get("status", {})
        phase = status.get("phase")
        if phase and phase not in seen:
            seen.add(phase)
            _say(f"ModelVersion {name}: {phase} — {status.get('message', '')}")
        if phase in ("Failed", "RolledBack", "Aborted"):
            raise local.ClusterError(f"ModelVersion {name} ended {phase}: {status.get('message')}")
        return obj if phase == "Promoted" else None

    obj = c.wait_for(promoted, timeout, f"ModelVersion {name} to go live", interval=0.5)
    model = str(obj["spec"]["model"])
    service = serving.service_name(model)
    slices = c.kubectl_json(
        "get", "endpointslices", "-n", DEMO_NAMESPACE, "-l", f"kubernetes.io/service-name={service}"
    )
    endpoints = [
        f"{address}:{port['port']}"
        for item in slices["items"]
        for port in item.get("ports") or []
        for endpoint in item.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint["addresses"]
    ]
    if not endpoints:
        raise local.ClusterError(f"Service {service} has no ready endpoints")
    base = f"http://{endpoints[0]}"
    with urllib.request.urlopen(f"{base}/v2/models/{model}", timeout=10) as reply:
        columns = [i["name"] for i in json.loads(reply.read())["inputs"]]
    with table.open() as handle:
        row = next(iter(csv.DictReader(handle)))
    body = {"dataframe_split": {"columns": columns, "data": [[float(row[k]) for k in columns]]}}
    request = urllib.request.Request(
        f"{base}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        answer = json.loads(reply.read())
    _say(f"Service {service}: {len(endpoints)} ready endpoints {endpoints}")
    _say(f"POST {base}/invocations (first CSV row) → {answer} (label was {row['target']})")


def down() -> int:
    if not STATE.exists():
        _say("no local stack recorded; nothing to stop")
        return 0
    state = json.loads(STATE.read_text())
    for name, pid in reversed(list(state["pids"].items())):
        if pid:
            _say(f"stopping {name} ({pid})")
            processes.stop_pid_group(int(pid))
    if "node" in state:
        # The kubelet is gone, so its pods are removed by force: their processes (in the
        # node's cgroups), containerd's shims, mounts, network namespaces, kube-proxy's tables.
        _say(f"removing what node {state['node']['name']} left")
        node.clean(
            pathlib.Path(state["node"]["workdir"]),
            state["node"]["name"],
            state["network"]["bridge"],
        )
        node.Network(**state["network"]).delete()
    shutil.rmtree(HOME, ignore_errors=True)
    _say("stopped and removed " + str(HOME))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toque-local", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    return up(args.timeout) if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
