"""Digest of a model artifact directory: the trainer records it, the model server checks it."""

from __future__ import annotations

import hashlib
import pathlib

CHUNK = 8 << 20
# MLflow writes this next to every model it downloads through a models:/ URI (a registry
# version or a logged model); its content names the URI, so it is not part of the model.
CLIENT_SIDE_FILES = frozenset({"registered_model_meta"})


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(root: pathlib.Path, exclude: frozenset[str] = frozenset()) -> str:
    """``sha256:`` over the sorted (relative path, file sha256) pairs of a directory,
    leaving out top-level files named in ``exclude``."""
    lines = []
    files = (p for p in root.rglob("*") if p.is_file())
    for path in sorted(p for p in files if p.relative_to(root).as_posix() not in exclude):
        lines.append(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def model_digest(root: pathlib.Path) -> str:
    """The digest of a downloaded MLflow model: the trainer records it, the server checks it."""
    return tree_digest(root, exclude=CLIENT_SIDE_FILES)
