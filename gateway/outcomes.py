"""What one push attempt's result means, and what the store records next.

Classification turns an HTTP status or a transport error into a `Verdict` (ack, retry or give
up); `decide` combines that verdict with the attempt count, the next delay and the retention
deadline into the `Decision` the delivery engine persists. Both are pure so the retry rules can
be tested as tables, separately from HTTP and storage.

Status rules follow Knative's data-plane spec: 404 and 409 are retried because they happen while
a target rolls out, as are 408, 429 and every 5xx; other 4xx are permanent. Pub/Sub push differs:
it retries every non-ack response. Redirects are never followed, so a 3xx is a failed attempt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, TypeAlias


class Verdict(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    PERMANENT = "permanent"


_RETRIED_4XX = frozenset({404, 408, 409, 429})
DEFAULT_PERMANENT_STATUS: frozenset[int] = frozenset(range(400, 500)) - _RETRIED_4XX

_ERROR_VERDICTS: dict[str, Verdict] = {
    "timeout": Verdict.RETRY,
    "connect": Verdict.RETRY,
    "tls": Verdict.RETRY,
    "protocol": Verdict.RETRY,
    "egress-denied": Verdict.PERMANENT,
    "invalid-request": Verdict.PERMANENT,
}


def classify_status(status: int, permanent_codes: frozenset[int] | None = None) -> Verdict:
    """The verdict for an HTTP response status.

    `permanent_codes` (a per-subscription override) replaces `DEFAULT_PERMANENT_STATUS`: a 4xx
    in it is permanent, any other 4xx is retried. Only 4xx codes can be permanent.
    """
    if status == 102 or 200 <= status <= 299:
        return Verdict.ACK
    permanent = DEFAULT_PERMANENT_STATUS if permanent_codes is None else permanent_codes
    if 400 <= status <= 499 and status in permanent:
        return Verdict.PERMANENT
    return Verdict.RETRY


def classify_error(kind: str) -> Verdict:
    """The verdict for a transport error kind ("timeout", "egress-denied", ...); unknown retries."""
    return _ERROR_VERDICTS.get(kind, Verdict.RETRY)


DeadLetterReason: TypeAlias = Literal["exhausted", "permanent", "expired"]


@dataclass(frozen=True, slots=True)
class Ack:
    """The target accepted the event; delivery is done."""


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at `due` (epoch seconds on the scheduling clock)."""

    due: float
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Stop delivering and dead-letter the event."""

    reason: DeadLetterReason


Decision: TypeAlias = Ack | RetryAt | DeadLetter


def _decide_retry(
    *, attempts: int, max_attempts: int | None, now: float, delay: float, expires_at: float
) -> Decision:
    if max_attempts is not None and attempts >= max_attempts:
        return DeadLetter("exhausted")
    if now + delay >= expires_at:  # retention would end before the next attempt could run
        return DeadLetter("expired")
    return RetryAt(due=now + delay, reason=f"attempt {attempts} failed; retry in {delay:g}s")


def decide(
    verdict: Verdict,
    *,
    attempts: int,
    max_attempts: int | None,
    now: float,
    delay: float,
    expires_at: float,
) -> Decision:
    """What to record after an attempt; `attempts` counts attempts made, including this one."""
    if verdict is Verdict.ACK:
        return Ack()
    if verdict is Verdict.PERMANENT:
        return DeadLetter("permanent")
    return _decide_retry(
        attempts=attempts,
        max_attempts=max_attempts,
        now=now,
        delay=delay,
        expires_at=expires_at,
    )
