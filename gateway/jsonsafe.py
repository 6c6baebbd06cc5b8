"""JSON from a client, parsed safely: what the JSON event format allows, nested no deeper than a
fixed limit.

orjson already refuses what RFC 8259 does not allow and what the JSON event format cannot carry
(`NaN`, `Infinity`, `-Infinity`, and numbers such as `1e100000` that overflow a double), and it
stops at 1,024 levels. That is still deep enough for a RecursionError in code that walks the value
later (the stdlib `json` module, `copy.deepcopy`, pydantic), so every piece of client JSON is also
held to `MAX_DEPTH` levels of arrays and objects, counted from the outermost value (`[]` and `{}`
are one level; a structured CloudEvent's `data` gets `MAX_DEPTH - 1`, in a batch `MAX_DEPTH - 2`).

Integers outside the 64-bit range are refused too: orjson would read them as doubles, so
`12345678901234567890123` would come back out as `1.2345678901234568e+22` (RFC 8259 section 6
leaves such numbers to the implementation; silently changing them is not an option).

Both checks are cheap on the hot path: a value can only be deeper than the limit if the text
holds more than `MAX_DEPTH` opening brackets (two `bytes.count` calls), and can only hold a huge
integer if it has a run of 20 digits (a translate and a substring search); only such text is
looked at again.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from gateway.problems import InvalidRequest

MAX_DEPTH: Final = 128
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_DIGITS = b"0" * 20
_INT_RANGE = range(-(2**63), 2**64)
_CONTAINERS = frozenset({dict, list})  # what orjson makes of arrays and objects


class UnsafeJSON(ValueError):
    """Client JSON that is refused; the message says why. `path` is where in the value the
    offending part sits (`retryPolicy.schedule[2]`), when that is known."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class _HugeInteger(str):
    """An integer literal outside the 64-bit range, kept as text so it can be found."""


def parse(body: bytes | str, limit: int = MAX_DEPTH) -> Any:
    """The JSON value of `body`; raises UnsafeJSON if it is not JSON or is nested deeper than
    `limit` (a value that will sit inside a document gets fewer levels than MAX_DEPTH)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if str(error).startswith("depth limit exceeded"):  # orjson's own, at 1,024 levels
            raise UnsafeJSON(f"nested more than {limit} levels deep") from None
        raise UnsafeJSON(f"not valid JSON ({error})") from None
    check_depth(body, value, limit)
    _check_integers(body)
    return value


def check_depth(body: bytes | str, value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise UnsafeJSON if `value` (parsed from `body`) nests deeper than `limit`."""
    text = body.encode() if isinstance(body, str) else body
    if text.count(b"[") + text.count(b"{") <= limit:
        return
    if depth(value) > limit:
        raise UnsafeJSON(f"nested more than {limit} levels deep")


def _check_integers(body: bytes | str) -> None:
    text = body.encode() if isinstance(body, str) else body
    # A translate and a substring search run at memory speed; a regex scan took as long as
    # parsing a batch. A run may be inside a string: parse again to be sure.
    if _TWENTY_DIGITS not in text.translate(_DIGITS_TO_ZERO):
        return
    found = _find_huge_integer(json.loads(text, parse_int=_exact_int), "")
    if found is not None:
        path, literal = found
        where = f" at {path}" if path else ""
        raise UnsafeJSON(
            f"the integer {literal[:24]}...{where} is outside the 64-bit range", path=path or None
        )


def _exact_int(literal: str) -> int | _HugeInteger:
    number = int(literal)
    return number if number in _INT_RANGE else _HugeInteger(literal)


def _find_huge_integer(value: Any, path: str) -> tuple[str, str] | None:
    """The path to the first huge integer in `value` and its literal (depth is already
    checked, so the recursion is bounded by MAX_DEPTH)."""
    if isinstance(value, _HugeInteger):
        return path, str(value)
    if isinstance(value, dict):
        items: Any = (
            (f"{path}.{key}" if path else str(key), child) for key, child in value.items()
        )
    elif isinstance(value, list):
        items = ((f"{path}[{index}]", child) for index, child in enumerate(value))
    else:
        return None
    for child_path, child in items:
        found = _find_huge_integer(child, child_path)
        if found is not None:
            return found
    return None


def depth(value: Any) -> int:
    """How many levels of arrays and objects `value` nests (0 for a scalar), counted level by
    level without recursion, and only up to MAX_DEPTH + 1."""
    if type(value) not in _CONTAINERS:
        return 0
    level = [value]
    for deepest in range(1, MAX_DEPTH + 2):
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below += [child for child in children if type(child) in _CONTAINERS]
        if not below:
            return deepest
        level = below
    return MAX_DEPTH + 1


def loads_limited(body: bytes, *, what: str) -> Any:
    """Parse a client's JSON body; raises InvalidRequest naming `what` (the field or location,
    e.g. "body" or "subscription") if it is not JSON or nests deeper than MAX_DEPTH."""
    try:
        return parse(body)
    except UnsafeJSON as error:
        field = error.path or what
        raise InvalidRequest(f"{what} is {error}", field=field) from None
