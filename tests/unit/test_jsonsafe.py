"""gateway.jsonsafe: client JSON parsed with the JSON format's rules and a depth limit."""

from __future__ import annotations

import pytest

from gateway.jsonsafe import MAX_DEPTH, depth, loads_limited
from gateway.problems import InvalidRequest


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_json_at_the_depth_limit_is_parsed() -> None:
    value = loads_limited(nested(MAX_DEPTH), what="body")
    assert depth(value) == MAX_DEPTH


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 10_000])
def test_json_deeper_than_the_limit_is_refused_naming_the_location(levels: int) -> None:
    with pytest.raises(InvalidRequest) as raised:
        loads_limited(nested(levels), what="subscription")
    assert raised.value.field == "subscription"
    assert raised.value.detail == f"subscription is nested more than {MAX_DEPTH} levels deep"


def test_objects_count_as_levels_too() -> None:
    body = b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1)
    with pytest.raises(InvalidRequest, match="nested more than"):
        loads_limited(body, what="body")


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    body = b'{"text": "' + b"[" * 10_000 + b'"}'
    assert loads_limited(body, what="body") == {"text": "[" * 10_000}


@pytest.mark.parametrize(
    "body", [b"NaN", b"[Infinity]", b"-Infinity", b"1e100000", b'{"a": -1e400}', b"[1,]"]
)
def test_what_the_json_format_does_not_allow_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON") as raised:
        loads_limited(body, what="body")
    assert raised.value.field == "body"


@pytest.mark.parametrize(
    "body", [b"[12345678901234567890123]", b'{"n": -99999999999999999999}', b"18446744073709551616"]
)
def test_integers_beyond_64_bits_are_refused_not_rounded(body: bytes) -> None:
    with pytest.raises(InvalidRequest, match="outside the 64-bit range"):
        loads_limited(body, what="body")


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b"18446744073709551615", 2**64 - 1),
        (b"-9223372036854775808", -(2**63)),
        (b'{"card": "12345678901234567890123"}', {"card": "12345678901234567890123"}),
    ],
)
def test_64_bit_integers_and_long_digit_strings_are_kept(body: bytes, value: object) -> None:
    assert loads_limited(body, what="body") == value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"maxDeliveryAttempts": 99999999999999999999999}', "maxDeliveryAttempts"),
        (
            b'{"retryPolicy": {"schedule": ["1s", 1, 123456789012345678901234]}}',
            "retryPolicy.schedule[2]",
        ),
        (b"[0, -99999999999999999999999]", "[1]"),
    ],
    ids=["top-level field", "nested list item", "array element"],
)
def test_a_huge_integer_is_refused_naming_where_it_is(body: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        loads_limited(body, what="body")
    assert refused.value.field == field
    assert field in str(refused.value)
