"""Pack planning: deterministic, bounded, and a local edit changes only one pack."""

from __future__ import annotations

import hashlib

from toque.data import manifest, packs


def entry(index: int, size: int = 1000, salt: str = "") -> manifest.FileEntry:
    sha = hashlib.sha256(f"{index}{salt}".encode()).hexdigest()
    return manifest.FileEntry(path=f"f{index:05d}", size=size, sha256=sha)


ENTRIES = [entry(i) for i in range(2000)]


def test_every_file_lands_in_exactly_one_pack_in_order() -> None:
    plan = packs.plan(ENTRIES, target=20_000, limit=80_000)
    assert [e for pack in plan for e in pack] == ENTRIES
    assert all(sum(e.size for e in pack) <= 80_000 for pack in plan)
    # About total / target packs: content-defined, so only roughly.
    assert 50 <= len(plan) <= 200


def test_the_plan_is_deterministic() -> None:
    assert packs.plan(ENTRIES, 20_000, 80_000) == packs.plan(list(ENTRIES), 20_000, 80_000)


def test_editing_one_file_changes_only_its_pack() -> None:
    before = packs.plan(ENTRIES, 20_000, 80_000)
    edited = list(ENTRIES)
    edited[1234] = entry(1234, salt="edited")
    after = packs.plan(edited, 20_000, 80_000)
    changed = set(after) - set(before)
    assert 1 <= len(changed) <= 2  # its pack, and the next if it moved a boundary
    assert any(edited[1234] in pack for pack in changed)


def test_a_file_over_the_limit_sits_alone() -> None:
    plan = packs.plan([entry(1), entry(2, size=100_000), entry(3)], target=10**9, limit=50_000)
    assert [len(p) for p in plan] == [1, 1, 1]
