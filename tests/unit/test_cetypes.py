"""Table tests for gateway/cetypes.py: the CloudEvents type system and HTTP header values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway import cetypes


def ok(check: Callable[[Any], None], value: Any) -> bool:
    try:
        check(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("/cloudevents/spec/pull/123", True),
        ("https://github.com/cloudevents", True),
        ("mailto:cncf-wg-serverless@lists.cncf.io", True),
        ("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", True),
        ("1-555-123-4567", True),
        ("http://[::1]:8080/a?b=c#d", True),
        ("/a%20b", True),
        ("/a b", False),
        ("/\u00e9t\u00e9", False),
        (":no-scheme", False),
        ("/a#b#c", False),
        ("/bad%zz", False),
    ],
)
def test_uri_reference(value: str, valid: bool) -> None:
    assert ok(cetypes.check_uri_reference, value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [("https://example.com/s.json", True), ("urn:x:y", True), ("/relative", False), ("", False)],
)
def test_absolute_uri(value: str, valid: bool) -> None:
    assert ok(cetypes.check_uri, value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2018-04-05T17:31:00Z", True),
        ("2018-04-05t17:31:00.123456789z", True),
        ("2018-04-05T19:31:00+02:00", True),
        ("2016-12-31T23:59:60Z", True),  # a leap second is RFC 3339
        ("2018-04-05T17:31:00", False),
        ("2018-04-05", False),
        ("2018-04-05 17:31:00Z", False),
        ("2018-02-30T00:00:00Z", False),
        ("2018-04-05T24:00:00Z", False),
        ("2018-04-05T17:31:00+24:00", False),
        ("\u0662\u0660\u0661\u0668-04-05T17:31:00Z", False),  # digits are ASCII digits
    ],
)
def test_timestamp(value: str, valid: bool) -> None:
    assert ok(cetypes.check_timestamp, value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ('text/plain; charset="utf-8"', True),
        ("application/vnd.apache.thrift.binary", True),
        ("json", False),
        ("text/plain;\tcharset=utf-8", False),
        ("text/plain\u0007", False),
        ("text/pl\u00e4in", False),
    ],
)
def test_media_type(value: str, valid: bool) -> None:
    assert ok(cetypes.check_media_type, value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (0, True),
        (2**31 - 1, True),
        (-(2**31), True),
        (2**31, False),
        (-(2**31) - 1, False),
        (5.0, False),
        (5.5, False),
    ],
)
def test_integer(value: Any, valid: bool) -> None:
    assert ok(cetypes.check_integer, value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("Euro \u20ac \U0001f600", True),
        ("a\u0000b", False),
        ("a\u001fb", False),
        ("a\u007fb", False),
        ("a\u009fb", False),
        ("a\ufdd0b", False),
        ("a\uffffb", False),
        ("a\U0010fffeb", False),
    ],
)
def test_string(value: str, valid: bool) -> None:
    assert ok(cetypes.check_string, value) is valid


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        pytest.param("plain", "plain", id="plain"),
        pytest.param(
            "Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro \u20ac \U0001f600", id="spec-example"
        ),
        pytest.param("%e2%82%ac", "\u20ac", id="lowercase-hex"),
        pytest.param("%41", "A", id="unnecessary-encoding"),
        pytest.param('"a \\"q\\" b"', 'a "q" b', id="quoted-string"),
        pytest.param('"100%25"', "100%", id="quoted-then-percent"),
        pytest.param("100%", "100%", id="bare-percent-is-literal"),
    ],
)
def test_header_values_decode(raw: str, decoded: str) -> None:
    assert cetypes.decode_header_value(raw) == decoded


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("%FF", "not valid UTF-8", id="ff"),
        pytest.param("%C0%A0", "not valid UTF-8", id="overlong"),
        pytest.param("%ED%A0%80", "not valid UTF-8", id="encoded-surrogate"),
        pytest.param("%00", r"U\+0000", id="nul"),
        pytest.param("caf\u00e9", "printable US-ASCII", id="raw-non-ascii"),
        pytest.param("a\tb", "printable US-ASCII", id="tab"),
        pytest.param('"open', "unterminated", id="unterminated-quote"),
    ],
)
def test_header_values_refused(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        cetypes.decode_header_value(raw)


@pytest.mark.parametrize(
    ("value", "header"),
    [(True, "true"), (False, "false"), (-7, "-7"), ('a "b" 100%', "a%20%22b%22%20100%25")],
)
def test_header_value_is_the_canonical_string_percent_encoded(value: Any, header: str) -> None:
    assert cetypes.header_value(value) == header
    assert cetypes.decode_header_value(header) == (value if isinstance(value, str) else header)


def test_the_body_prefilter_finds_every_way_to_spell_a_disallowed_character() -> None:
    assert not cetypes.may_hold_disallowed(b'{"a": "plain \xc3\xa9"}')
    for body in (
        b'"\\u0001"',
        b'"\x7f"',
        "\u0085".encode(),
        "\ufffe".encode(),
        "\U0001ffff".encode(),
    ):
        assert cetypes.may_hold_disallowed(body), body
