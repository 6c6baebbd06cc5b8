"""Opening the configured store: the one place that chooses the implementation."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.settings import Settings
from gateway.store.base import Store
from gateway.store.lmdb.store import DataDirInUse, LmdbStore
from gateway.store.records import Routing

__all__ = ["DataDirInUse", "open_store"]  # DataDirInUse: another gateway holds the directory


def open_store(
    settings: Settings,
    routing: Routing,
    on_commit: Callable[[int, float], None] | None = None,
) -> Store:
    """The store `server` configures (LMDB under `server.dataDir`), routing fan-out through
    `routing`; `on_commit(operations, seconds)` is called after each commit."""
    server = settings.server
    return LmdbStore(
        server.data_dir,
        map_size=server.map_size,
        max_map_size=server.max_map_size,
        fsync=server.fsync,
        routing=routing,
        on_commit=on_commit,
    )
