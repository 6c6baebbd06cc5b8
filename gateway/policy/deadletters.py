"""The extension attributes a dead-lettered event carries, and their removal on redrive.

A dead-lettered event keeps its payload and attributes and gains `dl*` extensions saying which
subscription gave up, why, after how many attempts and what the last attempt saw. Names follow
the CloudEvents rule for extensions (lowercase letters and digits, at most 20 characters) and
values are strings so every binding can carry them. Redrive strips exactly these names, so an
event that is dead-lettered again does not carry stale details from an earlier failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from gateway.policy import stored
from gateway.policy.names import DISALLOWED_IN_STRING

DL_ATTRIBUTES: Final = (
    "dlsubscription",
    "dlreason",
    "dlattempts",
    "dlstatus",
    "dlerror",
    "dlbody",
    "dltime",
)
MAX_DL_BODY: Final = 1024
MAX_DL_ERROR: Final = 256

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Failure:
    """What the last attempt saw.

    `status` is an HTTP status ("503") or an error kind ("timeout", "egress-denied"); None when
    the event was never attempted. `body` is the response body, possibly longer than 1 KiB.
    """

    status: str | None
    error: str | None
    body: bytes | None


def _truncate_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8 without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def body_text(body: bytes) -> str:
    """`body` as a CloudEvents String (undecodable bytes and characters a String may not hold,
    such as a newline, replaced by U+FFFD), at most MAX_DL_BODY bytes encoded."""
    # Each input byte decodes to at least one output byte, so the first MAX_DL_BODY bytes of
    # output come from the first MAX_DL_BODY input bytes; 4 more cover a character cut short.
    text = body[: MAX_DL_BODY + 4].decode("utf-8", errors="replace")
    return _truncate_utf8(as_string(text), MAX_DL_BODY)


def as_string(text: str) -> str:
    """`text` with what a CloudEvents String may not hold replaced by U+FFFD (a dead letter's
    attributes are ones the gateway's own ingress would accept)."""
    return DISALLOWED_IN_STRING.sub("\ufffd", text)


def rfc3339_utc(at: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds and 'Z' (2027-01-15T08:00:00.123Z)."""
    moment = _EPOCH + timedelta(milliseconds=round(at * 1000))
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _failure_attributes(failure: Failure) -> dict[str, str]:
    attributes: dict[str, str] = {}
    if failure.status is not None:
        attributes["dlstatus"] = failure.status
    if failure.error is not None:
        attributes["dlerror"] = as_string(failure.error[:MAX_DL_ERROR])
    if failure.body:
        attributes["dlbody"] = body_text(failure.body)
    return attributes


def dead_letter_attributes(
    *, subscription: str, reason: str, attempts: int, failure: Failure, at: float
) -> dict[str, str]:
    """The `dl*` extension attributes for an event dead-lettered at `at` (epoch seconds)."""
    return {
        "dlsubscription": subscription,
        "dlreason": reason,
        "dlattempts": str(attempts),
        **_failure_attributes(failure),
        "dltime": rfc3339_utc(at),
    }


def strip_dead_letter_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """`attributes` without the DL_ATTRIBUTES keys (for redrive); everything else is kept."""
    return {name: value for name, value in attributes.items() if name not in DL_ATTRIBUTES}


def dead_letter_payload(payload: bytes, attributes: Mapping[str, str]) -> bytes:
    """The stored (structured JSON) event with `attributes` added: what the dead-letter topic
    keeps. Earlier `dl*` attributes are replaced, never stacked."""
    original = orjson.loads(payload)
    document = strip_dead_letter_attributes(original)
    document.update(attributes)
    return stored.dumps(document, stored.data_text(payload, original))


def redriven_payload(payload: bytes) -> bytes:
    """A dead letter made deliverable again: the original event, without the `dl*` attributes
    (JSON data kept as the text that was stored, gateway.policy.stored)."""
    original = orjson.loads(payload)
    return stored.dumps(strip_dead_letter_attributes(original), stored.data_text(payload, original))
