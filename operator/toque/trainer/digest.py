"""Digest of a model artifact directory: what the serving side verifies before it loads."""

from __future__ import annotations

import hashlib
import pathlib

CHUNK = 8 << 20


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(root: pathlib.Path) -> str:
    """``sha256:`` over the sorted (relative path, file sha256) pairs of a directory."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        lines.append(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()
