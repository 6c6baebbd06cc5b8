"""Byte layouts of the LMDB tables: pure encode/decode, no I/O.

    events      topic \\0 seq(u64)              -> received(f64) dedup(32) payload
    dedup       sha256(topic, source, id)       -> seq(u64) received(f64)
    deliveries  subscription \\0 seq(u64)       -> DeliveryState (msgpack)
    log         subscription \\0 seq(u64)       -> SettledRow (msgpack): a settled delivery's
                                               state and attempt log, kept with the event
    due         subscription \\0 due_ms(u64) seq -> b""          (the due-time index)
    meta        b"seq"                          -> last seq assigned (u64; absent before the first)
                b"topic/" name                  -> topic settings (JSON)
                b"subscription/" name           -> subscription spec (JSON)
                b"count/" subscription "/" kind -> u64 counter
                b"events/" topic                -> u64 events the topic holds
                b"last/" subscription "/success" -> f64 wall time of the last acked attempt
                b"last/" subscription "/failure" -> JSON {time, status, error} of the last
                                                   failed attempt

Dedup keys are a fixed-size hash because LMDB keys are at most 511 bytes and a CloudEvent's
source and id are unbounded (RELIABILITY R4). Names never contain NUL (they are validated).
"""

from __future__ import annotations

import hashlib
import struct

import msgspec
import orjson

from gateway.store.records import LOG_RECENT, Attempt, LastOutcome

SEQ = struct.Struct(">Q")
TIME = struct.Struct(">d")
EVENT_HEADER = struct.Struct(">d32s")
DEDUP_VALUE = struct.Struct(">Qd")
SEP = b"\x00"
LAST_SEQ = b"seq"
TOPIC_PREFIX = b"topic/"
SUBSCRIPTION_PREFIX = b"subscription/"


class AttemptRow(msgspec.Struct, array_like=True, frozen=True):
    """One attempt of the log (`records.Attempt`), as msgpack: an array of five."""

    time: float
    status: int | str
    error: str | None
    duration_ms: int
    response: bytes = b""


class SettledRow(msgspec.Struct, array_like=True, frozen=True):
    """A delivery that is over (acked, dead-lettered, dropped) and its attempt log. A
    first-attempt ack is the common case: 1 state byte, 1 attempts byte, two nils and one
    attempt."""

    state: int  # an index into records.DELIVERY_STATES
    attempts: int
    last_status: str | None = None
    last_error: str | None = None
    log: list[AttemptRow] = []


class DeliveryState(msgspec.Struct, array_like=True, frozen=True):
    """One event's delivery to one subscription, as stored between attempts."""

    topic: str
    seq: int
    attempts: int
    due: float
    expires: float
    last_status: str | None = None
    last_error: str | None = None
    last_body: bytes | None = None
    payload: bytes | None = None  # set for redriven dead letters, which live outside any topic
    enqueued: float = 0.0  # when this delivery was created (oldest-pending age)
    log: list[AttemptRow] = []  # the first attempt and the last records.LOG_RECENT


def log_with(log: list[AttemptRow], attempt: AttemptRow | None) -> list[AttemptRow]:
    """`log` with `attempt` appended, keeping the first and the last LOG_RECENT."""
    if attempt is None:
        return log
    if len(log) <= LOG_RECENT:
        return [*log, attempt]
    return [log[0], *log[2:], attempt]


def attempt_row(attempt: Attempt | None) -> AttemptRow | None:
    if attempt is None:
        return None
    bounded = attempt.bounded()
    return AttemptRow(
        bounded.time, bounded.status, bounded.error, bounded.duration_ms, bounded.response
    )


def attempt_of(row: AttemptRow) -> Attempt:
    return Attempt(row.time, row.status, row.error, row.duration_ms, row.response)


def encode_settled(row: SettledRow) -> bytes:
    return _DELIVERY_ENCODER.encode(row)


def decode_settled(value: bytes) -> SettledRow:
    return _SETTLED_DECODER.decode(value)


_DELIVERY_ENCODER = msgspec.msgpack.Encoder()
_DELIVERY_DECODER = msgspec.msgpack.Decoder(DeliveryState)
_SETTLED_DECODER = msgspec.msgpack.Decoder(SettledRow)


def dedup_key(topic: str, source: str, event_id: str) -> bytes:
    digest = hashlib.sha256()
    for part in (topic, source, event_id):
        encoded = part.encode()
        digest.update(SEQ.pack(len(encoded)))
        digest.update(encoded)
    return digest.digest()


def topic_prefix(topic: str) -> bytes:
    return topic.encode() + SEP


def event_key(topic: str, seq: int) -> bytes:
    return topic_prefix(topic) + SEQ.pack(seq)


def seq_of(key: bytes) -> int:
    return int(SEQ.unpack_from(key, len(key) - SEQ.size)[0])


def event_value(received: float, dedup: bytes, payload: bytes) -> bytes:
    return EVENT_HEADER.pack(received, dedup) + payload


def split_event_value(value: bytes) -> tuple[float, bytes, bytes]:
    received, dedup = EVENT_HEADER.unpack_from(value)
    return received, dedup, bytes(value[EVENT_HEADER.size :])


def delivery_prefix(subscription: str) -> bytes:
    return subscription.encode() + SEP


def delivery_key(subscription: str, seq: int) -> bytes:
    return delivery_prefix(subscription) + SEQ.pack(seq)


def due_prefix(subscription: str) -> bytes:
    return subscription.encode() + SEP


def due_key(subscription: str, due: float, seq: int) -> bytes:
    return due_prefix(subscription) + SEQ.pack(max(0, int(due * 1000))) + SEQ.pack(seq)


def split_due_key(key: bytes) -> tuple[float, int]:
    due_ms, seq = struct.unpack_from(">QQ", key, len(key) - 16)
    return due_ms / 1000.0, int(seq)


def encode_delivery(state: DeliveryState) -> bytes:
    return _DELIVERY_ENCODER.encode(state)


def decode_delivery(value: bytes) -> DeliveryState:
    return _DELIVERY_DECODER.decode(value)


def topic_key(topic: str) -> bytes:
    return TOPIC_PREFIX + topic.encode()


def subscription_key(subscription: str) -> bytes:
    return SUBSCRIPTION_PREFIX + subscription.encode()


def counter_key(subscription: str, kind: str) -> bytes:
    return b"count/" + subscription.encode() + b"/" + kind.encode()


def topic_count_key(topic: str) -> bytes:
    return b"events/" + topic.encode()


def last_prefix(subscription: str) -> bytes:
    return b"last/" + subscription.encode() + b"/"


def last_success_key(subscription: str) -> bytes:
    return last_prefix(subscription) + b"success"


def last_failure_key(subscription: str) -> bytes:
    return last_prefix(subscription) + b"failure"


def encode_failure(wall: float, status: str | None, error: str | None) -> bytes:
    return orjson.dumps({"time": wall, "status": status, "error": error})


def decode_last(success: bytes | None, failure: bytes | None) -> LastOutcome:
    success_time = None if success is None else float(TIME.unpack(success)[0])
    if failure is None:
        return LastOutcome(success_time)
    document = orjson.loads(failure)
    return LastOutcome(success_time, document["time"], document["status"], document["error"])
