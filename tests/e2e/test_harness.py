"""The control-plane harness leaves no process behind, on failure or when its parent dies."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from toque.local import cluster as local


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose; its parent just has not reaped it yet
    stat = pathlib.Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a /proc scan, no pgrep)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def wait_dead(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def test_failed_start_stops_what_started(tmp_path: pathlib.Path) -> None:
    binaries = local.find_binaries()
    binaries["kube-apiserver"] = pathlib.Path("/bin/false")
    c = local.LocalCluster(workdir=tmp_path, binaries=binaries, nodes=local.KWOK_NODES)
    with pytest.raises(local.ClusterError) as info:
        c.start(timeout=20)
    assert "kube-apiserver" in str(info.value)
    etcd_log = (tmp_path / "logs" / "etcd.log").read_text()
    assert etcd_log  # etcd did start ...
    assert c.processes == {}  # ... and was stopped
    assert processes_mentioning(str(tmp_path)) == []


def test_components_die_with_a_killed_parent(tmp_path: pathlib.Path) -> None:
    script = (
        "import json, sys, time\n"
        "from toque.local import cluster\n"
        f"c = cluster.LocalCluster(workdir=__import__('pathlib').Path({str(tmp_path)!r}),"
        " nodes=cluster.KWOK_NODES)\n"
        "c.start()\n"
        "print(json.dumps([p.pid for p in c.processes.values()]), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    pids = json.loads(line)
    assert len(pids) == 5 and all(alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)  # no cleanup code runs
    parent.wait()
    assert wait_dead(pids) == []
