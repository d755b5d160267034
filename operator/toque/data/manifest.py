"""Dataset manifests, references and content digests: the pure half of the dataset store.

A manifest lists a version's files (relative path, size, sha256) with the tabular schema and
row count of its CSV and Parquet files, and who made it when. The version digest covers only
the content (sorted paths, sizes and file hashes), so the same bytes pushed twice, by anyone,
from any checkout, get the same ``name@sha256:…`` reference. Nothing here talks to S3; the
only I/O is reading local files to hash them. Called by ``toque.data.store`` (push, pull,
show), ``toque.data.diff`` and the CLI.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import hashlib
import json
import os
import pathlib
import re
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import pydantic

import toque
from toque.data import errors

CHUNK = 8 * 1024 * 1024
DIGEST_PREFIX = "sha256:"
DEFAULT_TAG = "latest"
# Names and tags become S3 key segments: keep them to characters that need no escaping.
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
HEX_RE = re.compile(r"^[0-9a-f]{64}$")


class _Model(pydantic.BaseModel):
    # extra="ignore": a newer toque may add fields, and older readers must still pull.
    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")


class FileEntry(_Model):
    path: str = pydantic.Field(description="POSIX path relative to the dataset root")
    size: int = pydantic.Field(ge=0)
    sha256: str = pydantic.Field(pattern=HEX_RE.pattern)
    # Where the bytes are stored; not part of the version digest. A small file lives at
    # ``offset`` inside a pack blob; otherwise its blob is its own sha256.
    blob: str | None = pydantic.Field(None, pattern=HEX_RE.pattern)
    offset: int = pydantic.Field(0, ge=0)

    @property
    def blob_sha256(self) -> str:
        return self.blob or self.sha256

    @property
    def content(self) -> tuple[str, int, str]:
        return (self.path, self.size, self.sha256)


class Column(_Model):
    name: str
    dtype: str = pydantic.Field(description="pandas dtype, e.g. int64, float64, object")
    kind: Literal["numeric", "categorical"]


class Table(_Model):
    path: str
    rows: int = pydantic.Field(ge=0)
    columns: tuple[Column, ...]


class Manifest(_Model):
    schema_version: int = 1
    name: str
    digest: str = pydantic.Field(pattern=r"^sha256:[0-9a-f]{64}$")
    files: tuple[FileEntry, ...]
    tables: tuple[Table, ...] = ()
    rows: int | None = pydantic.Field(None, description="total rows over all tables")
    size: int
    creator: str
    created: str = pydantic.Field(description="UTC, ISO 8601")
    toque_version: str
    # On a versioned bucket, the S3 VersionId of each blob (by its sha256) as this version
    # stored or found it intact: reads ask for exactly that object version, so a later
    # overwrite of the key neither changes nor breaks them. Not part of the digest.
    blob_versions: dict[str, str] = pydantic.Field(default_factory=dict)

    def blobs(self) -> dict[str, int]:
        """Each blob this version reads (sha256 -> its size in bytes)."""
        sizes: dict[str, int] = {}
        for f in self.files:
            sizes[f.blob_sha256] = max(sizes.get(f.blob_sha256, 0), f.offset + f.size)
        return sizes

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.digest}"

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        return cls.model_validate_json(data)


@dataclasses.dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``digest`` (pinned) or ``tag`` is set."""

    name: str
    digest: str | None = None
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:{self.tag}"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise errors.InvalidInput(
            f"invalid dataset name {name!r}: use lowercase letters, digits, '.', '_', '-' "
            "(starting and ending with a letter or digit, at most 128 characters)"
        )
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag) or tag.startswith("sha256"):
        raise errors.InvalidInput(
            f"invalid tag {tag!r}: use letters, digits, '.', '_', '-' (at most 128), "
            "not starting with 'sha256'"
        )
    return tag


def parse_ref(text: str) -> Ref:
    """``NAME@sha256:HEX`` (pinned), ``NAME:TAG``, or ``NAME`` (meaning ``NAME:latest``)."""
    if "@" in text:
        name, digest = text.split("@", 1)
        if not (digest.startswith(DIGEST_PREFIX) and HEX_RE.match(digest[len(DIGEST_PREFIX) :])):
            raise errors.InvalidInput(
                f"invalid reference {text!r}: expected NAME@sha256:<64 lowercase hex digits>"
            )
        return Ref(check_name(name), digest=digest)
    name, sep, tag = text.partition(":")
    return Ref(check_name(name), tag=check_tag(tag) if sep else DEFAULT_TAG)


@dataclasses.dataclass(frozen=True)
class LocalFile:
    """A file to push: where it is on disk and the path it gets inside the dataset."""

    path: str
    source: pathlib.Path
    size: int


def scan(root: pathlib.Path) -> list[LocalFile]:
    """The files under ``root`` (or ``root`` itself), sorted by dataset path.

    Symlinks to files count as their target's content; symlinked directories are not
    followed, so a link loop cannot make a push run forever.
    """
    if root.is_file():
        return [LocalFile(root.name, root, root.stat().st_size)]
    if not root.is_dir():
        raise errors.InvalidInput(f"cannot push {root}: no such file or directory")
    found: list[LocalFile] = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            source = pathlib.Path(directory, name)
            try:
                info = source.stat()
            except FileNotFoundError as exc:
                raise errors.InvalidInput(f"cannot push {source}: dangling symlink") from exc
            if not stat.S_ISREG(info.st_mode):
                raise errors.InvalidInput(f"cannot push {source}: not a regular file")
            found.append(LocalFile(source.relative_to(root).as_posix(), source, info.st_size))
    if not found:
        raise errors.InvalidInput(f"cannot push {root}: the directory has no files")
    return sorted(found, key=lambda f: f.path)


def hash_file(source: pathlib.Path, chunk: int = CHUNK) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in large chunks into one reused buffer.

    hashlib releases the GIL on big updates, so callers hash many files in threads.
    """
    with source.open("rb", buffering=0) as handle:
        if os.fstat(handle.fileno()).st_size <= chunk:
            # Small file: one read, no big buffer to allocate per file.
            data = handle.read()
            return len(data), hashlib.sha256(data).hexdigest()
        digest = hashlib.sha256()
        size = 0
        view = memoryview(bytearray(chunk))
        while count := handle.readinto(view):
            digest.update(view[:count])
            size += count
    return size, digest.hexdigest()


def content_digest(files: Iterable[FileEntry]) -> str:
    """``sha256:…`` of the canonical JSON of sorted (path, size, sha256): content only."""
    canonical = json.dumps(
        {
            "files": [
                {"path": f.path, "sha256": f.sha256, "size": f.size}
                for f in sorted(files, key=lambda f: f.path)
            ]
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return DIGEST_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


def default_creator(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("TOQUE_USER"):
        return env["TOQUE_USER"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def build(
    name: str,
    files: Sequence[FileEntry],
    tables: Sequence[Table] = (),
    *,
    creator: str | None = None,
    now: datetime.datetime | None = None,
) -> Manifest:
    """The manifest of a new version; ``now`` and ``creator`` are injectable for tests."""
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise errors.InvalidInput("a dataset cannot hold two files with the same path")
    now = now or datetime.datetime.now(datetime.UTC)
    ordered = sorted(files, key=lambda f: f.path)
    return Manifest(
        name=check_name(name),
        digest=content_digest(ordered),
        files=tuple(ordered),
        tables=tuple(sorted(tables, key=lambda t: t.path)),
        rows=sum(t.rows for t in tables) if tables else None,
        size=sum(f.size for f in ordered),
        creator=creator or default_creator(),
        created=now.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        toque_version=toque.__version__,
    )
