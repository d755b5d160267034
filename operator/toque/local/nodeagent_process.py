"""Local processes for the test node agent: start one tied to the agent, signal its process
group, read its output back, probe it, and give each pod its own address.

Called by ``nodeagent_pod.PodWorker`` (one thread per pod) for each container it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pathlib
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

LOG = logging.getLogger("toque.nodeagent")
_PR_SET_PDEATHSIG = 1


def _load_libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded once here: loading a library between fork and exec in a threaded process can hang.
_LIBC = _load_libc()


def _die_with_agent() -> None:
    # PDEATHSIG fires when the *thread* that forked exits; each worker thread outlives the
    # processes it starts, and all of them die when the agent does, even on SIGKILL.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str], env: dict[str, str], cwd: pathlib.Path, log: pathlib.Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its pid is its process group), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_agent,
        )


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def exit_code(returncode: int) -> int:
    """Popen's -N for "killed by signal N" as a container runtime reports it: 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def read_tail(path: pathlib.Path, offset: int, limit: int) -> bytes:
    """At most the last ``limit`` bytes of ``path`` after ``offset`` (this run's output)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, size - limit))
            return handle.read()
    except OSError:
        return b""


class IPAllocator:
    """Hands out pod addresses, never the same one twice in a run.

    Kubernetes refuses loopback addresses in EndpointSlices, so Services would have no
    endpoints with 127.x pod IPs. When the agent may add addresses to ``lo`` (root or
    CAP_NET_ADMIN), pods get /32 addresses from a random /16 of 10.64.0.0/10, routed
    locally like any address of this host, and removed again by ``release_all``. Otherwise
    it falls back to 127.1.0.1 upward and says once that Services will have no endpoints.
    """

    def __init__(self, routable: bool = True, second_octet: int | None = None) -> None:
        self._loopback_next = (127 << 24) | (1 << 16) | 1
        # A random start, so agents running side by side (tests beside `make up`) rarely meet.
        octet = second_octet if second_octet is not None else random.randint(64, 127)
        third = 0 if second_octet is not None else random.randint(0, 255)
        self._routable_next = (10 << 24) | (octet << 16) | (third << 8) | 1
        self._routable = routable and shutil.which("ip") is not None
        self._added: list[str] = []
        self._lock = threading.Lock()
        if self._routable:
            reap_dead_agents()

    @staticmethod
    def _text(value: int) -> str:
        return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))

    @staticmethod
    def _step(value: int) -> int:
        while value & 0xFF in (0, 255):
            value += 1
        return value

    def allocate(self) -> str:
        with self._lock:
            for _ in range(1024) if self._routable else ():
                self._routable_next = self._step(self._routable_next)
                address = self._text(self._routable_next)
                self._routable_next += 1
                added = self._add(address)
                if added:
                    self._added.append(address)
                    return address
                if added is None:
                    break
            self._loopback_next = self._step(self._loopback_next)
            if self._loopback_next >= (128 << 24):
                raise RuntimeError("the node agent ran out of 127.x addresses")
            value, self._loopback_next = self._loopback_next, self._loopback_next + 1
        return self._text(value)

    def _add(self, address: str) -> bool | None:
        """True when added; False when it is already there (another agent's, or one a
        killed agent left behind: not ours to share); None when we may not add any."""
        done = subprocess.run(
            ["ip", "address", "add", f"{address}/32", "dev", "lo"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            with (ADDRESS_RECORDS / str(os.getpid())).open("a") as record:
                record.write(address + "\n")
            return True
        if "exists" in done.stderr or "already assigned" in done.stderr:
            return False
        LOG.warning(
            "cannot add pod addresses to lo (%s); using 127.x pod IPs, which Kubernetes "
            "keeps out of EndpointSlices, so Services will have no endpoints",
            done.stderr.strip(),
        )
        self._routable = False
        return None

    def release_all(self) -> None:
        with self._lock:
            added, self._added = self._added, []
        _delete(added)
        (ADDRESS_RECORDS / str(os.getpid())).unlink(missing_ok=True)


# Each agent lists the addresses it added under its pid, so the next agent removes those of
# an agent that was killed before it could (SIGKILL, its parent killed).
ADDRESS_RECORDS = pathlib.Path(tempfile.gettempdir()) / "toque-pod-addresses"


def _delete(addresses: Sequence[str]) -> None:
    for address in addresses:
        subprocess.run(
            ["ip", "address", "del", f"{address}/32", "dev", "lo"],
            capture_output=True,
            check=False,
        )


def reap_dead_agents() -> None:
    ADDRESS_RECORDS.mkdir(exist_ok=True)
    for record in ADDRESS_RECORDS.iterdir():
        try:
            os.kill(int(record.name), 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        _delete(record.read_text().split())
        record.unlink(missing_ok=True)


def container_port(port: int | str, container: dict[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"no container port named {port!r}")


def probe(
    spec: dict[str, Any],
    container: dict[str, Any],
    pod_ip: str,
    env: dict[str, str],
    cwd: pathlib.Path,
) -> bool:
    """One try of an httpGet, tcpSocket or exec probe; other kinds (gRPC) count as failing."""
    timeout = float(spec.get("timeoutSeconds", 1))
    try:
        if "httpGet" in spec:
            http = spec["httpGet"]
            scheme = str(http.get("scheme", "HTTP")).lower()
            host = http.get("host") or pod_ip
            port = container_port(http["port"], container)
            url = f"{scheme}://{host}:{port}{http.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in http.get("httpHeaders") or []}
            request = urllib.request.Request(url, headers=headers)
            # The kubelet does not verify a probe's TLS certificate either.
            context = ssl._create_unverified_context() if scheme == "https" else None
            with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
                return bool(200 <= reply.status < 400)
        if "tcpSocket" in spec:
            tcp = spec["tcpSocket"]
            address = (tcp.get("host") or pod_ip, container_port(tcp["port"], container))
            with socket.create_connection(address, timeout=timeout):
                return True
        if "exec" in spec:
            result = subprocess.run(
                spec["exec"].get("command") or ["false"],
                env=env,
                cwd=cwd,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            return result.returncode == 0
    except (OSError, ValueError, urllib.error.URLError, subprocess.TimeoutExpired):
        return False
    LOG.warning("unsupported probe %s counts as failing", sorted(spec))
    return False
