"""Backoff arithmetic: exponential with jitter, explicit schedules, Retry-After, closed forms."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from gateway.policy.backoff import RetryPolicy, backoff_delay, next_delay, retry_after_seconds
from gateway.policy.outcomes import DeadLetter, RetryAt, Verdict, decide

DEFAULT = RetryPolicy()
NO_JITTER = 0.5  # rand=0.5 makes the jitter factor exactly 1
NOW = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


@pytest.mark.parametrize(
    ("failed_attempts", "expected"),
    [
        pytest.param(1, 10.0, id="first-failure-min"),
        pytest.param(2, 20.0, id="second-doubles"),
        pytest.param(3, 40.0, id="third"),
        pytest.param(6, 320.0, id="sixth-below-cap"),
        pytest.param(7, 600.0, id="seventh-capped"),
        pytest.param(50, 600.0, id="fiftieth-capped"),
        pytest.param(10_000, 600.0, id="huge-no-overflow"),
        pytest.param(10**18, 600.0, id="astronomical-no-overflow"),
    ],
)
def test_exponential_without_jitter(failed_attempts: int, expected: float) -> None:
    assert backoff_delay(DEFAULT, failed_attempts, NO_JITTER) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("failed_attempts", "rand", "expected"),
    [
        pytest.param(1, 0.0, 9.0, id="min-low-edge-minus-10pct"),
        pytest.param(1, 0.75, 10.5, id="min-plus-5pct"),
        pytest.param(1, 0.999999, 10.999998, id="min-high-edge"),
        pytest.param(3, 0.0, 36.0, id="third-minus-10pct"),
        pytest.param(3, 0.25, 38.0, id="third-minus-5pct"),
        pytest.param(7, 0.0, 540.0, id="capped-can-jitter-down"),
        pytest.param(7, 0.999999, 540.00012, id="capped-folds-back-below-max"),
        pytest.param(7, 0.75, 570.0, id="capped-plus-5pct-folds-to-minus-5pct"),
        pytest.param(6, 0.999999, 351.999936, id="below-cap-jitters-up"),
    ],
)
def test_exponential_jitter(failed_attempts: int, rand: float, expected: float) -> None:
    assert backoff_delay(DEFAULT, failed_attempts, rand) == pytest.approx(expected)


def test_capped_retries_are_spread_not_piled_on_the_cap() -> None:
    delays = {round(backoff_delay(DEFAULT, 20, k / 100), 3) for k in range(100)}
    assert len(delays) >= 50
    assert all(540.0 <= delay <= 600.0 for delay in delays)


@pytest.mark.parametrize("rand", [0.0, 0.1, 0.5, 0.9, 0.999999])
@pytest.mark.parametrize("failed_attempts", [1, 2, 5, 6, 7, 8, 100])
def test_jitter_stays_within_ten_percent_and_max(failed_attempts: int, rand: float) -> None:
    base = min(10.0 * 2 ** (failed_attempts - 1), 600.0)
    delay = backoff_delay(DEFAULT, failed_attempts, rand)
    assert base * 0.9 <= delay <= min(base * 1.1, 600.0)


@pytest.mark.parametrize(
    ("policy", "failed_attempts", "rand", "expected"),
    [
        pytest.param(RetryPolicy(minimum_backoff=0.0), 5, 0.9, 0.0, id="zero-min-is-zero"),
        pytest.param(RetryPolicy(minimum_backoff=1.0, jitter=0.0), 4, 0.0, 8.0, id="no-jitter"),
        pytest.param(
            RetryPolicy(minimum_backoff=1.0, maximum_backoff=5.0), 10, 0.5, 5.0, id="small-max"
        ),
        pytest.param(
            RetryPolicy(minimum_backoff=1e300, maximum_backoff=1e308),
            2000,
            0.5,
            1e308,
            id="huge-min-no-overflow",
        ),
        pytest.param(
            RetryPolicy(minimum_backoff=1e-300, maximum_backoff=1.0),
            10**9,
            0.5,
            1.0,
            id="tiny-min-still-reaches-max",
        ),
    ],
)
def test_exponential_policy_variants(
    policy: RetryPolicy, failed_attempts: int, rand: float, expected: float
) -> None:
    assert backoff_delay(policy, failed_attempts, rand) == pytest.approx(expected)


SCHEDULE = RetryPolicy(schedule=(1.0, 5.0, 30.0))


@pytest.mark.parametrize(
    ("failed_attempts", "rand", "expected"),
    [
        pytest.param(1, 0.5, 1.0, id="first-entry"),
        pytest.param(2, 0.5, 5.0, id="second-entry"),
        pytest.param(3, 0.5, 30.0, id="last-entry"),
        pytest.param(4, 0.5, 30.0, id="past-end-repeats-last"),
        pytest.param(10**12, 0.5, 30.0, id="far-past-end"),
        pytest.param(1, 0.0, 1.0, id="no-jitter-low-rand"),
        pytest.param(2, 0.999999, 5.0, id="no-jitter-high-rand"),
    ],
)
def test_schedule(failed_attempts: int, rand: float, expected: float) -> None:
    assert backoff_delay(SCHEDULE, failed_attempts, rand) == expected


def test_schedule_replaces_exponential_even_above_maximum() -> None:
    policy = RetryPolicy(maximum_backoff=600.0, schedule=(900.0,))
    assert backoff_delay(policy, 1, 0.5) == 900.0


@pytest.mark.parametrize(
    "failed_attempts",
    [pytest.param(0, id="zero"), pytest.param(-1, id="negative")],
)
def test_failed_attempts_must_be_positive(failed_attempts: int) -> None:
    with pytest.raises(ValueError, match="failed_attempts"):
        backoff_delay(DEFAULT, failed_attempts, 0.5)
    with pytest.raises(ValueError, match="failed_attempts"):
        next_delay(DEFAULT, failed_attempts, 0.5, 5.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"minimum_backoff": -1.0}, id="negative-min"),
        pytest.param({"minimum_backoff": 10.0, "maximum_backoff": 5.0}, id="min-above-max"),
        pytest.param({"jitter": -0.1}, id="negative-jitter"),
        pytest.param({"jitter": 1.5}, id="jitter-above-one"),
        pytest.param({"schedule": (1.0, -2.0)}, id="negative-schedule-entry"),
        pytest.param({"schedule": (math.nan,)}, id="nan-schedule-entry"),
    ],
)
def test_invalid_policy_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULT.minimum_backoff = 1.0  # type: ignore[misc]


# --- Retry-After -------------------------------------------------------------------------------


def _http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, tz=UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("0", 0.0, id="zero-seconds"),
        pytest.param("120", 120.0, id="delta-seconds"),
        pytest.param(" 30 ", 30.0, id="delta-with-whitespace"),
        pytest.param("007", 7.0, id="leading-zeros"),
        pytest.param("-5", None, id="negative-delta"),
        pytest.param("1.5", None, id="fractional-delta"),
        pytest.param("+5", None, id="signed-delta"),
        pytest.param("\u0661\u0662", None, id="non-ascii-digits"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("Wed, 32 Oct 2027 07:28:00 GMT", None, id="impossible-date"),
        pytest.param(_http_date(NOW + 90), 90.0, id="http-date-future"),
        pytest.param(_http_date(NOW), 0.0, id="http-date-now"),
        pytest.param(_http_date(NOW - 3600), 0.0, id="http-date-past-is-zero"),
        pytest.param("Fri, 15 Jan 2027 09:00:00 GMT", 3600.0, id="literal-imf-fixdate"),
        pytest.param("Friday, 15-Jan-27 08:00:30 GMT", 30.0, id="obsolete-rfc850-date"),
        pytest.param("Fri Jan 15 08:00:30 2027", 30.0, id="obsolete-asctime-is-utc"),
        pytest.param("Fri, 15 Jan 2027 08:01:00 -0000", 60.0, id="minus-zero-zone-is-utc"),
        pytest.param("Fri, 15 Jan 2027 10:00:00 +0200", 0.0, id="offset-zone"),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected


def test_retry_after_huge_delta_is_capped_by_next_delay() -> None:
    huge = retry_after_seconds("9" * 500, NOW)
    assert huge is not None and huge > 1e300
    assert next_delay(DEFAULT, 1, 0.5, huge) == 600.0


@pytest.mark.parametrize(
    ("failed_attempts", "retry_after", "expected"),
    [
        pytest.param(1, None, 10.0, id="absent-uses-backoff"),
        pytest.param(3, None, 40.0, id="absent-uses-backoff-third"),
        pytest.param(1, 120.0, 120.0, id="honoured-above-backoff"),
        pytest.param(5, 2.0, 2.0, id="honoured-below-backoff"),
        pytest.param(1, 0.0, 0.0, id="zero-honoured"),
        pytest.param(1, 3600.0, 600.0, id="capped-at-max"),
        pytest.param(1, math.inf, 600.0, id="infinite-capped"),
        pytest.param(1, -5.0, 0.0, id="negative-clamped"),
        pytest.param(2, math.nan, 20.0, id="nan-ignored"),
    ],
)
def test_next_delay(failed_attempts: int, retry_after: float | None, expected: float) -> None:
    assert next_delay(DEFAULT, failed_attempts, NO_JITTER, retry_after) == pytest.approx(expected)


def test_next_delay_retry_after_wins_over_schedule() -> None:
    assert next_delay(SCHEDULE, 1, 0.5, 7.0) == 7.0
    assert next_delay(SCHEDULE, 1, 0.5, None) == 1.0


# --- closed form (min 10 s, max 600 s, no jitter) ----------------------------------------------


def closed_form_sum(n: int) -> float:
    """Sum of the first n gaps: 10 * (2^n - 1) up to the sixth, then 600 per gap."""
    if n <= 6:
        return 10.0 * (2.0**n - 1)
    return 630.0 + 600.0 * (n - 6)


def closed_form_attempts(window: float) -> int:
    """Attempts started strictly inside `window` seconds, counting the first one at t=0."""
    if window <= 630.0:
        return 1 + sum(1 for n in range(1, 7) if closed_form_sum(n) < window)
    return 7 + math.ceil((window - 630.0) / 600.0) - 1


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(1, 10.0, id="one-gap"),
        pytest.param(3, 70.0, id="three-gaps"),
        pytest.param(6, 630.0, id="six-gaps-last-uncapped"),
        pytest.param(7, 1230.0, id="seven-gaps-first-capped"),
        pytest.param(20, 630.0 + 14 * 600.0, id="twenty-gaps"),
        pytest.param(148, 85830.0, id="last-gap-inside-a-day"),
        pytest.param(149, 86430.0, id="first-gap-past-a-day"),
    ],
)
def test_sum_of_first_n_delays(n: int, expected: float) -> None:
    total = sum(backoff_delay(DEFAULT, k, NO_JITTER) for k in range(1, n + 1))
    assert total == pytest.approx(expected)
    assert closed_form_sum(n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        pytest.param(DAY, 149, id="24h"),
        pytest.param(3600.0, 11, id="1h"),
        pytest.param(630.0, 6, id="exactly-six-gaps-excluded"),
        pytest.param(1.0, 1, id="tiny-window-first-only"),
    ],
)
def test_attempts_in_window(window: float, expected: int) -> None:
    """Replay delivery with `decide` until retention expires; count attempts made."""
    attempts, now = 0, 0.0
    while True:
        attempts += 1
        delay = next_delay(DEFAULT, attempts, NO_JITTER, None)
        decision = decide(
            Verdict.RETRY,
            attempts=attempts,
            max_attempts=None,
            now=now,
            delay=delay,
            expires_at=window,
        )
        if not isinstance(decision, RetryAt):
            assert decision == DeadLetter("expired")
            break
        now = decision.due
    assert attempts == expected
    assert closed_form_attempts(window) == expected
