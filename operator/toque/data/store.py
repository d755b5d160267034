"""The versioned dataset store: push, pull, resolve, tag and list datasets in S3/MinIO.

The bucket (``TOQUE_DATA_BUCKET``, default ``toque-data``) is laid out as ``layout`` says:
content-addressed blobs shared by all datasets, immutable manifests per version, and tags.
Blobs and versions are only ever created, never replaced (conditional writes); tags are the
one thing that moves, and each move is recorded first in the history. Called by the
``toque data`` CLI and by the trainer runtime (``DataStore.from_env().pull(ref, dest)``).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import pathlib
from collections.abc import Mapping, Sequence

import pydantic

from toque.data import config, errors, fetch, layout, manifest, parallel, s3, transfer


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A reference resolved to an existing version; ``ref`` is what was asked for."""

    name: str
    digest: str
    ref: str

    @property
    def pinned(self) -> str:
        return f"{self.name}@{self.digest}"


@dataclasses.dataclass(frozen=True)
class PushResult:
    """``ref`` is pinned; ``reused`` means the version existed and nothing was uploaded."""

    ref: str
    uploaded_bytes: int
    uploaded_files: int
    reused: bool
    manifest: manifest.Manifest
    tags_moved: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One stored version of a dataset, with the tags that point at it now."""

    digest: str
    stored: datetime.datetime
    tags: tuple[str, ...]


class TagRecord(pydantic.BaseModel):
    """A tag's current target, and each entry of its history."""

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")

    name: str
    tag: str
    digest: str
    updated: str
    by: str
    previous: str | None = None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class DataStore:
    """Datasets in one bucket. ``progress`` draws tqdm bars on stderr (CLI on a TTY)."""

    def __init__(
        self,
        settings: config.StoreConfig,
        *,
        progress: bool = False,
        bucket: s3.Bucket | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.bucket = bucket or s3.Bucket(settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, progress: bool = False) -> DataStore:
        return cls(config.StoreConfig.from_env(env), progress=progress)

    # -- reading ---------------------------------------------------------------------------

    def resolve(self, ref: str) -> Resolved:
        parsed = manifest.parse_ref(ref)
        if parsed.digest:
            if not self.bucket.exists(layout.version_key(parsed.name, parsed.digest)):
                raise errors.DatasetNotFound(self._missing(parsed.name, f"version {parsed}"))
            return Resolved(parsed.name, parsed.digest, ref)
        assert parsed.tag is not None
        record = self._tag(parsed.name, parsed.tag)
        if record is None:
            raise errors.DatasetNotFound(self._missing(parsed.name, f"tag {parsed}"))
        return Resolved(parsed.name, record.digest, ref)

    def show(self, ref: str) -> manifest.Manifest:
        parsed = manifest.parse_ref(ref)
        # A pinned ref needs no resolving: the GET below says whether the version exists.
        resolved = Resolved(parsed.name, parsed.digest, ref) if parsed.digest else self.resolve(ref)
        key = layout.version_key(resolved.name, resolved.digest)
        data = self.bucket.get(key)
        if data is None:
            raise errors.DatasetNotFound(self._missing(resolved.name, f"version {resolved.pinned}"))
        try:
            found = manifest.Manifest.from_json(data)
        except pydantic.ValidationError as exc:
            raise errors.CorruptedObject(f"manifest {key} is unreadable: {exc}") from exc
        # The key is the content digest: a manifest that disagrees with it was tampered with.
        if found.name != resolved.name or manifest.content_digest(found.files) != resolved.digest:
            raise errors.CorruptedObject(f"manifest {key} does not match its digest")
        return found

    def pull(self, ref: str, dest: pathlib.Path) -> manifest.Manifest:
        """Download a version into the directory ``dest``, verifying every file's SHA-256."""
        found = self.show(ref)
        if dest.exists() and not dest.is_dir():
            raise errors.InvalidInput(f"cannot pull into {dest}: it is not a directory")
        dest.mkdir(parents=True, exist_ok=True)
        with parallel.Progress(found.size, f"pull {found.name}", self.progress) as bar:
            fetch.download_all(self.bucket, found.files, dest, bar)
        return found

    def datasets(self) -> list[str]:
        return sorted(self.bucket.folders(layout.DATASETS))

    def versions(self, name: str) -> list[VersionInfo]:
        manifest.check_name(name)
        tagged: dict[str, list[str]] = {}
        for record in self.tags(name):
            tagged.setdefault(record.digest, []).append(record.tag)
        prefix = layout.versions_prefix(name)
        found = []
        for item in self.bucket.keys(prefix):
            digest = manifest.DIGEST_PREFIX + item["Key"][len(prefix) :].removesuffix(".json")
            stored = item["LastModified"]
            found.append(VersionInfo(digest, stored, tuple(sorted(tagged.get(digest, [])))))
        if not found:
            raise errors.DatasetNotFound(f"no dataset named {name!r} in {self.bucket.where}")
        return sorted(found, key=lambda v: v.stored)

    def tags(self, name: str) -> list[TagRecord]:
        prefix = layout.tags_prefix(name)
        records = []
        for item in self.bucket.keys(prefix):
            tag = item["Key"][len(prefix) :].removesuffix(".json")
            record = self._tag(name, tag)
            if record is not None:
                records.append(record)
        return records

    def tag_history(self, name: str, tag: str) -> list[TagRecord]:
        """Every assignment of ``name:tag``, oldest first (keys sort by time)."""
        manifest.check_name(name)
        manifest.check_tag(tag)
        history = []
        for item in self.bucket.keys(layout.history_prefix(name, tag)):
            data = self.bucket.get(item["Key"])
            if data is not None:
                history.append(TagRecord.model_validate_json(data))
        return history

    # -- writing ---------------------------------------------------------------------------

    def push(
        self, path: pathlib.Path, name: str, tags: Sequence[str] = (manifest.DEFAULT_TAG,)
    ) -> PushResult:
        """Store ``path`` (a file or a directory) as a version of ``name`` and move ``tags``."""
        manifest.check_name(name)
        tags = [manifest.check_tag(t) for t in dict.fromkeys(tags)]
        files = manifest.scan(path)
        # Fail on an unreachable store before spending minutes hashing.
        self.bucket.ensure()
        total = sum(f.size for f in files)
        with parallel.Progress(total, "hash", self.progress) as bar:
            hashed = transfer.hash_all(files, self.settings.workers, bar)
        built = manifest.build(
            name, [h.entry for h in hashed], [h.table for h in hashed if h.table is not None]
        )
        key = layout.version_key(name, built.digest)
        reused = self.bucket.exists(key)
        uploaded = transfer.Uploaded(0, 0, {})
        created = False
        if not reused:
            with parallel.Progress(total, f"push {name}", self.progress) as bar:
                uploaded = transfer.upload(self.bucket, hashed, bar)
            built = built.model_copy(update={"files": tuple(map(uploaded.place, built.files))})
            body = built.to_json()
            # Written last: a version is visible only once every blob it names is stored.
            created = self.bucket.put_new(key, body, sha256=hashlib.sha256(body).digest())
        # Someone else's manifest of the same content (an earlier or racing push) stays.
        stored = built if created else self.show(built.ref)
        moved = tuple(t for t in tags if self._set_tag(name, t, built.digest, built.creator))
        return PushResult(built.ref, uploaded.bytes, uploaded.files, reused, stored, moved)

    def tag(self, ref: str, tag: str) -> Resolved:
        """Point ``NAME:tag`` at the version ``ref`` resolves to (recorded in the history)."""
        manifest.check_tag(tag)
        resolved = self.resolve(ref)
        self._set_tag(resolved.name, tag, resolved.digest, manifest.default_creator())
        return Resolved(resolved.name, resolved.digest, f"{resolved.name}:{tag}")

    # -- internals -------------------------------------------------------------------------

    def _tag(self, name: str, tag: str) -> TagRecord | None:
        data = self.bucket.get(layout.tag_key(name, tag))
        if data is None:
            return None
        try:
            return TagRecord.model_validate_json(data)
        except pydantic.ValidationError as exc:
            raise errors.CorruptedObject(f"tag {layout.tag_key(name, tag)} is unreadable") from exc

    def _set_tag(self, name: str, tag: str, digest: str, by: str) -> bool:
        current = self._tag(name, tag)
        if current is not None and current.digest == digest:
            return False
        now = _now()
        record = TagRecord(
            name=name,
            tag=tag,
            digest=digest,
            updated=now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            by=by,
            previous=current.digest if current else None,
        )
        body = record.model_dump_json(indent=2).encode()
        # History first: a pointer never moves without a record of it.
        stamp = now.strftime("%Y%m%dT%H%M%S.%fZ")
        self.bucket.put_new(layout.history_key(name, tag, stamp, digest), body)
        self.bucket.put(layout.tag_key(name, tag), body)
        return True

    def _missing(self, name: str, what: str) -> str:
        if not self.bucket.folders(f"{layout.DATASETS}{name}/"):
            return f"no dataset named {name!r} in {self.bucket.where}"
        return f"no {what} in {self.bucket.where}"
