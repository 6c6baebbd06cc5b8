"""Keeping the store's memory map from filling the process's resident memory.

LMDB reads through a read-only shared memory map of `data.mdb`. Every page the gateway touches
(the B-tree pages a publish, a fan-out or an ack goes through) stays mapped into the process
until the kernel needs the memory back, and counts in its resident set (VmRSS, RssFile) and in
a container's working set. With a large backlog that is hundreds of MiB of pages that are
mostly never used again. `release` tells the kernel those mappings are not needed
(madvise MADV_DONTNEED): for a shared file mapping that only unmaps the pages, whose contents
stay in the page cache and on disk, and the next read of a page maps it again (a minor fault).
Nothing is lost and nothing LMDB holds is invalidated.

Pages come back fast: a fan-out of 30,000 events/s touches over 100 MiB of dedup-index pages a
second (their keys are hashes, spread over the whole index), so the check runs ten times a
second and reads only /proc/self/statm.

Linux only (it reads /proc/self); elsewhere nothing is released.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gateway.store")

_MAPS = Path("/proc/self/maps")
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", 4)
# File-backed resident memory (the store's map, shared libraries) above which a process that
# maps the store releases the map's pages.
BUDGET = 96 * 1024**2


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """The address ranges at which this process maps `path` (start, end)."""
    if not _MAPS.exists():
        return []
    target = str(path.resolve())
    ranges = []
    for line in _MAPS.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            start, _, end = fields[0].partition("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def resident_file_bytes() -> int:
    """File-backed resident memory of the whole process (statm's `shared`: RssFile and
    RssShmem), cheap enough to read ten times a second; 0 where unknown."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[2]) * mmap.PAGESIZE
    except (OSError, IndexError, ValueError):
        return 0


def release(path: Path) -> None:
    """Unmap every resident page of this process's mappings of `path`. The caller must make
    sure the mapping cannot be replaced meanwhile (the store holds the lock its map resizing
    takes)."""
    for start, end in mapped_ranges(path):
        if _libc.madvise(start, end - start, _MADV_DONTNEED) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


async def trim_periodically(trim: Callable[[], object], interval: float = 0.1) -> None:
    """Call `trim` (e.g. `LmdbStore.release_mapped_pages`) every `interval` seconds. Real time
    on purpose, like the loop-lag probe: this looks after the process, not the schedule."""
    while True:
        await asyncio.sleep(interval)
        try:
            trim()
        except OSError:
            log.exception("could not release the store's mapped pages; will retry")
