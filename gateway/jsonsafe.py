"""JSON from a client, parsed safely: what the JSON event format allows, nested no deeper than a
fixed limit.

orjson already refuses what RFC 8259 does not allow and what the JSON event format cannot carry
(`NaN`, `Infinity`, `-Infinity`, and numbers such as `1e100000` that overflow a double), and it
stops at 1,024 levels. That is still deep enough for a RecursionError in code that walks the value
later (the stdlib `json` module, `copy.deepcopy`, pydantic), so every piece of client JSON is also
held to `MAX_DEPTH` levels of arrays and objects, counted from the outermost value (`[]` and `{}`
are one level; a structured CloudEvent's `data` gets `MAX_DEPTH - 1`, in a batch `MAX_DEPTH - 2`).

The depth check is cheap on the hot path: a value can only be deeper than the limit if the text
holds more than `MAX_DEPTH` opening brackets, which two `bytes.count` calls find out; only such
text is walked.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from gateway.problems import InvalidRequest

MAX_DEPTH: Final = 128


class UnsafeJSON(ValueError):
    """Client JSON that is refused; the message says why, without naming where it came from."""


def parse(body: bytes | str) -> Any:
    """The JSON value of `body`; raises UnsafeJSON if it is not JSON or is nested too deep."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise UnsafeJSON(f"not valid JSON ({error})") from None
    check_depth(body, value)
    return value


def check_depth(body: bytes | str, value: Any) -> None:
    """Raise UnsafeJSON if `value` (parsed from `body`) nests deeper than MAX_DEPTH."""
    text = body.encode() if isinstance(body, str) else body
    if text.count(b"[") + text.count(b"{") <= MAX_DEPTH:
        return
    if depth(value) > MAX_DEPTH:
        raise UnsafeJSON(f"nested more than {MAX_DEPTH} levels deep")


def depth(value: Any) -> int:
    """How many levels of arrays and objects `value` nests (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def loads_limited(body: bytes, *, what: str) -> Any:
    """Parse a client's JSON body; raises InvalidRequest naming `what` (the field or location,
    e.g. "body" or "subscription") if it is not JSON or nests deeper than MAX_DEPTH."""
    try:
        return parse(body)
    except UnsafeJSON as error:
        raise InvalidRequest(f"{what} is {error}", field=what) from None
