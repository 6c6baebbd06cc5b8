"""Opening the LMDB environment, the same way in the gateway and in the ack writer process
(`gateway.store.ack_writer`): two processes on one environment must agree on its settings.

Opened with `sync=True, metasync=True` (full durability) unless `server.fsync: false` opts out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lmdb

ENV_FILE = "gateway.mdb"
TABLES = ("events", "dedup", "deliveries", "due", "meta")
MAX_READERS = 1024


def open_environment(file: Path, *, fsync: bool, map_size: int = 0) -> Any:
    """The environment in `file`; `map_size` 0 takes the map size its last commit recorded
    (LMDB's rule), as the ack writer process does."""
    return lmdb.open(
        str(file),
        subdir=False,
        map_size=map_size,
        max_dbs=len(TABLES),
        max_readers=MAX_READERS,
        sync=fsync,
        metasync=fsync,
        readahead=False,
    )
