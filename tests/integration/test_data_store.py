"""The dataset store against a real MinIO: round trips, immutability, tags, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from toque.data import config, errors, layout, manifest, multipart, parallel, store, transfer
from toque.data import s3 as store_s3
from toque.local import cluster as local
from toque.local import services

BIG = 11 * 1024 * 1024  # three parts at the 5 MiB minimum part size


@pytest.fixture
def settings(minio: services.Minio) -> config.StoreConfig:
    # A fresh bucket per test: object counts and listings see only this test's writes. It is
    # a plain one (no versioning, no Object Lock), as a user may have; test_data_integrity
    # covers locked buckets.
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    minio.create_bucket(bucket)
    return config.StoreConfig(
        endpoint=minio.endpoint,
        access_key=minio.access_key,
        secret_key=minio.secret_key,
        bucket=bucket,
        multipart_threshold=5 * 1024 * 1024,
        part_size=5 * 1024 * 1024,
        workers=8,
    )


@pytest.fixture
def data(settings: config.StoreConfig) -> store.DataStore:
    return store.DataStore(settings)


@pytest.fixture
def s3(minio: services.Minio) -> Any:
    return boto3.client(
        "s3", endpoint_url=minio.endpoint, aws_access_key_id=minio.access_key,
        aws_secret_access_key=minio.secret_key, region_name="us-east-1",
    )  # fmt: skip


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "src"
    (root / "train").mkdir(parents=True)
    (root / "train" / "data.csv").write_text("age,city\n31,Oslo\n45,Lima\n27,Oslo\n")
    (root / "train" / "empty.txt").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(BIG))
    (root / "copy.bin").write_bytes((root / "big.bin").read_bytes())  # same blob twice
    return root


def objects(s3: Any, bucket: str) -> dict[str, tuple[str, Any]]:
    """Key -> (ETag, LastModified) of every object in the bucket."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = (item["ETag"], item["LastModified"])
    return out


def same_files(a: pathlib.Path, b: pathlib.Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / p).read_bytes() == (b / p).read_bytes() for p in files_a)


def test_push_then_pull_round_trips_every_byte(
    data: store.DataStore, tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    result = data.push(tree, "iris")
    assert re.fullmatch(r"iris@sha256:[0-9a-f]{64}", result.ref)
    assert not result.reused
    # copy.bin has big.bin's bytes: stored once.
    assert result.uploaded_files == 3
    assert result.uploaded_bytes == BIG + len("age,city\n31,Oslo\n45,Lima\n27,Oslo\n")
    pulled = data.pull("iris", tmp_path / "out")
    assert pulled.ref == result.ref
    assert same_files(tree, tmp_path / "out")
    assert pulled.rows == 3
    assert [(c.name, c.kind) for c in pulled.tables[0].columns] == [
        ("age", "numeric"),
        ("city", "categorical"),
    ]
    assert data.resolve("iris:latest").pinned == result.ref
    assert data.show(result.ref) == pulled


def test_pushing_a_single_file(
    data: store.DataStore, tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    ref = data.push(tree / "train" / "data.csv", "one").ref
    data.pull(ref, tmp_path / "out")
    assert (tmp_path / "out" / "data.csv").read_bytes() == (
        tree / "train" / "data.csv"
    ).read_bytes()


def test_identical_push_is_a_no_op(
    data: store.DataStore, settings: config.StoreConfig, s3: Any, tree: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:  # fmt: skip
    first = data.push(tree, "iris")
    before = objects(s3, settings.bucket)
    # The same bytes elsewhere, with other mtimes, are the same version.
    clone = tmp_path / "clone"
    for source in tree.rglob("*"):
        if source.is_file():
            target = clone / source.relative_to(tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            os.utime(target, (1_000, 1_000))
    again = data.push(clone, "iris")
    assert again.ref == first.ref
    assert again.reused
    assert (again.uploaded_files, again.uploaded_bytes) == (0, 0)
    assert objects(s3, settings.bucket) == before


def test_a_new_version_uploads_only_new_files(
    settings: config.StoreConfig, tree: pathlib.Path
) -> None:
    unpacked = store.DataStore(dataclasses.replace(settings, pack_below=0))
    first = unpacked.push(tree, "iris")
    (tree / "train" / "more.csv").write_text("age,city\n50,Rome\n")
    second = unpacked.push(tree, "iris")
    assert second.ref != first.ref
    assert (second.uploaded_files, second.uploaded_bytes) == (1, len("age,city\n50,Rome\n"))
    assert second.manifest.rows == 4


def small_files(root: pathlib.Path, count: int) -> pathlib.Path:
    for index in range(count):
        target = root / f"shard-{index // 100}" / f"{index:04d}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(1000 + index))
    return root


def test_small_files_travel_in_few_packs_and_come_back_intact(
    data: store.DataStore, settings: config.StoreConfig, s3: Any, tmp_path: pathlib.Path
) -> None:
    source = small_files(tmp_path / "src", 400)
    result = data.push(source, "shards")
    assert result.uploaded_files == 400
    blobs = [k for k in objects(s3, settings.bucket) if k.startswith("blobs/")]
    assert 1 <= len(blobs) <= 10
    data.pull("shards", tmp_path / "out")
    assert same_files(source, tmp_path / "out")


def test_empty_files_packed_beside_others_come_back_intact(
    data: store.DataStore, tmp_path: pathlib.Path
) -> None:
    # A package's empty __init__.py shares its pack offset with the next file.
    source = tmp_path / "src"
    for name, body in (
        ("a/__init__.py", b""),
        ("a/b.py", b"X = 1\n"),
        ("a/c/__init__.py", b""),
        ("a/c/d.py", b"Y = 2\n"),
        ("z.txt", b""),
    ):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(body)
    data.push(source, "with-empty-files")
    data.pull("with-empty-files", tmp_path / "out")
    assert same_files(source, tmp_path / "out")


def test_editing_one_small_file_re_uploads_only_its_pack(
    settings: config.StoreConfig, tmp_path: pathlib.Path
) -> None:
    # Packs of about 20 KB: 400 files of ~1.2 KB make some 25 packs.
    data = store.DataStore(
        dataclasses.replace(settings, pack_below=10_000, pack_target=20_000, pack_limit=80_000)
    )
    source = small_files(tmp_path / "src", 400)
    total = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    first = data.push(source, "shards").manifest
    (source / "shard-2" / "0250.bin").write_bytes(b"edited")
    second = data.push(source, "shards")
    # A pack ends after a file chosen by that file's own hash, so the edit changes the pack
    # holding it and, when the edited file no longer ends that pack, the one after it; a
    # pack cut short by the 80 KB limit passes the change on to the next one too.
    ordered = sorted(first.files, key=lambda f: f.path)
    packs = list(dict.fromkeys(f.blob_sha256 for f in ordered))
    sizes = first.blobs()
    heads = {f.blob_sha256: f.size for f in reversed(ordered)}
    start = packs.index(next(f.blob_sha256 for f in ordered if f.path == "shard-2/0250.bin"))
    end = start + 1
    while end < len(packs) and (
        end == start + 1 or sizes[packs[end - 1]] + heads[packs[end]] > 80_000
    ):
        end += 1
    touched = packs[start:end]
    assert 1 <= second.uploaded_files < 100
    assert second.uploaded_bytes <= sum(sizes[p] for p in touched) < total / 2
    kept = set(sizes) - set(touched)
    assert kept <= set(second.manifest.blobs()), "an untouched pack was rewritten"
    data.pull("shards", tmp_path / "out")
    assert same_files(source, tmp_path / "out")


def test_versions_and_blobs_are_never_overwritten(
    data: store.DataStore, settings: config.StoreConfig, s3: Any, tree: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("TOQUE_USER", "alice")
    ref = data.push(tree, "iris").ref
    digest = ref.split("@")[1]
    key = layout.version_key("iris", digest)
    stored = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
    monkeypatch.setenv("TOQUE_USER", "bob")
    data.push(tree, "iris")
    assert data.show(ref).creator == "alice"
    # A writer racing past the existence check still cannot replace it.
    assert data.bucket.put_new(key, b"{}") is None
    with pytest.raises(errors.InvalidInput, match="immutable"):
        data.bucket.put(key, b"{}")
    blob = "blobs/sha256/" + data.show(ref).files[0].sha256
    original_blob = s3.get_object(Bucket=settings.bucket, Key=blob)["Body"].read()
    assert data.bucket.put_new(blob, b"other bytes") is None
    assert s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read() == stored
    assert s3.get_object(Bucket=settings.bucket, Key=blob)["Body"].read() == original_blob
    assert data.bucket.conditional  # MinIO honours If-None-Match: *


def test_tags_move_and_keep_their_history(data: store.DataStore, tree: pathlib.Path) -> None:
    v1 = data.push(tree, "iris", ["latest", "prod"]).ref
    (tree / "train" / "more.csv").write_text("age,city\n50,Rome\n")
    v2 = data.push(tree, "iris").ref
    assert data.resolve("iris").pinned == v2
    assert data.resolve("iris:prod").pinned == v1
    moved = data.tag(v2, "prod")
    assert (moved.ref, moved.pinned) == ("iris:prod", v2)
    assert data.resolve("iris:prod").pinned == v2
    history = data.tag_history("iris", "prod")
    assert [h.digest for h in history] == [v1.split("@")[1], v2.split("@")[1]]
    assert history[1].previous == v1.split("@")[1]
    assert [h.digest for h in data.tag_history("iris", "latest")] == [h.digest for h in history]
    versions = data.versions("iris")
    assert [(v.digest, v.tags) for v in versions] == [
        (v1.split("@")[1], ()),
        (v2.split("@")[1], ("latest", "prod")),
    ]
    assert data.datasets() == ["iris"]


def test_re_tagging_the_same_version_adds_no_history(
    data: store.DataStore, tree: pathlib.Path
) -> None:
    ref = data.push(tree, "iris").ref
    data.tag(ref, "latest")
    assert len(data.tag_history("iris", "latest")) == 1


def test_corrupted_blob_fails_the_pull_naming_the_file(
    data: store.DataStore, settings: config.StoreConfig, s3: Any, tree: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:  # fmt: skip
    found = data.show(data.push(tree, "iris").ref)
    entry = next(f for f in found.files if f.path == "train/data.csv")
    s3.put_object(Bucket=settings.bucket, Key=f"blobs/sha256/{entry.blob_sha256}", Body=b"a\n1\n")
    dest = tmp_path / "out"
    with pytest.raises(errors.CorruptedObject, match=r"train/data\.csv") as caught:
        data.pull("iris", dest)
    assert entry.sha256 in str(caught.value)
    assert not (dest / "train" / "data.csv").exists()
    assert not [p for p in dest.rglob("*") if p.name.endswith(".part")]


def test_missing_blob_is_a_corrupted_object(
    data: store.DataStore, settings: config.StoreConfig, s3: Any, tree: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:  # fmt: skip
    found = data.show(data.push(tree, "iris").ref)
    entry = next(f for f in found.files if f.path == "big.bin")
    s3.delete_object(Bucket=settings.bucket, Key=f"blobs/sha256/{entry.sha256}")
    with pytest.raises(errors.CorruptedObject, match=r"big\.bin.*missing"):
        data.pull(found.ref, tmp_path / "out")
    assert not (tmp_path / "out" / "big.bin").exists()


def test_pull_repairs_a_stale_local_copy(
    data: store.DataStore, tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    ref = data.push(tree, "iris").ref
    dest = tmp_path / "out"
    data.pull(ref, dest)
    (dest / "train" / "data.csv").write_text("age,city\n99,Kyiv\n11,Oslo\n27,Oslo\n")  # same size
    data.pull(ref, dest)
    assert same_files(tree, dest)


@pytest.mark.parametrize("ref", ["nope", "iris:nope", f"iris@sha256:{'0' * 64}"])
def test_unknown_dataset_tag_or_digest(
    data: store.DataStore, tree: pathlib.Path, ref: str, tmp_path: pathlib.Path
) -> None:
    data.push(tree, "iris")
    with pytest.raises(errors.DatasetNotFound, match=ref.split(":")[0].split("@")[0]):
        data.pull(ref, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_store_has_no_datasets(data: store.DataStore) -> None:
    assert data.datasets() == []
    with pytest.raises(errors.DatasetNotFound, match="no dataset named 'iris'"):
        data.versions("iris")


@pytest.fixture
def unreachable(settings: config.StoreConfig) -> Iterator[store.DataStore]:
    closed = local.free_port()  # nothing listens on it
    yield store.DataStore(
        dataclasses.replace(
            settings, endpoint=f"http://127.0.0.1:{closed}", connect_timeout=1, max_attempts=2
        )
    )


def test_unreachable_store_is_transient_and_fails_fast(
    unreachable: store.DataStore, tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    for call in (
        lambda: unreachable.push(tree, "iris"),
        lambda: unreachable.pull("iris", tmp_path),
    ):
        started = time.monotonic()
        with pytest.raises(errors.StoreUnavailable, match="cannot reach") as caught:
            call()
        assert caught.value.transient
        assert time.monotonic() - started < 10


def test_default_tag_and_pinned_ref_of_a_manifest(
    data: store.DataStore, tree: pathlib.Path
) -> None:
    ref = data.push(tree, "iris", ["v1"]).ref
    with pytest.raises(errors.DatasetNotFound):
        data.resolve("iris:latest")
    assert data.resolve("iris:v1").pinned == ref
    assert manifest.parse_ref(ref).digest == ref.split("@")[1]


@pytest.mark.parametrize("name", ["train/data.csv", "big.bin", "README"])
def test_a_file_edited_during_a_push_is_never_stored_under_its_old_digest(
    data: store.DataStore, settings: config.StoreConfig, s3: Any, tree: pathlib.Path, name: str
) -> None:
    (tree / "README").write_text("a file on its own: the only small one left when unpacked")
    data.bucket.ensure()
    hashed = transfer.hash_all(manifest.scan(tree), 4, parallel.silent())
    if name == "README":  # as a single blob rather than in a pack
        hashed = [h for h in hashed if h.entry.path == name]
    edited = next(h for h in hashed if h.entry.path == name)
    body = bytearray((tree / name).read_bytes())
    body[0] ^= 0xFF
    (tree / name).write_bytes(bytes(body))
    with pytest.raises(errors.InvalidInput, match=f"{name} changed while it was pushed"):
        transfer.upload(data.bucket, hashed, parallel.silent())
    stored = [k for k in objects(s3, settings.bucket) if k.startswith("blobs/")]
    assert f"blobs/sha256/{edited.entry.sha256}" not in stored
    # Whatever else did get stored is intact: every blob hashes to its key.
    for key in stored:
        body = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == key.rsplit("/", 1)[1]


def test_a_settled_big_file_replaced_during_a_push_is_not_stored(
    data: store.DataStore,
    settings: config.StoreConfig,
    s3: Any,
    tree: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Files older than SETTLED_NS are checked by fingerprint instead of a second hash.
    monkeypatch.setattr(multipart, "SETTLED_NS", 0)
    data.bucket.ensure()
    [big] = [h for h in transfer.hash_all(manifest.scan(tree), 4, parallel.silent())
             if h.entry.path == "big.bin"]  # fmt: skip
    assert big.before.settled
    replacement = tree / "big.new"
    replacement.write_bytes(os.urandom(BIG))
    replacement.replace(tree / "big.bin")  # an atomic save, as many editors and tools do
    with pytest.raises(errors.InvalidInput, match=r"big\.bin changed while it was pushed"):
        transfer.upload(data.bucket, [big], parallel.silent())
    assert not [k for k in objects(s3, settings.bucket) if k.startswith("blobs/")]


def test_a_multipart_upload_never_replaces_a_key_created_meanwhile(
    data: store.DataStore, settings: config.StoreConfig, s3: Any
) -> None:
    data.bucket.ensure()
    key = layout.blob_key("ab" * 32)
    upload = store_s3.Multipart(data.bucket, key, "a racing upload")
    etag = upload.part(1, b"ours")
    assert data.bucket.put_new(key, b"theirs") is not None
    assert upload.complete([etag]) is None
    upload.abort()
    assert s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read() == b"theirs"
    assert data.bucket.conditional  # MinIO honours If-None-Match: * on completion too


@pytest.mark.parametrize("name", ["train/data.csv", "big.bin"])  # a pack; a multipart blob
def test_pushing_the_same_files_again_repairs_a_damaged_blob(
    data: store.DataStore, settings: config.StoreConfig, s3: Any, tree: pathlib.Path,
    tmp_path: pathlib.Path, name: str,
) -> None:  # fmt: skip
    ref = data.push(tree, "iris").ref
    entry = next(f for f in data.show(ref).files if f.path == name)
    key = layout.blob_key(entry.blob_sha256)
    body = bytearray(s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=settings.bucket, Key=key, Body=bytes(body))
    with pytest.raises(errors.CorruptedObject):
        data.pull(ref, tmp_path / "broken")
    again = data.push(tree, "iris")
    assert again.ref == ref and again.uploaded_bytes > 0
    data.pull(ref, tmp_path / "out")
    assert same_files(tree, tmp_path / "out")
