"""Hashing a push's files in batches: same order, same digests, tables found."""

from __future__ import annotations

import hashlib
import os
import pathlib

import pytest

from toque.data import manifest, parallel, transfer


def test_hash_all_keeps_order_and_digests_across_batches(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "HASH_BATCH_FILES", 7)
    monkeypatch.setattr(transfer, "HASH_BATCH_BYTES", 50_000)
    sizes = [0, 10, 60_000, *range(100, 3000, 100), 120_000, 5]
    for index, size in enumerate(sizes):
        (tmp_path / f"f{index:03d}.bin").write_bytes(os.urandom(size))
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n")
    files = manifest.scan(tmp_path)
    hashed = transfer.hash_all(files, 4, parallel.silent())
    assert [h.local for h in hashed] == files
    for item in hashed:
        body = item.local.source.read_bytes()
        assert (item.entry.size, item.entry.sha256) == (len(body), hashlib.sha256(body).hexdigest())
        assert item.before.size == len(body)
    [table] = [h.table for h in hashed if h.table is not None]
    assert (table.path, table.rows) == ("t.csv", 2)
