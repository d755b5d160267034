"""Dataset manifests: scanning, hashing, content digests, references, JSON round trip."""

from __future__ import annotations

import datetime
import hashlib
import os
import pathlib
import re

import pytest

from toque.data import errors, manifest


def write_tree(root: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
    for path, body in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    return root


def entries(root: pathlib.Path) -> list[manifest.FileEntry]:
    out = []
    for local in manifest.scan(root):
        size, sha = manifest.hash_file(local.source)
        out.append(manifest.FileEntry(path=local.path, size=size, sha256=sha))
    return out


TREE = {"train/a.csv": b"x,y\n1,2\n", "train/b.bin": b"\x00" * 100, "README": b"hello"}


def test_scan_lists_nested_files_with_posix_paths_sorted(tmp_path: pathlib.Path) -> None:
    write_tree(tmp_path, TREE)
    found = manifest.scan(tmp_path)
    assert [f.path for f in found] == ["README", "train/a.csv", "train/b.bin"]
    assert [f.size for f in found] == [5, 8, 100]


def test_scan_of_a_single_file_names_it_by_its_basename(tmp_path: pathlib.Path) -> None:
    write_tree(tmp_path, TREE)
    [only] = manifest.scan(tmp_path / "train" / "a.csv")
    assert only.path == "a.csv"


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_scan_refuses_nothing_to_push(tmp_path: pathlib.Path, make: str) -> None:
    target = tmp_path / "data"
    if make == "empty":
        target.mkdir()
    with pytest.raises(errors.InvalidInput, match=str(target)):
        manifest.scan(target)


def test_hash_file_matches_hashlib_across_chunk_boundaries(tmp_path: pathlib.Path) -> None:
    body = os.urandom(10_000)
    (tmp_path / "f").write_bytes(body)
    assert manifest.hash_file(tmp_path / "f", chunk=4096) == (
        10_000,
        hashlib.sha256(body).hexdigest(),
    )


def test_same_content_with_different_mtimes_has_the_same_digest(tmp_path: pathlib.Path) -> None:
    one = write_tree(tmp_path / "one", TREE)
    two = write_tree(tmp_path / "two", TREE)
    for local in manifest.scan(two):
        os.utime(local.source, (1_000_000, 1_000_000))
    a = manifest.build("ds", entries(one), creator="alice@a", now=datetime.datetime(2024, 1, 1))
    b = manifest.build("ds", entries(two), creator="bob@b", now=datetime.datetime(2025, 6, 1))
    assert a.digest == b.digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a.digest)
    assert a.ref == f"ds@{a.digest}"


@pytest.mark.parametrize(
    "change",
    [
        {"README": b"hellO"},  # same size, other bytes
        {"README2": b"hello"},  # one more file
        {"train/a.csv": b"x,y\n1,2\n3,4\n"},
    ],
)
def test_different_content_has_a_different_digest(
    tmp_path: pathlib.Path, change: dict[str, bytes]
) -> None:
    base = manifest.content_digest(entries(write_tree(tmp_path / "one", TREE)))
    other = manifest.content_digest(entries(write_tree(tmp_path / "two", {**TREE, **change})))
    assert base != other


def test_renaming_a_file_changes_the_digest(tmp_path: pathlib.Path) -> None:
    renamed = {("readme" if k == "README" else k): v for k, v in TREE.items()}
    base = manifest.content_digest(entries(write_tree(tmp_path / "one", TREE)))
    other = manifest.content_digest(entries(write_tree(tmp_path / "two", renamed)))
    assert base != other


def test_digest_does_not_depend_on_entry_order(tmp_path: pathlib.Path) -> None:
    files = entries(write_tree(tmp_path, TREE))
    assert manifest.content_digest(files) == manifest.content_digest(reversed(files))


def test_build_records_size_creator_time_and_version(tmp_path: pathlib.Path) -> None:
    files = entries(write_tree(tmp_path, TREE))
    built = manifest.build(
        "ds",
        files,
        creator="ci@runner",
        now=datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC),
    )
    assert built.size == 113
    assert built.creator == "ci@runner"
    assert built.created == "2024-05-06T07:08:09Z"
    assert built.toque_version
    assert built.rows is None


def test_creator_comes_from_toque_user_else_user_at_host() -> None:
    assert manifest.default_creator({"TOQUE_USER": "robot"}) == "robot"
    assert "@" in manifest.default_creator({})


def test_manifest_json_round_trips(tmp_path: pathlib.Path) -> None:
    table = manifest.Table(
        path="train/a.csv",
        rows=1,
        columns=(manifest.Column(name="x", dtype="int64", kind="numeric"),),
    )
    built = manifest.build("ds", entries(write_tree(tmp_path, TREE)), [table], creator="c")
    assert manifest.Manifest.from_json(built.to_json()) == built
    assert built.rows == 1


def test_two_files_with_one_path_are_refused() -> None:
    entry = manifest.FileEntry(path="a", size=0, sha256="0" * 64)
    with pytest.raises(errors.InvalidInput, match="same path"):
        manifest.build("ds", [entry, entry], creator="c")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iris", manifest.Ref("iris", tag="latest")),
        ("iris:v1.2", manifest.Ref("iris", tag="v1.2")),
        (f"iris@sha256:{'a' * 64}", manifest.Ref("iris", digest=f"sha256:{'a' * 64}")),
    ],
)
def test_parse_ref(text: str, expected: manifest.Ref) -> None:
    assert manifest.parse_ref(text) == expected
    assert str(manifest.parse_ref(text)) == (text if ":" in text else f"{text}:latest")


@pytest.mark.parametrize(
    "text", ["Iris", "iris@sha256:abc", "iris@md5:" + "a" * 64, "iris:", "../x", "iris:sha256x", ""]
)
def test_bad_refs_are_refused(text: str) -> None:
    with pytest.raises(errors.InvalidInput):
        manifest.parse_ref(text)
