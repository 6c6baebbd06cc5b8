"""The CloudEvents type system (core spec "Type System"), and HTTP header values (HTTP protocol
binding 3.1.3.2): pure checks and conversions, each raising ValueError with the reason.

- String: no control characters (U+0000-U+001F, U+007F-U+009F), no Unicode noncharacters, no
  unpaired surrogates.
- Integer: a whole number in the signed 32-bit range; in JSON only the integer component, so
  `5.0` and `1e3` are not Integers (JSON format 2.2).
- Boolean: `true` / `false` as strings (1.0 only; spec 0.3 has no Boolean).
- URI (absolute) and URI-reference: RFC 3986 section 4.3 and 4.1.
- Timestamp: RFC 3339 `date-time` (section 5.6), with a valid calendar date and time of day.
- Media types (`datacontenttype`, RFC 2046 via RFC 9110 section 8.3.1): `type/subtype` and
  parameters, printable US-ASCII only.

Header values are unescaped from an RFC 7230 quoted-string, then percent-decoded once; bytes that
are not valid UTF-8 (`%FF`, the overlong `%C0%A0`, an encoded surrogate) are refused rather than
replaced with U+FFFD, which would make distinct ids collide.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Final
from urllib.parse import quote, unquote_to_bytes

from gateway.policy.names import DISALLOWED_IN_STRING

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1

_DISALLOWED = DISALLOWED_IN_STRING
# JSON's short escapes of control characters (\b \f \n \r \t), see may_hold_disallowed.
# The UTF-8 of C1 controls and noncharacters (see may_hold_disallowed).
_SUSPECT_UTF8: Final = re.compile(
    rb"\xc2[\x80-\x9f]|\xef\xb7[\x90-\xaf]|\xef\xbf[\xbe\xbf]|[\xf0-\xf4][\x8f\x9f\xaf\xbf]\xbf[\xbe\xbf]"
)

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))"
)

_PCT = r"%[0-9A-Fa-f]{2}"
_UNRESERVED_SUB = r"A-Za-z0-9\-._~!$&'()*+,;="
_PCHAR = rf"(?:[{_UNRESERVED_SUB}:@]|{_PCT})"
_AUTHORITY = (
    rf"(?:(?:[{_UNRESERVED_SUB}:]|{_PCT})*@)?"  # userinfo
    rf"(?:\[[0-9A-Za-z:.{_UNRESERVED_SUB}]+\]|(?:[{_UNRESERVED_SUB}]|{_PCT})*)"  # host
    r"(?::[0-9]*)?"  # port
)
_TAIL = rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:\#(?:{_PCHAR}|[/?])*)?"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*"
_HIER = rf"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/?(?:{_PCHAR}+(?:/{_PCHAR}*)*)?)"
_ABSOLUTE_URI = re.compile(rf"{_SCHEME}:{_HIER}{_TAIL}")
_NOSCHEME_SEGMENT = rf"(?:[{_UNRESERVED_SUB}@]|{_PCT})+"
_RELATIVE_REF = re.compile(
    rf"(?://{_AUTHORITY}(?:/{_PCHAR}*)*|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?"
    rf"|{_NOSCHEME_SEGMENT}(?:/{_PCHAR}*)*|){_TAIL}"
)

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+"
_MEDIA_TYPE = re.compile(
    # Spaces before a `;` belong to that `;` alone and trailing ones to the end: no two
    # repeats can take the same spaces (an ambiguous form backtracked exponentially, ReDoS).
    rf"{_TOKEN}/{_TOKEN}(?:(?: *;(?: *{_TOKEN}=(?:{_TOKEN}|\"(?:[ !#-\[\]-~]|\\[ -~])*\"))?)+ *)?"
)
# Header values we send: the binding's percent-encoding (3.1.3.2) keeps printable ASCII except
# space, double quote and percent.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')


def may_hold_disallowed(body: bytes) -> bool:
    """Whether a JSON text may hold a String with a disallowed character: only through an escape
    (`\\u`, or a short one such as `\\n`), a raw DEL, or non-ASCII UTF-8 (substring checks at
    memory speed, the regex only for the non-ASCII rest)."""
    if b"\\u" in body or b"\x7f" in body or _has_short_escape(body):
        return True
    return not body.isascii() and _SUSPECT_UTF8.search(body) is not None


def _has_short_escape(body: bytes) -> bool:
    return b"\\n" in body or b"\\t" in body or b"\\r" in body or b"\\b" in body or b"\\f" in body


def check_string(value: str) -> None:
    found = _DISALLOWED.search(value)
    if found is not None:
        raise ValueError(
            f"contains U+{ord(found.group()):04X}, which a CloudEvents String does not allow"
            " (control characters, noncharacters and unpaired surrogates)"
        )


def check_integer(value: Any) -> None:
    """A JSON number that is a CloudEvents Integer; bool is not one."""
    if isinstance(value, float):
        raise ValueError(
            f"{value!r} is not a CloudEvents Integer (only whole numbers, no fraction)"
        )
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{value} is outside the CloudEvents Integer range (signed 32-bit)")


def check_timestamp(value: str) -> None:
    found = _TIMESTAMP.fullmatch(value)
    if found is None or not _valid_moment(found):
        raise ValueError(
            f"{value!r} is not an RFC 3339 timestamp; use forms like 2024-05-06T07:08:09Z or "
            "2024-05-06T09:08:09.5+02:00"
        )


def _valid_moment(found: re.Match[str]) -> bool:
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    try:
        date(year, month, day)
    except ValueError:
        return False
    offset_ok = found.group(7) is None or (int(found.group(7)) < 24 and int(found.group(8)) < 60)
    return hour < 24 and minute < 60 and second <= 60 and offset_ok


def check_uri(value: str) -> None:
    if _ABSOLUTE_URI.fullmatch(value) is None:
        raise ValueError(f"{value!r} is not an absolute URI (RFC 3986 section 4.3)")


def check_uri_reference(value: str) -> None:
    if _ABSOLUTE_URI.fullmatch(value) is None and _RELATIVE_REF.fullmatch(value) is None:
        raise ValueError(
            f"{value!r} is not a URI-reference (RFC 3986 section 4.1); percent-encode spaces and"
            " other characters outside the URI syntax"
        )


def check_media_type(value: str) -> None:
    if _MEDIA_TYPE.fullmatch(value) is None:
        raise ValueError(
            f"{value!r} is not a media type (RFC 2046: type/subtype with optional parameters, "
            "printable US-ASCII)"
        )


def decode_header_value(raw: str) -> str:
    """An attribute's value from its HTTP header: quoted-string unescaped, then one round of
    percent-decoding as UTF-8 (HTTP binding 3.1.3.2)."""
    if not (raw.isascii() and raw.isprintable()):
        raise ValueError(
            "holds characters outside printable US-ASCII; percent-encode them as UTF-8 (HTTP "
            "binding 3.1.3.2)"
        )
    text = _unquote(raw) if '"' in raw else raw
    if "%" not in text:
        return text
    try:
        decoded = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            "percent-encodes bytes that are not valid UTF-8 (HTTP binding 3.1.3.2 requires"
            " rejecting them)"
        ) from None
    check_string(decoded)
    return decoded


def _unquote(raw: str) -> str:
    """Unescape the RFC 7230 section 3.2.6 quoted-strings in a header value."""
    out: list[str] = []
    quoted = False
    escaped = False
    for char in raw:
        if escaped:
            out.append(char)
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        else:
            out.append(char)
    if quoted or escaped:
        raise ValueError("has an unterminated quoted-string (RFC 7230 section 3.2.6)")
    return "".join(out)


def header_value(value: Any) -> str:
    """An attribute value's canonical string form, percent-encoded for an HTTP header."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return quote(str(value), safe=_HEADER_SAFE)
