"""Code revision of the user's training code, recorded as an MLflow tag and in status."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess

# At the root of a code snapshot (``toque code push``): the git revision it was taken at.
REVISION_FILE = ".toque-revision"


def code_revision(module_file: pathlib.Path | None) -> str | None:
    """TOQUE_CODE_REVISION, else the git commit of the module's checkout, else its hash."""
    explicit = os.environ.get("TOQUE_CODE_REVISION")
    if explicit:
        return explicit
    if module_file is None:
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(module_file.parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(module_file.parent), "status", "--porcelain", "--", str(module_file)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"git:{head}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        source = module_file.read_bytes() if module_file.exists() else b""
        return "file:sha256:" + hashlib.sha256(source).hexdigest()[:16]
