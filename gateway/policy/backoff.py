"""How long to wait before the next push attempt.

The delivery engine asks this module for the gap after a failed attempt. Keeping the arithmetic
pure (time and randomness are arguments, never read here) lets tests pin every delay exactly and
lets the engine replay a 24 h retry history in milliseconds.

Two shapes are supported: an exponential backoff (minimum * 2^(n-1), capped, with +/- jitter) and
an explicit schedule of delays. A `Retry-After` header from the target, when present, wins over
both, still capped at the policy's maximum so a target cannot park an event for days.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

# 2.0 ** 1000 is finite; beyond any sane maximum_backoff long before that, and it keeps
# `minimum_backoff * 2.0 ** exponent` from raising OverflowError for huge attempt numbers.
_MAX_EXPONENT = 1000
_DELTA_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry timing for one subscription; all durations in seconds."""

    minimum_backoff: float = 10.0
    maximum_backoff: float = 600.0
    schedule: tuple[float, ...] = ()
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.minimum_backoff <= self.maximum_backoff:
            raise ValueError(
                f"need 0 <= minimum_backoff ({self.minimum_backoff}) "
                f"<= maximum_backoff ({self.maximum_backoff})"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")
        if any(not delay >= 0 for delay in self.schedule):
            raise ValueError(f"schedule delays must be >= 0, got {self.schedule}")


def _check_attempts(failed_attempts: int) -> None:
    if failed_attempts < 1:
        raise ValueError(f"failed_attempts must be >= 1, got {failed_attempts}")


def _scheduled_delay(schedule: tuple[float, ...], failed_attempts: int) -> float:
    """The schedule's entry for this attempt; past its end, the last entry."""
    return schedule[min(failed_attempts, len(schedule)) - 1]


def _exponential_delay(policy: RetryPolicy, failed_attempts: int, rand: float) -> float:
    exponent = min(failed_attempts - 1, _MAX_EXPONENT)
    base = min(policy.minimum_backoff * 2.0**exponent, policy.maximum_backoff)
    jittered = base * (1 + policy.jitter * (2 * rand - 1))
    if jittered > policy.maximum_backoff:
        # Fold back below the cap instead of clamping: clamped retries would all land on exactly
        # maximumBackoff and stay synchronized through a long outage (RELIABILITY R11).
        jittered = 2 * policy.maximum_backoff - jittered
    return jittered


def backoff_delay(policy: RetryPolicy, failed_attempts: int, rand: float) -> float:
    """Seconds to wait after `failed_attempts` (>= 1) failures; `rand` is uniform in [0, 1)."""
    _check_attempts(failed_attempts)
    if policy.schedule:
        return _scheduled_delay(policy.schedule, failed_attempts)
    return _exponential_delay(policy, failed_attempts, rand)


def _parse_http_date(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means "UTC, source zone unknown"
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks us to wait, relative to `now` (epoch seconds).

    Accepts delta-seconds (a non-negative integer) or an HTTP-date; a date in the past gives 0.
    Returns None when the header is absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)  # an absurdly long number gives inf; next_delay caps it
    return _parse_http_date(text, now)


def next_delay(
    policy: RetryPolicy, failed_attempts: int, rand: float, retry_after: float | None
) -> float:
    """The gap before the next attempt: `retry_after` when given (capped), else the backoff."""
    _check_attempts(failed_attempts)
    if retry_after is None or math.isnan(retry_after):
        return backoff_delay(policy, failed_attempts, rand)
    return min(max(retry_after, 0.0), policy.maximum_backoff)
