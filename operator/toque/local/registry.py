"""The local image registry (Debian's ``docker-registry``, the CNCF distribution server) and
the images the real node pulls from it: the pause image built here from our pause program,
and Toque's image built by ``hack/build-image.sh``.

The registry listens on loopback only and speaks plain HTTP: containerd, on the same host,
pulls from it through a hosts.toml that says so (``node.registry_hosts``). Layers are pushed
uncompressed: gzip of a 1 GB image costs a core for half a minute and saves nothing on
loopback.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import yaml

from toque.local import processes

PAUSE_IMAGE = "localhost/toque-pause:v1"


class RegistryError(RuntimeError):
    """The registry did not start, or an image could not be built or pushed."""


def _run(*argv: str, timeout: float = 900) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RegistryError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


class Registry:
    """``docker-registry serve`` on 127.0.0.1 with its storage under ``workdir``."""

    def __init__(self, workdir: pathlib.Path, port: int, detached: bool = False) -> None:
        self.workdir = workdir
        self.port = port
        self.detached = detached
        self.process: processes.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RegistryError(
                "docker-registry is missing (Debian package docker-registry); "
                "run `bash hack/node-deps.sh`"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")}},
            "http": {"addr": self.address},
        }
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(config))
        self.process = processes.Process(
            "registry",
            [binary, "serve", str(path)],
            self.workdir / "registry.log",
            die_with_parent=not self.detached,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if not self.process.alive() or time.monotonic() > deadline:
                    raise RegistryError(
                        f"the registry did not answer on {self.address}:\n{self.process.tail()}"
                    ) from None
                time.sleep(0.2)

    def push(self, local_image: str, name: str) -> str:
        """Push a podman/buildah image as ``name`` (``repo:tag``); returns the reference the
        node pulls."""
        target = f"{self.address}/{name}"
        _run(
            "buildah",
            "push",
            "--quiet",
            "--tls-verify=false",
            "--disable-compression",
            local_image,
            f"docker://{target}",
        )
        return target

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        shutil.rmtree(self.workdir / "data", ignore_errors=True)


def build_pause_image(pause_binary: pathlib.Path) -> str:
    """A scratch image holding only the pause program (built by hack/build-tools.sh)."""
    if _run("podman", "images", "-q", PAUSE_IMAGE).strip():
        return PAUSE_IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        context = pathlib.Path(tmp)
        shutil.copy2(pause_binary, context / "pause")
        (context / "Containerfile").write_text(
            'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
        )
        _run("buildah", "bud", "--quiet", "-t", PAUSE_IMAGE, str(context))
    return PAUSE_IMAGE


def build_toque_image(repo_root: pathlib.Path) -> str:
    """Toque's image from the repository's Dockerfile (cached by content); its local name."""
    out = _run("bash", str(repo_root / "hack" / "build-image.sh"), timeout=3600)
    return out.strip().splitlines()[-1]
