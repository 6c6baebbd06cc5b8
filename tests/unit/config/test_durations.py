"""Table tests for duration and size strings (gateway/config/durations.py), as users write
them in YAML."""

from __future__ import annotations

import pytest

from gateway.config.durations import DurationError, format_duration, parse_duration, parse_size

DAY = 86400.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param("10s", 10.0, id="seconds"),
        pytest.param("1.5s", 1.5, id="fractional-seconds"),
        pytest.param("0.5ms", 0.0005, id="fractional-milliseconds"),
        pytest.param("1.5m", 90.0, id="fractional-minutes"),
        pytest.param("10m", 600.0, id="minutes"),
        pytest.param("600s", 600.0, id="max-backoff-default"),
        pytest.param("24h", DAY, id="hours"),
        pytest.param("2d", 2 * DAY, id="days"),
        pytest.param("0s", 0.0, id="zero-seconds"),
        pytest.param("0ms", 0.0, id="zero-milliseconds"),
        pytest.param("PT10S", 10.0, id="iso-seconds"),
        pytest.param("PT1.5S", 1.5, id="iso-fractional-seconds"),
        pytest.param("PT1.5M", 90.0, id="iso-fractional-minutes"),
        pytest.param("PT1H30M", 5400.0, id="iso-hours-minutes"),
        pytest.param("P1D", DAY, id="iso-day"),
        pytest.param("P1DT2H", DAY + 7200.0, id="iso-day-and-hours"),
        pytest.param("P1DT2H3M4S", DAY + 7200.0 + 180.0 + 4.0, id="iso-every-part"),
        pytest.param("PT0S", 0.0, id="iso-zero"),
        pytest.param("pt10s", 10.0, id="iso-lowercase"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("90x", id="unknown-unit"),
        pytest.param("", id="empty"),
        pytest.param("P", id="iso-bare-p"),
        pytest.param("PT", id="iso-bare-pt"),
        pytest.param("PTS", id="iso-unit-without-number"),
        pytest.param("10", id="number-without-unit"),
        pytest.param("-5s", id="negative"),
        pytest.param("s", id="unit-without-number"),
        pytest.param("1e3s", id="exponent"),
        pytest.param("1h30m", id="compound-plain-form"),
        pytest.param("ten seconds", id="words"),
        pytest.param("P1W", id="iso-weeks"),
        pytest.param("P1Y", id="iso-years"),
    ],
)
def test_bad_duration_names_the_value_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    message = str(info.value)
    assert message.startswith(f"{text!r} is not a duration")
    for form in ("250ms", "10s", "24h", "PT10S"):
        assert form in message


def test_duration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("90x")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("1MiB", 1024**2, id="mebibyte"),
        pytest.param("64KiB", 64 * 1024, id="kibibytes"),
        pytest.param("1GiB", 1024**3, id="gibibyte"),
        pytest.param("10MB", 10_000_000, id="decimal-megabytes"),
        pytest.param("1kb", 1000, id="decimal-kilobyte-lowercase"),
        pytest.param("512B", 512, id="bytes-with-unit"),
        pytest.param("512", 512, id="bytes-as-string"),
        pytest.param(512, 512, id="bytes-as-int"),
        pytest.param("0", 0, id="zero"),
        pytest.param("1.5KiB", 1536, id="fractional-kibibytes"),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    result = parse_size(text)
    assert result == size
    assert isinstance(result, int)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1XB", id="unknown-unit"),
        pytest.param("", id="empty"),
        pytest.param("MiB", id="unit-without-number"),
        pytest.param("-1", id="negative"),
        pytest.param("1 MiBs", id="unit-typo"),
    ],
)
def test_bad_size_names_the_value_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_size(text)
    message = str(info.value)
    assert message.startswith(f"{text!r} is not a size")
    for form in ("512", "64KiB", "1MiB", "10MB"):
        assert form in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0.0, "0s", id="zero"),
        pytest.param(0.25, "250ms", id="sub-second"),
        pytest.param(0.001, "1ms", id="one-millisecond"),
        pytest.param(0.0005, "0.5ms", id="half-millisecond"),
        pytest.param(1.5, "1.5s", id="fractional-seconds"),
        pytest.param(10.0, "10s", id="seconds"),
        pytest.param(90.0, "90s", id="not-whole-minutes"),
        pytest.param(60.0, "1m", id="one-minute"),
        pytest.param(600.0, "10m", id="minutes"),
        pytest.param(5400.0, "90m", id="not-whole-hours"),
        pytest.param(3600.0, "1h", id="one-hour"),
        pytest.param(DAY, "24h", id="day-in-hours"),
        pytest.param(7 * DAY, "168h", id="week-in-hours"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        pytest.param("250ms", "250ms", id="milliseconds"),
        pytest.param("10s", "10s", id="seconds"),
        pytest.param("1.5s", "1.5s", id="fractional-seconds"),
        pytest.param("10m", "10m", id="minutes"),
        pytest.param("24h", "24h", id="hours"),
        pytest.param("2d", "48h", id="days-shown-in-hours"),
        pytest.param("0s", "0s", id="zero"),
        pytest.param("PT10S", "10s", id="iso-seconds"),
        pytest.param("P1DT2H", "26h", id="iso-day-and-hours"),
        pytest.param("PT1.5M", "90s", id="iso-fractional-minutes"),
        pytest.param("600s", "10m", id="seconds-shown-in-minutes"),
        pytest.param("0.1s", "100ms", id="tenth-of-second"),
    ],
)
def test_format_duration_round_trips(written: str, shown: str) -> None:
    seconds = parse_duration(written)
    assert format_duration(seconds) == shown
    assert parse_duration(shown) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(1036800.5, id="twelve-days-and-a-half-second"),
        pytest.param(172800.5, id="two-days-and-a-half-second"),
    ],
)
def test_format_duration_of_large_fractional_value_parses_back_exactly(seconds: float) -> None:
    # What the admin API shows (format_duration) must be accepted back, unchanged, by PUT.
    assert parse_duration(format_duration(seconds)) == seconds
