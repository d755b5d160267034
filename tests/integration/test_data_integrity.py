"""Damage done to stored data by a credentialed client, against a real MinIO.

An attacker (or a buggy tool) with write access to the bucket flips a byte of a blob or
deletes it. On a plain bucket the bytes are gone: ``toque data verify`` names the damaged blob
and the versions it breaks, a pull refuses it, and a push of the same files repairs it. On a
bucket with versioning and Object Lock the overwrite only adds an object version: reads pin
the original, verify reports the replaced key, and a push restores it as the newest version.
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
import pathlib
import re
import uuid
from typing import Any

import boto3
import pytest

from toque.cli import main as cli
from toque.data import config, errors, layout, store
from toque.local import services

BIG = 11 * 1024 * 1024  # a multipart upload at 5 MiB parts


@pytest.fixture
def s3(minio: services.Minio) -> Any:
    """The attacker's client: root credentials, not toque's code."""
    return boto3.client(
        "s3", endpoint_url=minio.endpoint, aws_access_key_id=minio.access_key,
        aws_secret_access_key=minio.secret_key, region_name="us-east-1",
    )  # fmt: skip


@pytest.fixture(params=["plain", "locked"])
def bucket(
    request: pytest.FixtureRequest, minio: services.Minio, monkeypatch: pytest.MonkeyPatch
) -> str:
    name = f"i-{request.param}-{uuid.uuid4().hex[:8]}"
    minio.create_bucket(name, locked=request.param == "locked", retention_days=1)
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TOQUE_DATA_BUCKET", name)
    monkeypatch.setenv("TOQUE_USER", "tester")
    return name


def locked(bucket: str) -> bool:
    return bucket.startswith("i-locked-")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dataset(root: pathlib.Path) -> pathlib.Path:
    (root / "train").mkdir(parents=True)
    (root / "train" / "t.csv").write_text("age,city\n31,Oslo\n45,Lima\n")
    (root / "train" / "u.csv").write_text("age,city\n27,Rome\n")
    (root / "notes.txt").write_text("a second pack member\n")
    return root


def flip(s3: Any, bucket: str, key: str) -> None:
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[0] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))


@pytest.mark.parametrize("attack", ["flip", "delete"])
def test_damaged_blob_is_listed_refused_and_repaired_by_a_push(
    bucket: str, attack: str, s3: Any, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    source = dataset(tmp_path / "src")
    code, out, err = run(capsys, "data", "push", str(source), "--name", "ds")
    assert code == 0, err
    ref = out.strip()
    if locked(bucket):
        assert "bucket: protected (versioning and Object Lock on" in err
        assert "GOVERNANCE 1 DAYS" in err
    else:
        assert "bucket: NOT protected" in err
    found = store.DataStore.from_env().show(ref)
    [entry] = [f for f in found.files if f.path == "train/t.csv"]
    key = layout.blob_key(entry.blob_sha256)
    readers = sorted(f.path for f in found.files if f.blob_sha256 == entry.blob_sha256)
    if attack == "flip":
        flip(s3, bucket, key)
    else:
        s3.delete_object(Bucket=bucket, Key=key)

    code, out, _ = run(capsys, "data", "verify", "ds")
    assert code == 1, out
    if locked(bucket):
        # The original is an object version nobody can delete, and reads pin it.
        assert f"REPLACED {key}: its newest version is damaged" in out
        assert f"read by (unaffected: pinned intact version) {ref} ({', '.join(readers)})" in out
        assert "0 versions broken" in out
    else:
        assert f"DAMAGED {key}: " + ("other bytes" if attack == "flip" else "missing") in out
        assert f"  breaks {ref} ({', '.join(readers)})" in out
        assert "1 damaged, 1 versions broken" in out

    code, _, err = run(capsys, "data", "pull", ref, str(tmp_path / "out"))
    if locked(bucket):
        assert code == 0, err
        assert filecmp.cmp(source / "train" / "t.csv", tmp_path / "out" / "train" / "t.csv", False)
    else:
        assert code == 3
        assert err.startswith(f"toque data pull: {readers[0]}")  # the pack's first file
        assert ("corrupted" if attack == "flip" else "missing") in err
        assert "pushing the same files again repairs it" in err
        assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]

    code, out, err = run(capsys, "data", "push", str(source), "--name", "ds")
    assert (code, out.strip()) == (0, ref), err
    assert f"repaired {key}: it was damaged" in err
    assert "already stored; repaired 1 damaged objects" in err

    code, out, _ = run(capsys, "data", "verify", "ds")
    assert code == 0, out
    assert "all intact" in out
    code, _, err = run(capsys, "data", "pull", ref, str(tmp_path / "again"))
    assert code == 0, err
    for path in readers:
        assert filecmp.cmp(source / path, tmp_path / "again" / path, shallow=False)
    code, _, err = run(capsys, "data", "push", str(source), "--name", "ds")
    assert "already stored, nothing uploaded; checked intact" in err


def test_verify_json_and_a_single_version(
    bucket: str, s3: Any, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    source = dataset(tmp_path / "src")
    _, v1, _ = run(capsys, "data", "push", str(source), "--name", "ds", "--tag", "v1", "-q")
    (source / "more.csv").write_text("age,city\n50,Rome\n")
    _, v2, _ = run(capsys, "data", "push", str(source), "--name", "ds", "-q")
    code, out, _ = run(capsys, "data", "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"]
    assert sorted(report["versions"]) == sorted([v1.strip(), v2.strip()])
    assert report["protection"]["protected"] is locked(bucket)
    shared = store.DataStore.from_env().show(v1.strip()).files[0].blob_sha256
    flip(s3, bucket, layout.blob_key(shared))
    code, out, _ = run(capsys, "data", "verify", "ds:v1", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert report["versions"] == [v1.strip()]
    [damage] = report["damaged"]
    assert damage["key"] == layout.blob_key(shared)
    assert damage["breaksReads"] is not locked(bucket)
    assert list(damage["versions"]) == [v1.strip()]


def test_a_replaced_manifest_is_refused_then_repaired(
    bucket: str, s3: Any, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = dataset(tmp_path / "src")
    _, ref, _ = run(capsys, "data", "push", str(source), "--name", "ds", "-q")
    ref = ref.strip()
    key = layout.version_key("ds", ref.split("@")[1])
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    data = store.DataStore.from_env()
    # Through the store's own API a manifest cannot be overwritten at all.
    with pytest.raises(errors.InvalidInput, match="immutable"):
        data.bucket.put(key, b"{}")
    assert data.bucket.put_new(key, b"{}") is None
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == original
    # Below the store, a credentialed client can.
    s3.put_object(Bucket=bucket, Key=key, Body=original.replace(b'"ds"', b'"xx"', 1))
    if locked(bucket):
        # The manifest as it was written is still a version of the key: reads use it.
        assert data.show(ref).to_json() == original
        return
    with pytest.raises(errors.CorruptedObject, match="does not match its digest"):
        data.show(ref)
    code, out, _ = run(capsys, "data", "verify")
    assert code == 1 and f"DAMAGED manifest of {ref}" in out
    code, _, err = run(capsys, "data", "pull", ref, str(tmp_path / "out"))
    assert code == 3 and "pushing the same files again repairs it" in err
    code, _, err = run(capsys, "data", "push", str(source), "--name", "ds")
    assert code == 0 and f"repaired {key}" in err
    assert run(capsys, "data", "verify")[0] == 0
    assert run(capsys, "data", "pull", ref, str(tmp_path / "out"))[0] == 0


def test_a_damaged_multipart_blob_is_repaired(
    bucket: str, minio: services.Minio, s3: Any, tmp_path: pathlib.Path
) -> None:
    settings = config.StoreConfig(
        endpoint=minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key,
        bucket=bucket, multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024,
        workers=4,
    )  # fmt: skip
    data = store.DataStore(settings)
    source = tmp_path / "src"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(BIG))
    first = data.push(source, "big")
    [entry] = first.manifest.files
    key = layout.blob_key(entry.sha256)
    assert (first.uploaded_files, first.uploaded_bytes) == (1, BIG)
    assert bool(first.manifest.blob_versions) is locked(bucket)
    flip(s3, bucket, key)
    again = data.push(source, "big")
    assert again.reused and [k for k, _ in again.repaired] == [key]
    assert again.uploaded_bytes == BIG
    assert data.verify("big").ok
    data.pull("big", tmp_path / "out")
    assert filecmp.cmp(source / "big.bin", tmp_path / "out" / "big.bin", shallow=False)
    # A new version that reuses the blob checks it too before pinning it.
    flip(s3, bucket, key)
    (source / "small.txt").write_text("new")
    third = data.push(source, "big")
    assert not third.reused and [k for k, _ in third.repaired] == [key]
    assert data.verify().ok


def test_a_bucket_the_store_creates_is_locked(
    minio: services.Minio, s3: Any, tmp_path: pathlib.Path
) -> None:
    settings = config.StoreConfig(
        endpoint=minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key,
        bucket=f"new-{uuid.uuid4().hex[:8]}", retention_days=1,
    )  # fmt: skip
    data = store.DataStore(settings)
    result = data.push(dataset(tmp_path / "src"), "ds")
    assert result.protection is not None and result.protection.protected
    assert result.protection.retention == "GOVERNANCE 1 DAYS"
    blob = layout.blob_key(result.manifest.files[0].blob_sha256)
    flip(s3, settings.bucket, blob)
    versions = s3.list_object_versions(Bucket=settings.bucket, Prefix=blob)["Versions"]
    assert len(versions) == 2  # the overwrite added a version; the original stays
    # Locked: the original version cannot be deleted.
    original = next(v["VersionId"] for v in versions if not v["IsLatest"])
    with pytest.raises(s3.exceptions.ClientError, match=r"AccessDenied|locked|WORM|retention"):
        s3.delete_object(Bucket=settings.bucket, Key=blob, VersionId=original)
    data.pull(result.ref, tmp_path / "out")
    plain = dataclasses.replace(settings, bucket=f"plain-{uuid.uuid4().hex[:8]}")
    minio.create_bucket(plain.bucket)
    assert not store.DataStore(plain).bucket.protection().protected
    assert re.search("NOT protected", store.DataStore(plain).bucket.protection().describe())


def test_verify_points_at_an_intact_older_version(
    minio: services.Minio, s3: Any, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Pushed before the bucket kept versions: the manifest pins nothing, reads get the newest.
    name = f"late-{uuid.uuid4().hex[:8]}"
    minio.create_bucket(name)
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TOQUE_DATA_BUCKET", name)
    source = dataset(tmp_path / "src")
    _, ref, _ = run(capsys, "data", "push", str(source), "--name", "ds", "-q")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    key = layout.blob_key(store.DataStore.from_env().show(ref.strip()).files[0].blob_sha256)
    flip(s3, name, key)
    code, out, _ = run(capsys, "data", "verify")
    assert code == 1
    assert "bucket: versioned but not locked" in out
    assert f"DAMAGED {key}: other bytes" in out
    assert "an intact copy is still stored as version null" in out
    code, _, err = run(capsys, "data", "push", str(source), "--name", "ds")
    assert code == 0 and f"repaired {key}" in err
    assert run(capsys, "data", "verify")[0] == 0
