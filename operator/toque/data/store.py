"""The versioned dataset store: push, pull, resolve, tag and list datasets in S3/MinIO.

The bucket (``TOQUE_DATA_BUCKET``, default ``toque-data``) is laid out as ``layout`` says:
content-addressed blobs shared by all datasets, immutable manifests per version, and tags.
Blobs and versions are only ever created, never replaced (conditional writes), except that a
push writes again what it finds damaged; tags are the one thing that moves, and each move is
recorded first in the history. On a bucket with versioning and Object Lock the server keeps
every object version, and manifests pin the versions of their blobs; ``verify`` re-hashes
what is stored. Called by the ``toque data`` CLI and by the trainer runtime
(``DataStore.from_env().pull(ref, dest)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import pathlib
from collections.abc import Mapping, Sequence

import pydantic

from toque.data import config, errors, fetch, layout, manifest, parallel, s3, transfer, verify


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
    """``ref`` is pinned; ``reused`` means the version existed already.

    ``repaired`` names each stored object that was damaged (or gone) and was written again
    from the pushed files, with what was wrong with it.
    """

    ref: str
    uploaded_bytes: int
    uploaded_files: int
    reused: bool
    manifest: manifest.Manifest
    tags_moved: tuple[str, ...] = ()
    repaired: tuple[tuple[str, str], ...] = ()
    protection: s3.Protection | None = None


@dataclasses.dataclass(frozen=True)
class Damage:
    """One stored blob that readers cannot use, or whose key was overwritten."""

    key: str
    problem: str
    # The versions (``name@sha256:…``) that read it, with the paths it holds for each.
    breaks: tuple[tuple[str, tuple[str, ...]], ...]
    # False when readers are unaffected: they pin an intact version, only the key's
    # newest version was replaced.
    breaks_reads: bool = True
    intact_version: str | None = None


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    protection: s3.Protection
    versions: tuple[str, ...]
    blobs: int
    bytes: int
    damaged: tuple[Damage, ...]
    # Versions whose manifest itself is unreadable or disagrees with its digest.
    broken_manifests: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.broken_manifests


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
            return self._check_manifest(resolved, key, data)
        except errors.CorruptedObject as damaged:
            # On a versioned bucket the manifest as it was written is still there.
            for older in self.bucket.versions(key)[1:]:
                if older.deleted:
                    continue
                with contextlib.suppress(errors.CorruptedObject):
                    return self._check_manifest(
                        resolved, key, self.bucket.get(key, older.version) or b""
                    )
            raise damaged

    def _check_manifest(self, resolved: Resolved, key: str, data: bytes) -> manifest.Manifest:
        try:
            found = manifest.Manifest.from_json(data)
        except pydantic.ValidationError as exc:
            raise errors.CorruptedObject(
                f"manifest {key} is unreadable ({exc.error_count()} errors); "
                "pushing the same files again repairs it"
            ) from exc
        # The key is the content digest: a manifest that disagrees with it was tampered with.
        if found.name != resolved.name or manifest.content_digest(found.files) != resolved.digest:
            raise errors.CorruptedObject(
                f"manifest {key} does not match its digest; pushing the same files again repairs it"
            )
        return found

    def pull(self, ref: str, dest: pathlib.Path) -> manifest.Manifest:
        """Download a version into the directory ``dest``, verifying every file's SHA-256."""
        found = self.show(ref)
        if dest.exists() and not dest.is_dir():
            raise errors.InvalidInput(f"cannot pull into {dest}: it is not a directory")
        dest.mkdir(parents=True, exist_ok=True)
        with parallel.Progress(found.size, f"pull {found.name}", self.progress) as bar:
            fetch.download_all(self.bucket, found.files, dest, bar, found.blob_versions)
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
            digest = manifest.DIGEST_PREFIX + item.key[len(prefix) :].removesuffix(".json")
            stored = item.modified
            found.append(VersionInfo(digest, stored, tuple(sorted(tagged.get(digest, [])))))
        if not found:
            raise errors.DatasetNotFound(f"no dataset named {name!r} in {self.bucket.where}")
        return sorted(found, key=lambda v: v.stored)

    def tags(self, name: str) -> list[TagRecord]:
        prefix = layout.tags_prefix(name)
        records = []
        for item in self.bucket.keys(prefix):
            tag = item.key[len(prefix) :].removesuffix(".json")
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
            data = self.bucket.get(item.key)
            if data is not None:
                history.append(TagRecord.model_validate_json(data))
        return history

    # -- writing ---------------------------------------------------------------------------

    def push(
        self, path: pathlib.Path, name: str, tags: Sequence[str] = (manifest.DEFAULT_TAG,)
    ) -> PushResult:
        """Store ``path`` (a file or a directory) as a version of ``name`` and move ``tags``.

        Nothing stored is trusted for being there: every blob the version reads is checked,
        and one that is damaged or gone is written again from the local files (a repair),
        as is a damaged manifest.
        """
        manifest.check_name(name)
        tags = [manifest.check_tag(t) for t in dict.fromkeys(tags)]
        files = manifest.scan(path)
        # Fail on an unreachable store before spending minutes hashing.
        self.bucket.ensure()
        protection = self.bucket.protection()
        total = sum(f.size for f in files)
        with parallel.Progress(total, "hash", self.progress) as bar:
            hashed = transfer.hash_all(files, self.settings.workers, bar)
        built = manifest.build(
            name, [h.entry for h in hashed], [h.table for h in hashed if h.table is not None]
        )
        key = layout.version_key(name, built.digest)
        stored: manifest.Manifest | None = None
        broken: str | None = None
        if self.bucket.exists(key):
            try:
                stored = self.show(built.ref)
            except errors.CorruptedObject as exc:
                broken = str(exc)
        reused = stored is not None
        repaired: tuple[tuple[str, str], ...] = ()
        if stored is not None:
            with parallel.Progress(total, f"check {name}", self.progress) as bar:
                fixed = transfer.repair(self.bucket, stored, hashed, bar)
            repaired = tuple((layout.blob_key(sha), why) for sha, why in fixed.repaired)
            if fixed.versions:
                # A pinned version was damaged or gone: readers must pin the repaired one.
                pins = {**stored.blob_versions, **fixed.versions}
                stored = stored.model_copy(update={"blob_versions": pins})
                body = stored.to_json()
                self.bucket.replace(key, body, content_type="application/json")
                repaired += ((key, "it pinned blob versions that are damaged or gone"),)
            uploaded = fixed
        else:
            with parallel.Progress(total, f"push {name}", self.progress) as bar:
                uploaded = transfer.upload(self.bucket, hashed, bar)
            repaired = tuple((layout.blob_key(sha), why) for sha, why in uploaded.repaired)
            built = built.model_copy(
                update={
                    "files": tuple(map(uploaded.place, built.files)),
                    "blob_versions": {
                        sha: v for sha, v in uploaded.versions.items() if protection.versioned
                    },
                }
            )
            body = built.to_json()
            # Written last: a version is visible only once every blob it names is stored.
            if broken is not None:
                self.bucket.replace(key, body, content_type="application/json")
                repaired += ((key, broken),)
                stored = built
            elif self.bucket.put_new(key, body) is not None:
                stored = built
            else:
                # Someone else's manifest of the same content (a racing push) stays.
                stored = self.show(built.ref)
        moved = tuple(t for t in tags if self._set_tag(name, t, built.digest, built.creator))
        return PushResult(
            built.ref, uploaded.bytes, uploaded.files, reused, stored, moved, repaired, protection
        )

    def verify(self, ref: str | None = None, progress: bool = False) -> VerifyReport:
        """Re-hash every blob the selected versions read; report the damaged ones.

        ``ref`` selects one version (``NAME:TAG``, ``NAME@sha256:…``), every version of a
        dataset (``NAME``), or, when None, every version in the store.
        """
        protection = self.bucket.protection()
        refs: list[str] = []
        if ref is None:
            for name in self.datasets():
                refs += [f"{name}@{v.digest}" for v in self.versions(name)]
        elif "@" in ref or ":" in ref:
            refs.append(self.resolve(ref).pinned)
        else:
            refs += [f"{ref}@{v.digest}" for v in self.versions(ref)]
        readers: dict[tuple[str, str | None], dict[str, list[str]]] = {}
        sizes: dict[str, int] = {}
        broken: list[tuple[str, str]] = []
        for pinned in refs:
            try:
                found = self.show(pinned)
            except errors.CorruptedObject as exc:
                broken.append((pinned, str(exc)))
                continue
            sizes.update(found.blobs())
            for entry in found.files:
                pin = found.blob_versions.get(entry.blob_sha256)
                paths = readers.setdefault((entry.blob_sha256, pin), {}).setdefault(pinned, [])
                paths.append(entry.path)
        total = sum(sizes[sha] for sha, _ in readers)

        def one(blob: tuple[str, str | None]) -> verify.BlobState:
            state = verify.check(self.bucket, blob[0], sizes[blob[0]], blob[1], thorough=True)
            bar(state.size)
            if state.read is not None and protection.versioned:
                found = verify.find_intact(self.bucket, state.sha, state.size)
                state = dataclasses.replace(state, intact_version=found)
            return state

        with parallel.Progress(total, "verify", progress) as bar:
            states = parallel.run_all(one, sorted(readers, key=str), self.settings.workers)
        damaged = []
        for state in states:
            if state.read is None and state.current is None:
                continue
            users = readers[(state.sha, state.pin)]
            damaged.append(
                Damage(
                    layout.blob_key(state.sha),
                    state.read or f"its newest version is damaged: {state.current}",
                    tuple((r, tuple(sorted(paths))) for r, paths in sorted(users.items())),
                    state.read is not None,
                    state.intact_version,
                )
            )
        return VerifyReport(
            protection, tuple(refs), len(states), total, tuple(damaged), tuple(broken)
        )

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
