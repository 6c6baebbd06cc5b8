"""The `store` fixture, parametrized over the store implementations.

Each implementation is one `Backend`: how to open a store in a directory with a `Routing`, and
its one fault-injection hook (make the N-th commit from now fail, as a failed fsync would). A
second store (PostgreSQL) joins the suite by adding its `Backend` to BACKENDS; no test changes.
Tests reach the store only through the Protocol's members (`gateway.store.base.Store`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.store.base import Store
from gateway.store.lmdb.store import LmdbStore
from gateway.store.open import open_store
from tests.conftest import make_settings
from tests.store_contract.support import Routing

OnCommit = Callable[[int, float], None]  # (operations, seconds) after each commit


@dataclass
class Faults:
    """The N-th commit from `fail_nth(n)` on fails (once), with nothing of it stored. With
    `hold=True` the failing commit waits (in the store's writer) until `release()`, so a test
    can queue work behind it that must land in a later commit."""

    attempts: int = 0
    fail_at: int | None = None
    failed: int = 0
    hold: bool = False
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def fail_nth(self, n: int, *, hold: bool = False) -> None:
        self.fail_at = self.attempts + n
        self.hold = hold

    def release(self) -> None:
        self.released.set()

    def should_fail(self) -> bool:
        self.attempts += 1
        if self.fail_at is not None and self.attempts == self.fail_at:
            self.fail_at = None
            self.failed += 1
            if self.hold:
                self.reached.set()
                self.released.wait(5.0)
            return True
        return False


@dataclass
class Backend:
    name: str
    open: Callable[[Path, Routing, OnCommit], Store]
    inject: Callable[[pytest.MonkeyPatch, Faults], None]  # before the store opens


def open_lmdb(path: Path, routing: Routing, on_commit: OnCommit) -> Store:
    return open_store(make_settings(path), routing, on_commit)


def inject_lmdb(monkeypatch: pytest.MonkeyPatch, faults: Faults) -> None:
    """LMDB's private seam: `_commit_transaction`, the one place a write commits (patched on
    the class before the store opens: the committer holds the bound method)."""
    commit = LmdbStore._commit_transaction

    def failing(self: LmdbStore, txn: Any) -> None:
        if faults.should_fail():
            raise OSError("injected commit failure")
        commit(self, txn)

    monkeypatch.setattr(LmdbStore, "_commit_transaction", failing)


BACKENDS = [Backend("lmdb", open_lmdb, inject_lmdb)]


@dataclass
class Opened:
    """The store under test, its directory and routing; `reopen` closes it and opens it again."""

    backend: Backend
    path: Path
    routing: Routing
    stores: list[Store] = field(default_factory=list)
    commits_seen: list[tuple[int, float]] = field(default_factory=list)  # by on_commit

    @property
    def store(self) -> Store:
        return self.stores[-1]

    def open(self) -> Store:
        self.stores.append(self.backend.open(self.path, self.routing, self.heard))
        return self.store

    def heard(self, operations: int, seconds: float) -> None:
        self.commits_seen.append((operations, seconds))

    def reopen(self) -> Store:
        self.store.close()
        return self.open()


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    return chosen


@pytest.fixture
def routing() -> Routing:
    return Routing()


@pytest.fixture
def faults(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Faults:
    injected = Faults()
    backend.inject(monkeypatch, injected)
    return injected


@pytest.fixture
async def opened(
    backend: Backend, routing: Routing, faults: Faults, tmp_path: Path
) -> AsyncIterator[Opened]:
    """Opened and closed inside the test's event loop (LMDB's ack writer talks over it)."""
    held = Opened(backend, tmp_path / "store", routing)
    held.open()
    try:
        yield held
    finally:
        held.store.close()


@pytest.fixture
async def store(opened: Opened) -> AsyncIterator[Store]:
    """The store under test, opened in tmp_path with the test's `routing`; closed after."""
    yield opened.store


@pytest.fixture
def reopen(opened: Opened) -> Callable[[], Store]:
    """Close the store and open it again on the same directory; returns the new one."""
    return opened.reopen
