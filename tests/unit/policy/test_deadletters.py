"""Dead-letter extension attributes: names, string values, truncation and stripping on redrive."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.policy.deadletters import (
    DL_ATTRIBUTES,
    MAX_DL_BODY,
    Failure,
    as_string,
    body_text,
    dead_letter_attributes,
    rfc3339_utc,
    strip_dead_letter_attributes,
)

EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
AT = datetime(2027, 1, 15, 8, 0, 0, 123000, tzinfo=UTC).timestamp()
FULL = Failure(status="503", error="Service Unavailable", body=b'{"error":"busy"}')
NEVER = Failure(status=None, error=None, body=None)


def _attributes(
    failure: Failure, *, attempts: int = 5, reason: str = "exhausted"
) -> dict[str, str]:
    return dead_letter_attributes(
        subscription="orders-push", reason=reason, attempts=attempts, failure=failure, at=AT
    )


def test_contract_constants() -> None:
    assert DL_ATTRIBUTES == (
        "dlsubscription",
        "dlreason",
        "dlattempts",
        "dlstatus",
        "dlerror",
        "dlbody",
        "dltime",
    )
    assert MAX_DL_BODY == 1024


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in DL_ATTRIBUTES])
def test_names_are_valid_cloudevents_extensions(name: str) -> None:
    assert EXTENSION_NAME.match(name)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(FULL, id="full-failure"),
        pytest.param(NEVER, id="never-attempted"),
        pytest.param(Failure("timeout", "read timed out", None), id="timeout"),
    ],
)
def test_produced_names_are_valid_and_known(failure: Failure) -> None:
    attributes = _attributes(failure)
    for name, value in attributes.items():
        assert EXTENSION_NAME.match(name), name
        assert name in DL_ATTRIBUTES
        assert isinstance(value, str)


def test_full_failure_attributes() -> None:
    assert _attributes(FULL) == {
        "dlsubscription": "orders-push",
        "dlreason": "exhausted",
        "dlattempts": "5",
        "dlstatus": "503",
        "dlerror": "Service Unavailable",
        "dlbody": '{"error":"busy"}',
        "dltime": "2027-01-15T08:00:00.123Z",
    }


@pytest.mark.parametrize(
    ("failure", "absent"),
    [
        pytest.param(NEVER, {"dlstatus", "dlerror", "dlbody"}, id="never-attempted-omits-all"),
        pytest.param(Failure("503", None, b"x"), {"dlerror"}, id="no-error"),
        pytest.param(Failure(None, "boom", b"x"), {"dlstatus"}, id="no-status"),
        pytest.param(Failure("503", "boom", None), {"dlbody"}, id="no-body"),
        pytest.param(Failure("503", "boom", b""), {"dlbody"}, id="empty-body"),
    ],
)
def test_missing_details_are_omitted(failure: Failure, absent: set[str]) -> None:
    attributes = _attributes(failure)
    assert absent.isdisjoint(attributes)
    assert set(attributes) | absent == set(DL_ATTRIBUTES)


@pytest.mark.parametrize(
    ("status", "reason", "attempts"),
    [
        pytest.param("timeout", "exhausted", 12, id="error-kind-status"),
        pytest.param("egress-denied", "permanent", 1, id="permanent"),
        pytest.param("404", "expired", 149, id="expired"),
    ],
)
def test_values_are_passed_through_as_strings(status: str, reason: str, attempts: int) -> None:
    attributes = _attributes(Failure(status, None, None), attempts=attempts, reason=reason)
    assert attributes["dlstatus"] == status
    assert attributes["dlreason"] == reason
    assert attributes["dlattempts"] == str(attempts)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param("short", "short", id="short-kept"),
        pytest.param("e" * 256, "e" * 256, id="exactly-256-kept"),
        pytest.param("e" * 257, "e" * 256, id="257-cut"),
        pytest.param("\u00e9" * 300, "\u00e9" * 256, id="counts-characters-not-bytes"),
        pytest.param("", "", id="empty-kept"),
    ],
)
def test_error_truncated_to_256_characters(error: str, expected: str) -> None:
    assert _attributes(Failure("503", error, None))["dlerror"] == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"a" * 1024, "a" * 1024, id="ascii-exactly-1024"),
        pytest.param(b"a" * 5000, "a" * 1024, id="ascii-long-cut"),
        pytest.param(b"a" * 1023 + "\u00e9".encode(), "a" * 1023, id="2-byte-char-not-split"),
        pytest.param(b"a" * 1022 + "\u00e9".encode(), "a" * 1022 + "\u00e9", id="2-byte-fits"),
        pytest.param(b"a" * 1022 + "\u20ac".encode(), "a" * 1022, id="3-byte-char-not-split"),
        pytest.param(b"a" * 1021 + "\U0001f600".encode(), "a" * 1021, id="4-byte-char-not-split"),
        pytest.param("\U0001f600".encode() * 300, "\U0001f600" * 256, id="emoji-exactly-256-fit"),
        pytest.param("\u20ac".encode() * 400, "\u20ac" * 341, id="euro-341-fit"),
        pytest.param(b"\xff\xfe", "\ufffd\ufffd", id="invalid-bytes-replaced"),
        pytest.param(b"a" * 1022 + b"\xff", "a" * 1022, id="replacement-char-not-split"),
        pytest.param(b"a" * 1021 + b"\xff", "a" * 1021 + "\ufffd", id="replacement-char-fits"),
        pytest.param(b'{"error": "bad"}\n', '{"error": "bad"}\ufffd', id="newline-replaced"),
        pytest.param(b"a\x00b\tc\x7f", "a\ufffdb\ufffdc\ufffd", id="controls-replaced"),
        pytest.param("\u0085\ufffe".encode(), "\ufffd\ufffd", id="c1-and-nonchar-replaced"),
    ],
)
def test_body_truncated_to_1024_utf8_bytes(body: bytes, expected: str) -> None:
    text = _attributes(Failure("503", None, body))["dlbody"]
    assert text == expected
    assert len(text.encode("utf-8")) <= MAX_DL_BODY


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff" * 2000, id="all-invalid"),
        pytest.param("\u00e9".encode() * 1000, id="two-byte-run"),
        pytest.param(b"a" + "\u20ac".encode() * 1000, id="three-byte-offset-1"),
        pytest.param(b"ab" + "\U0001f600".encode() * 600, id="four-byte-offset-2"),
        pytest.param(b"a" * 1025 + "\U0001f600".encode(), id="four-byte-past-limit"),
        pytest.param(bytes(range(256)) * 10, id="every-byte-value"),
    ],
)
def test_body_matches_decoding_the_whole_body(body: bytes) -> None:
    whole = as_string(body.decode("utf-8", errors="replace")).encode("utf-8")
    expected = whole[:MAX_DL_BODY].decode("utf-8", errors="ignore")
    assert body_text(body) == expected
    assert len(expected.encode("utf-8")) > MAX_DL_BODY - 4


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(0.0, "1970-01-01T00:00:00.000Z", id="epoch"),
        pytest.param(AT, "2027-01-15T08:00:00.123Z", id="millis"),
        pytest.param(1_800_000_000.0, "2027-01-15T08:00:00.000Z", id="whole-second"),
        pytest.param(1_800_000_000.9996, "2027-01-15T08:00:01.000Z", id="rounds-up-to-second"),
        pytest.param(1_800_000_000.0004, "2027-01-15T08:00:00.000Z", id="rounds-down"),
        pytest.param(951_782_400.5, "2000-02-29T00:00:00.500Z", id="leap-day"),
    ],
)
def test_dltime_is_rfc3339_utc(at: float, expected: str) -> None:
    assert rfc3339_utc(at) == expected
    attributes = dead_letter_attributes(
        subscription="s", reason="expired", attempts=1, failure=NEVER, at=at
    )
    assert attributes["dltime"] == expected


@pytest.mark.parametrize(
    "original",
    [
        pytest.param(
            {"id": "1", "source": "/orders", "type": "order.created", "specversion": "1.0"},
            id="plain-event",
        ),
        pytest.param(
            {"id": "2", "source": "/s", "dlsub": "keep", "traceparent": "00-ab", "dl": "x"},
            id="lookalike-names-kept",
        ),
        pytest.param({}, id="empty"),
    ],
)
def test_strip_round_trip(original: dict[str, Any]) -> None:
    dead = {**original, **_attributes(FULL)}
    assert set(DL_ATTRIBUTES) <= set(dead)
    stripped = strip_dead_letter_attributes(dead)
    assert stripped == original
    assert strip_dead_letter_attributes(stripped) == original


def test_strip_removes_partial_set_and_does_not_mutate() -> None:
    attributes: dict[str, Any] = {"id": "1", "dlreason": "permanent", "dltime": "t", "n": 3}
    assert strip_dead_letter_attributes(attributes) == {"id": "1", "n": 3}
    assert attributes == {"id": "1", "dlreason": "permanent", "dltime": "t", "n": 3}


def test_redead_letter_replaces_stale_details() -> None:
    first = {"id": "1", **_attributes(FULL)}
    redriven = strip_dead_letter_attributes(first)
    second = {**redriven, **_attributes(NEVER, attempts=2, reason="expired")}
    assert second["dlattempts"] == "2"
    assert "dlstatus" not in second and "dlbody" not in second


def test_failure_is_frozen() -> None:
    with pytest.raises(AttributeError):
        FULL.status = "200"  # type: ignore[misc]


def test_dead_letter_error_text_is_a_cloudevents_string() -> None:
    """dlbody and dlerror are attributes the gateway's own ingress would accept: no control
    characters (core spec "Type System"; found in review)."""
    attributes = _attributes(Failure("connect", "refused\r\nby peer", b"line1\nline2"))
    assert attributes["dlerror"] == "refused\ufffd\ufffdby peer"
    assert attributes["dlbody"] == "line1\ufffdline2"
