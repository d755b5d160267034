"""``toque-local``: the local stack on one machine, no containers (``make up`` / ``make down``).

``up`` starts the real control plane with kwok CPU and GPU nodes, installs Toque's CRDs and
the chart's RBAC with the real helm and kubectl, starts the operator as its ServiceAccount,
then runs the main example (``examples/trainingjob.yaml``) to the end and prints how to use
the cluster. Everything keeps running after ``up`` returns; ``down`` stops it. State lives in
``$TOQUE_HOME`` (default ``~/.toque/local``).

What runs the example's pod today is kwok's simulation of a kubelet (the pod goes Running,
then Succeeded); real training pods come with the node agent.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import time

from toque.testing import cluster as local
from toque.testing import operator_process, processes

HOME = pathlib.Path(os.environ.get("TOQUE_HOME", pathlib.Path.home() / ".toque" / "local"))
STATE = HOME / "state.json"
DEMO_NAMESPACE = "toque-demo"


def _say(text: str) -> None:
    print(f"[toque-local] {text}", flush=True)


def up(timeout: float) -> int:
    if STATE.exists():
        _say(f"a local stack is already recorded in {STATE}; run `make down` first")
        return 1
    HOME.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    c = local.LocalCluster(workdir=HOME / "cluster", detached=True)
    _say("starting etcd, kube-apiserver, controller-manager, scheduler and kwok")
    c.start()
    op: operator_process.Operator | None = None
    try:
        c.install_crds(local.REPO_ROOT / "crds")
        identity = operator_process.install_rbac_and_kubeconfig(
            c, local.REPO_ROOT / "helm" / "toque"
        )
        op = operator_process.Operator(c, identity, detached=True)
        op.start()
        pids = {n: p.pid for n, p in c.processes.items()}
        pids["operator"] = op.process.pid if op.process else 0
        STATE.write_text(
            json.dumps(
                {"pids": pids, "kubeconfig": str(c.kubeconfig), "metrics": op.metrics_url}, indent=2
            )
        )
        _say(f"control plane and operator up in {time.monotonic() - started:.0f}s")
        run_example(c, timeout)
    except BaseException:
        _say("start failed; stopping what was started")
        if op:
            op.stop()
        c.stop(keep_workdir=True)
        STATE.unlink(missing_ok=True)
        raise
    _say(f"done in {time.monotonic() - started:.0f}s. Use the cluster with:")
    print(f"  export KUBECONFIG={c.kubeconfig}")
    print(f"  kubectl get nodes; kubectl get tj -A   (kubectl: {c.binaries['kubectl']})")
    print(f"  operator metrics: {op.metrics_url if op else ''}")
    print("  stop everything with: make down")
    return 0


def run_example(c: local.LocalCluster, timeout: float) -> None:
    example = local.REPO_ROOT / "examples" / "trainingjob.yaml"
    c.kubectl("create", "namespace", DEMO_NAMESPACE)
    c.kubectl("label", "namespace", DEMO_NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    _say(f"kubectl apply -f {example.relative_to(local.REPO_ROOT)}")
    print(c.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(example)).stdout, end="")
    name = "breast-cancer-rf"
    seen: set[str] = set()

    def finished() -> str | None:
        obj = c.kubectl_json("get", "trainingjob", name, "-n", DEMO_NAMESPACE)
        phase = obj.get("status", {}).get("phase")
        if phase and phase not in seen:
            seen.add(phase)
            _say(f"TrainingJob {name}: {phase} — {obj['status'].get('message', '')}")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = c.wait_for(finished, timeout, f"TrainingJob {name} to finish", interval=0.5)
    print(c.kubectl("get", "trainingjob,job,pod", "-n", DEMO_NAMESPACE, "-o", "wide").stdout)
    if phase != "Succeeded":
        raise local.ClusterError(f"the example ended {phase}")


def down() -> int:
    if not STATE.exists():
        _say("no local stack recorded; nothing to stop")
        return 0
    state = json.loads(STATE.read_text())
    for name, pid in reversed(list(state["pids"].items())):
        if pid:
            _say(f"stopping {name} ({pid})")
            processes.stop_pid_group(int(pid))
    shutil.rmtree(HOME, ignore_errors=True)
    _say("stopped and removed " + str(HOME))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toque-local", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    return up(args.timeout) if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
