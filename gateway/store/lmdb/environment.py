"""Opening the LMDB environment, the same way in the gateway and in the ack writer process
(`gateway.store.lmdb.ack_writer`): two processes on one environment must agree on its settings.

Opened with `sync=True, metasync=True` (full durability) unless `server.fsync: false` opts out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lmdb

ENV_FILE = "gateway.mdb"
TABLES = ("events", "dedup", "deliveries", "due", "meta", "log")
MAX_READERS = 1024


def open_environment(file: Path, *, fsync: bool) -> Any:
    """The environment in `file`, mapped at the size its last commit recorded (LMDB's rule
    for a map size of 0; 1 MiB for a new file). The caller may grow it."""
    return lmdb.open(
        str(file),
        subdir=False,
        map_size=0,
        max_dbs=len(TABLES),
        max_readers=MAX_READERS,
        sync=fsync,
        metasync=fsync,
        readahead=False,
    )
