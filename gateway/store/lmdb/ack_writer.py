"""Acks committed by an LMDB writer in a process of its own.

Acks are most of what pushing writes, and each one holds its push's slot until it is
committed (RELIABILITY R2). py-lmdb releases the GIL around every call, so in the gateway's
process each LMDB call of the writer thread hands the GIL to the busy event loop and waits to
get it back: an ack's commit waited on the event loop, and the event loop on the writer. A
child process has a GIL of its own (bench/notes/, session 7).

Only plain acks go there (`gateway.store.lmdb.acks`): what they write is fixed and needs none of the
gateway's state. Retries, dead letters, publishes and admin changes stay with the group
committer's thread. Both write to the same LMDB environment, whose write lock serialises them.

Over a socket pair, the gateway sends frames (u32 length, then msgpack `[[[subscription, seq,
due, settled row], ...], {subscription: wall time of its last ack}]`). The child reads every
frame that has arrived, applies them in one write transaction, commits (one fsync for all of
them) and answers once per transaction: how many frames, whether it committed, and how long
the commit took. Answers come in frame order.

When the child cannot commit a batch (the map is full and only the gateway grows it, or
anything else), does not answer within 30 s (it is then killed), or is gone, `record` raises
`AckWriterUnavailable` and the caller records those
acks through the writer thread instead. That is safe even if the child did commit them: an ack
applied twice changes nothing. A child that is gone is not restarted; acks then all go through
the writer thread, and the error is logged once.

The child exits when the gateway closes its end of the socket, or dies (EOF, or a reset or
broken pipe when replies were left unread): it never outlives the gateway by more than the
commit it is in, and it leaves nothing in the log when the gateway goes away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import lmdb
import msgspec

from gateway.deadlines import Deadlines
from gateway.store.lmdb import mapped
from gateway.store.lmdb.acks import PlainAck, apply_acks, record_successes, settled_successes
from gateway.store.lmdb.environment import open_environment

log = logging.getLogger("gateway.store")

FRAME = struct.Struct(">I")  # the length of the msgpack that follows
_FRAME_ENCODER = msgspec.msgpack.Encoder()
_FRAME_DECODER = msgspec.msgpack.Decoder()
REPLY = struct.Struct(">I?d")  # frames answered, committed, commit seconds
TABLES = ("deliveries", "due", "meta", "log")  # what an ack writes
STOP_TIMEOUT = 5.0
# A commit of acks takes a millisecond or two; one not answered in this long never will be.
REPLY_TIMEOUT = 30.0
# The child touches only the delivery tables' pages, along the keys it acks: a smaller share
# of file-backed memory than the gateway's (gateway.store.mapped) before it releases them.
MAPPED_BUDGET = 32 * 1024**2
_ROOT = str(Path(__file__).resolve().parents[3])  # the directory `gateway` is imported from
_CHILD = (
    # Stopped by the end of its input, not by signals: Ctrl-C in a terminal reaches the whole
    # process group, and the gateway still records acks while it shuts down.
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); sys.path.insert(0, sys.argv[1]); "
    "from gateway.store.lmdb.ack_writer import serve; "
    "serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))"
)


class AckWriterUnavailable(Exception):
    """The ack writer process did not commit these acks: record them another way."""


class AckWriter:
    """The gateway's side: starts the child on first use, sends acks, awaits their commit."""

    def __init__(
        self,
        path: Path,
        *,
        fsync: bool,
        observe: Callable[[int, float], None] = lambda operations, seconds: None,
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        self._command = [sys.executable, "-c", _CHILD, _ROOT, str(path), _sync_flag(fsync)]
        self._observe = observe
        self.reply_timeout = reply_timeout
        self._deadlines = Deadlines()
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._starting: asyncio.Task[None] | None = None
        self._replies: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._gone = False
        self.commits = 0
        self.operations = 0

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def record(self, acks: list[PlainAck], succeeded: Mapping[str, float]) -> None:
        """Return once `acks` are committed (and `succeeded`, each subscription's last ack
        time); raise AckWriterUnavailable if they were not."""
        stream = await self._ready()
        data = _FRAME_ENCODER.encode([acks, succeeded])
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        stream.write(FRAME.pack(len(data)) + data)
        try:
            await self._deadlines.run(future, self.reply_timeout)
        except TimeoutError:
            self._abandon()
            raise AckWriterUnavailable("the ack writer did not answer in time") from None

    def _abandon(self) -> None:
        """A child that stopped answering (stopped, hung) is killed: its reply reader then
        fails every ack still waiting, and from then on the writer thread records acks."""
        if self._gone:  # another lane's deadline got there first
            return
        log.error(
            "the ack writer did not answer within %gs; killed, acks go through the writer thread",
            self.reply_timeout,
        )
        self._gone = True
        if self._process is not None:
            self._process.kill()

    async def _ready(self) -> asyncio.StreamWriter:
        loop = asyncio.get_running_loop()
        if self._starting is None:
            self._starting = loop.create_task(self._start(), name="ack-writer-start")
        elif self._starting.get_loop() is not loop:  # a store shared by event loops (tests)
            raise AckWriterUnavailable("the ack writer belongs to another event loop")
        await asyncio.shield(self._starting)
        if self._gone or self._stream is None:
            raise AckWriterUnavailable("the ack writer process is not running")
        return self._stream

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                self._process = subprocess.Popen(
                    [*self._command, str(theirs.fileno())], pass_fds=[theirs.fileno()]
                )
            reader, self._stream = await asyncio.open_unix_connection(sock=ours)
        except Exception:  # whatever it is, the writer thread records acks instead
            log.exception("could not start the ack writer; acks go through the writer thread")
            ours.close()
            self._gone = True
            return
        self._socket = ours
        self._replies = asyncio.create_task(self._read_replies(reader), name="ack-writer")

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                frames, committed, seconds = REPLY.unpack(await reader.readexactly(REPLY.size))
                for _ in range(frames):
                    self._answer(self._waiting.popleft(), committed)
                if committed:
                    self.commits += 1
                    self.operations += frames
                    self._observe(frames, seconds)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self._gone:
                log.error("the ack writer process is gone; acks go through the writer thread")
        finally:
            self._gone = True
            while self._waiting:
                self._answer(self._waiting.popleft(), False)
            if self._process is not None:
                self._process.poll()  # reaped now if it has exited

    @staticmethod
    def _answer(future: asyncio.Future[None], committed: bool) -> None:
        if future.done():  # its lane stopped waiting
            return
        if committed:
            future.set_result(None)
        else:
            future.set_exception(AckWriterUnavailable("the ack writer did not commit"))

    def close(self) -> None:
        """Stop the child: it finishes the commit it is in and exits at end of input."""
        self._gone = True
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_WR)  # EOF now, whatever the loop does next
        if self._process is not None:
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        loop = None if self._starting is None else self._starting.get_loop()
        if loop is None or loop.is_closed():
            if self._socket is not None:
                self._socket.close()
            return
        # The gateway closes its store from a worker thread (asyncio.to_thread): the stream and
        # the reply task belong to the event loop, so they are closed there.
        loop.call_soon_threadsafe(self._close_stream)

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if self._replies is not None:
            self._replies.cancel()


# -- the child process ---------------------------------------------------------------------


def _sync_flag(fsync: bool) -> str:
    return "fsync" if fsync else "nosync"


def serve(path: str, sync: str, fd: int) -> None:
    """The child: commit the acks that arrive on socket `fd` until it closes.

    A gateway that dies (killed, crashed) closes the socket with our replies unread: the next
    read or write then fails (ECONNRESET, EPIPE) instead of seeing end of input. Either way the
    gateway is gone, which is its own news: the child exits quietly, as at end of input."""
    file = Path(path)
    env = open_environment(file, fsync=sync == "fsync")
    db = {name: env.open_db(name.encode(), create=False) for name in TABLES}
    with socket.socket(fileno=fd) as channel, contextlib.suppress(ConnectionError):
        for frames in _frames(channel):
            seconds = _commit(env, db, frames)
            reply = REPLY.pack(len(frames), seconds is not None, seconds or 0.0)
            channel.sendall(reply)
            if mapped.resident_file_bytes() > MAPPED_BUDGET:
                mapped.release(file)


def _commit(
    env: Any, db: dict[str, Any], frames: list[bytes], retried: bool = False
) -> float | None:
    """Apply every frame's acks in one transaction and commit; the commit's seconds, or None
    if nothing was committed (the gateway then records these acks itself)."""
    try:
        txn = _begin(env)
    except lmdb.Error:
        log.exception("the ack writer could not begin a transaction")
        return None
    try:
        latest: dict[str, float] = {}  # each subscription's last ack time, written once
        for frame in frames:
            acks, succeeded = _FRAME_DECODER.decode(frame)
            latest.update(settled_successes(succeeded, apply_acks(txn, db, acks)))
        record_successes(txn, db["meta"], latest)
        started = time.perf_counter()
        txn.commit()
        return time.perf_counter() - started
    except lmdb.MapFullError:
        txn.abort()
        if retried or not _took_larger_map(env):
            return None  # the map is full for the gateway too: it records these acks
        return _commit(env, db, frames, retried=True)
    except Exception:
        log.exception("the ack writer could not commit %d frames", len(frames))
        txn.abort()
        return None


def _took_larger_map(env: Any) -> bool:
    """Take on the map size the gateway last recorded; True if that is larger than ours
    (the gateway grew the map while our data still fitted in the old one)."""
    before = env.info()["map_size"]
    env.set_mapsize(0)
    return bool(env.info()["map_size"] > before)


def _begin(env: Any) -> Any:
    try:
        return env.begin(write=True)
    except lmdb.MapResizedError:  # the gateway grew the map past ours
        _took_larger_map(env)
        return env.begin(write=True)


def _frames(channel: socket.socket) -> Iterator[list[bytes]]:
    """The complete frames received so far (their msgpack), one list per read, until end of
    input."""
    buffer = b""
    while chunk := channel.recv(1 << 20):
        buffer += chunk
        frames, start = [], 0
        while len(buffer) - start >= FRAME.size:
            (size,) = FRAME.unpack_from(buffer, start)
            end = start + FRAME.size + size
            if len(buffer) < end:
                break
            frames.append(buffer[start + FRAME.size : end])
            start = end
        buffer = buffer[start:]  # what is left of a frame still arriving
        if frames:
            yield frames
