"""The store's memory map does not pile up in resident memory (issue 9: RSS with 1M pending)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.lmdb import mapped
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.store import ENV_FILE, LmdbStore

MIB = 1024**2
ROWS = 3_000
VALUE = 8 * 1024  # 3,000 x 8 KiB: about 24 MiB of pages


def resident_bytes(path: Path) -> int:
    """How much of this process's mappings of `path` is resident (/proc/self/smaps)."""
    target = str(path.resolve()).encode()
    resident = 0
    inside = False
    with open("/proc/self/smaps", "rb") as smaps:
        for line in smaps:
            if not line[:1].isupper():  # a mapping's header line: "start-end perms ... path"
                inside = line.rstrip(b"\n").endswith(target)
            elif inside and line.startswith(b"Rss:"):
                resident += int(line.split()[1]) * 1024
    return resident


def _row(index: int) -> bytes:
    return index.to_bytes(4, "big") * (VALUE // 4)


def _read_all(store: LmdbStore) -> list[bytes]:
    def run(txn: Transaction) -> list[bytes]:
        return [bytes(value) for _, value in txn.cursor(db=store.db["meta"])]

    return store.read(run)


@pytest.fixture
async def filled(tmp_path: Path) -> LmdbStore:
    store = LmdbStore(tmp_path, fsync=False)

    def fill(txn: Transaction) -> None:
        for index in range(ROWS):
            txn.put(b"row:%06d" % index, _row(index), db=store.db["meta"])

    await store.write(fill)
    return store


async def test_released_pages_leave_resident_memory_and_read_back_the_same(
    filled: LmdbStore, tmp_path: Path
) -> None:
    store = filled
    try:
        before = _read_all(store)  # every page of the table is now mapped in
        resident = resident_bytes(tmp_path / ENV_FILE)
        assert resident > 20 * MIB

        held = mapped.resident_file_bytes()  # the store's pages and the shared libraries
        assert held >= resident
        assert not store.release_mapped_pages(budget=held + 16 * MIB)  # under budget: kept
        assert resident_bytes(tmp_path / ENV_FILE) >= resident - MIB

        assert store.release_mapped_pages(budget=MIB)
        assert resident_bytes(tmp_path / ENV_FILE) < MIB

        assert _read_all(store) == before == [_row(index) for index in range(ROWS)]
    finally:
        store.close()
