"""Pods on the local-execution node run for real, as processes started by the test node agent.

Every pod here meets the ``restricted`` Pod Security Standard the ``namespace`` fixture
enforces, selects ``toque.dev/local-exec=true`` and tolerates that node's taint.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
import urllib.request
from typing import Any

from tests.e2e.helpers import apply, get, wait
from toque.local import cluster as local
from toque.local import processes

NODE = "local-node-0"
AGENT = f"nodeagent-{NODE}"
LOCAL: dict[str, Any] = {
    "nodeSelector": {"toque.dev/local-exec": "true"},
    "tolerations": [
        {
            "key": "toque.dev/local-exec",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ],
}
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "ignored.example/python:3.11",
        "command": ["python", "-c", script],
        "securityContext": RESTRICTED,
        **extra,
    }


def pod_spec(*containers: dict[str, Any], restart: str = "Never", **spec: Any) -> dict[str, Any]:
    return {"restartPolicy": restart, "containers": list(containers), **LOCAL, **spec}


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": pod_spec(*containers, **spec),
    }


def wait_pod(
    cluster: local.LocalCluster,
    ns: str,
    name: str,
    ok: Any,
    what: str,
    timeout: float = 60,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, ns, "pod", name)
        return obj if obj and ok(obj) else None

    result: dict[str, Any] = wait(cluster, check, f"pod {name} {what}", timeout)
    return result


def phase_is(*phases: str) -> Any:
    return lambda obj: obj.get("status", {}).get("phase") in phases


def ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def terminated(obj: dict[str, Any], index: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = obj["status"]["containerStatuses"][index]["state"]["terminated"]
    return state


def pid_of(obj: dict[str, Any]) -> int:
    return int(obj["status"]["containerStatuses"][0]["containerID"].split("://")[1])


def alive(pid: int) -> bool:
    stat = pathlib.Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def pod_dir(cluster: local.LocalCluster, obj: dict[str, Any]) -> pathlib.Path:
    """Where the agent keeps a pod's files (its docstring documents the layout)."""
    meta = obj["metadata"]
    directory = f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
    return cluster.workdir / "agent" / NODE / "pods" / directory


def pod_log(cluster: local.LocalCluster, obj: dict[str, Any], container_name: str) -> str:
    return (pod_dir(cluster, obj) / "logs" / f"{container_name}.log").read_text()


def test_local_node_is_ready_tainted_and_keeps_its_lease(cluster: local.LocalCluster) -> None:
    node = cluster.kubectl_json("get", "node", NODE)
    assert node["metadata"]["labels"]["toque.dev/local-exec"] == "true"
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    taints = node["spec"]["taints"]
    assert {"key": "toque.dev/local-exec", "value": "true", "effect": "NoSchedule"} in taints
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert node["status"]["allocatable"]["cpu"] == "4"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == cluster.server_version()

    def renewal() -> str:
        lease = cluster.kubectl_json("get", "lease", NODE, "-n", "kube-node-lease")
        return str(lease["spec"]["renewTime"])

    first = renewal()
    cluster.wait_for(lambda: renewal() != first, 20, "the node agent to renew its Lease")
    node = cluster.kubectl_json("get", "node", NODE)
    ready_condition = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready_condition["status"] == "True"
    # kube-controller-manager adds these when it thinks a node has stopped reporting.
    assert not any("unreachable" in t["key"] for t in node["spec"].get("taints", []))


def test_pod_runs_and_reports_its_termination_message(
    cluster: local.LocalCluster, namespace: str
) -> None:
    script = (
        "import os, sys\n"
        "print('hello from the pod')\n"
        "open(os.environ['TOQUE_TERMINATION_MESSAGE_PATH'], 'w').write("
        "'prefix=' + sys.prefix + ' cwd=' + os.path.basename(os.getcwd()))\n"
    )
    apply(
        cluster,
        namespace,
        pod("hello", container("main", script, workingDir="/workspace/app")),
    )
    obj = wait_pod(cluster, namespace, "hello", phase_is("Succeeded", "Failed"), "to finish")
    assert obj["status"]["phase"] == "Succeeded"
    assert obj["spec"]["nodeName"] == NODE
    state = terminated(obj)
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    # `python` resolved to this virtualenv; workingDir became a per-pod directory.
    assert state["message"] == f"prefix={sys.prefix} cwd=workspace_app"
    # Routable (EndpointSlices refuse loopback) when the agent may add addresses to lo.
    assert not obj["status"]["podIP"].startswith("127.") or os.geteuid() != 0
    assert obj["status"]["hostIP"] == "127.0.0.1"
    assert obj["status"]["containerStatuses"][0]["containerID"].startswith("toque-local://")
    assert "hello from the pod" in pod_log(cluster, obj, "main")


def test_failing_command_fails_the_pod_with_the_log_tail(
    cluster: local.LocalCluster, namespace: str
) -> None:
    script = "import sys\nfor i in range(100):\n    print(f'line {i}')\nsys.exit(3)\n"
    apply(
        cluster,
        namespace,
        pod("fails", container("main", script, terminationMessagePolicy="FallbackToLogsOnError")),
    )
    obj = wait_pod(cluster, namespace, "fails", phase_is("Succeeded", "Failed"), "to finish")
    assert obj["status"]["phase"] == "Failed"
    state = terminated(obj)
    assert state["exitCode"] == 3
    assert state["reason"] == "Error"
    lines = state["message"].splitlines()
    assert lines[-1] == "line 99"
    assert len(lines) == 80 and lines[0] == "line 20"


def test_env_from_secret_configmap_and_fields_reaches_the_process(
    cluster: local.LocalCluster, namespace: str
) -> None:
    script = (
        "import json, os\n"
        "keys = ['TOKEN', 'MODE', 'POD_IP', 'POD_NAME', 'URL', 'CFG_LEVEL']\n"
        "open(os.environ['TOQUE_TERMINATION_MESSAGE_PATH'], 'w')"
        ".write(json.dumps({k: os.environ.get(k) for k in keys}))\n"
    )
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "URL", "value": "http://$(POD_IP):8080/$(MODE)"},
    ]
    env_from = [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]
    cluster.kubectl(
        "create",
        "configmap",
        "settings",
        "-n",
        namespace,
        "--from-literal=mode=fast",
        "--from-literal=LEVEL=3",
    )
    apply(cluster, namespace, pod("env", container("main", script, env=env, envFrom=env_from)))

    def waiting_for_the_secret(obj: dict[str, Any]) -> bool:
        statuses = obj.get("status", {}).get("containerStatuses") or []
        waiting = statuses[0]["state"].get("waiting", {}) if statuses else {}
        return waiting.get("reason") == "CreateContainerConfigError"

    obj = wait_pod(cluster, namespace, "env", waiting_for_the_secret, "to wait for its Secret")
    waiting = obj["status"]["containerStatuses"][0]["state"]["waiting"]
    assert 'secret "creds" not found' in waiting["message"]
    assert obj["status"]["phase"] == "Pending"
    cluster.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cr3t"
    )
    obj = wait_pod(cluster, namespace, "env", phase_is("Succeeded", "Failed"), "to finish")
    assert obj["status"]["phase"] == "Succeeded"
    seen = json.loads(terminated(obj)["message"])
    ip = obj["status"]["podIP"]
    assert seen == {
        "TOKEN": "s3cr3t",
        "MODE": "fast",
        "POD_IP": ip,
        "POD_NAME": "env",
        "URL": f"http://{ip}:8080/fast",
        "CFG_LEVEL": "3",
    }


def test_pods_get_their_own_addresses_and_readiness_follows_the_probe(
    cluster: local.LocalCluster, namespace: str
) -> None:
    # Both servers use port 8080: only their own 127.x addresses keep them apart. The probe
    # asks for a file the server does not have yet, so Ready must wait until it appears.
    server = {
        "name": "web",
        "image": "ignored.example/python:3.11",
        "command": ["python", "-m", "http.server", "8080"],
        "args": ["--bind", "$(POD_IP)"],
        "securityContext": RESTRICTED,
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {
            "httpGet": {"path": "/ready.txt", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
    }
    for name in ("web-a", "web-b"):
        apply(cluster, namespace, pod(name, server))
    a = wait_pod(cluster, namespace, "web-a", phase_is("Running"), "to run")
    b = wait_pod(cluster, namespace, "web-b", phase_is("Running"), "to run")
    ips = [a["status"]["podIP"], b["status"]["podIP"]]
    assert len(set(ips)) == 2

    def serving(ip: str) -> bool:
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as reply:
            return bool(reply.status == 200)

    for ip in ips:
        wait(cluster, lambda ip=ip: serving(ip), f"a server on {ip}:8080")
    time.sleep(2)  # two probe periods: the probe has failed while the server runs
    a = get(cluster, namespace, "pod", "web-a")
    assert not ready(a)
    assert a["status"]["containerStatuses"][0]["ready"] is False

    (pod_dir(cluster, a) / "wd" / "ready.txt").write_text("ok")
    a = wait_pod(cluster, namespace, "web-a", ready, "to be Ready")
    assert a["status"]["containerStatuses"][0]["ready"] is True
    assert not ready(get(cluster, namespace, "pod", "web-b"))


def test_deleting_a_pod_stops_its_processes_and_removes_it(
    cluster: local.LocalCluster, namespace: str
) -> None:
    # The process ignores SIGTERM, so the agent must escalate to SIGKILL after the grace
    # period; the child it starts must go too.
    script = (
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "print(f'child {child.pid}', flush=True)\n"
        "time.sleep(300)\n"
    )
    apply(cluster, namespace, pod("sleeper", container("main", script)))
    obj = wait_pod(
        cluster, namespace, "sleeper", lambda o: "child" in _log_or_empty(cluster, o), "to start"
    )
    pid = pid_of(obj)
    child = int(pod_log(cluster, obj, "main").split("child ")[1].split()[0])
    assert alive(pid) and alive(child)
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "sleeper", "-n", namespace, "--grace-period=2", "--wait=false")
    wait(
        cluster,
        lambda: get(cluster, namespace, "pod", "sleeper") is None,
        "the pod object to disappear",
        timeout=30,
    )
    assert time.monotonic() - started >= 1.5  # SIGTERM was ignored: the grace period ran out
    assert not alive(pid)
    assert not alive(child)


def _log_or_empty(cluster: local.LocalCluster, obj: dict[str, Any]) -> str:
    try:
        return pod_log(cluster, obj, "main") if obj["status"].get("phase") == "Running" else ""
    except (OSError, KeyError):
        return ""


def test_on_failure_restarts_the_container(cluster: local.LocalCluster, namespace: str) -> None:
    # The first run fails; a marker in the emptyDir volume (which survives restarts, as in
    # Kubernetes) makes the second one succeed.
    script = (
        "import os, pathlib, sys\n"
        "marker = pathlib.Path(os.environ['TOQUE_VOLUME_STATE']) / 'tried'\n"
        "if not marker.exists():\n"
        "    marker.write_text('once')\n"
        "    sys.exit(1)\n"
    )
    apply(
        cluster,
        namespace,
        pod(
            "retry",
            container("main", script, volumeMounts=[{"name": "state", "mountPath": "/state"}]),
            restart="OnFailure",
            volumes=[{"name": "state", "emptyDir": {}}],
        ),
    )
    obj = wait_pod(cluster, namespace, "retry", phase_is("Succeeded", "Failed"), "to finish")
    assert obj["status"]["phase"] == "Succeeded"
    status = obj["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["exitCode"] == 0


def test_active_deadline_fails_the_pod(cluster: local.LocalCluster, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        pod("late", container("main", "import time; time.sleep(300)"), activeDeadlineSeconds=2),
    )
    obj = wait_pod(cluster, namespace, "late", phase_is("Succeeded", "Failed"), "to end")
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["reason"] == "DeadlineExceeded"
    assert not alive(pid_of(obj))


def test_pod_without_command_fails_with_no_command(
    cluster: local.LocalCluster, namespace: str
) -> None:
    apply(
        cluster,
        namespace,
        pod("nocmd", {"name": "main", "image": "busybox", "securityContext": RESTRICTED}),
    )
    obj = wait_pod(cluster, namespace, "nocmd", phase_is("Succeeded", "Failed"), "to fail")
    assert obj["status"]["phase"] == "Failed"
    state = terminated(obj)
    assert state["reason"] == "NoCommand"
    assert "command" in state["message"]


def test_job_completes_on_the_local_node(cluster: local.LocalCluster, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": pod_spec(
                    container("main", "print('trained')"),
                    initContainers=[container("prepare", "print('prepared')")],
                )
            },
        },
    }
    apply(cluster, namespace, job)

    def complete() -> bool:
        obj = get(cluster, namespace, "job", "train") or {}
        conditions = obj.get("status", {}).get("conditions") or []
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    wait(cluster, complete, "the Job to complete", timeout=60)
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "job-name=train")["items"]
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"] == NODE
    assert pods[0]["status"]["phase"] == "Succeeded"
    assert pods[0]["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_a_restarted_agent_fails_the_pods_it_lost(
    cluster: local.LocalCluster, namespace: str
) -> None:
    apply(cluster, namespace, pod("orphan", container("main", "import time; time.sleep(300)")))
    obj = wait_pod(cluster, namespace, "orphan", phase_is("Running"), "to run")
    pid = pid_of(obj)
    agent = cluster.processes[AGENT]
    agent.kill()  # as a crash would: no cleanup code runs
    cluster.processes[AGENT] = processes.Process(
        AGENT, agent.argv, agent.log, die_with_parent=not cluster.detached
    )
    # The pod's process died with the agent that started it.
    wait(cluster, lambda: not alive(pid), "the pod's process to die with the agent", 10)
    obj = wait_pod(cluster, namespace, "orphan", phase_is("Failed"), "to be marked Failed")
    assert obj["status"]["reason"] == "NodeAgentRestarted"
    state = terminated(obj)
    assert state["reason"] == "ContainerStatusUnknown"
    # and the new agent runs new pods
    apply(cluster, namespace, pod("after", container("main", "print('ok')")))
    obj = wait_pod(cluster, namespace, "after", phase_is("Succeeded", "Failed"), "to finish")
    assert obj["status"]["phase"] == "Succeeded"
