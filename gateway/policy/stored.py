"""The `data` member of a stored event as JSON text: pure, no I/O (DESIGN "CloudEvents
fidelity": data byte for byte where it arrived as bytes).

A binary-mode publish with a JSON `Content-Type` sends its data as bytes: the JSON text, with
its whitespace, key order, escapes and number spellings. The stored form (gateway.events) embeds
that text verbatim (orjson.Fragment) as the document's last member, so the document is still the
event in the JSON format (`data` is the JSON value to every JSON reader: the topic listing, a
structured-mode push) while a binary-mode or data-mode push can send the very bytes that arrived
(a subscriber verifying an upstream signature over the body still can).

`data_text` finds that text again. It needs no marker, so it reads every stored shape: when
`data` is the last member of a compact document, the first `"data":` in the payload is its key
(every member before it is a flat attribute, a string, integer or boolean, and a string cannot
hold an unescaped `"`), and the text runs from there to the closing brace. Anything else (a
structured-mode event whose publisher put `data` elsewhere, a payload written with spaces by an
older version) gives None, and the caller serialises the value instead, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

_DATA_KEY: Final = b'"data":'
_CLOSE: Final = ord("}")


def data_last(document: dict[str, Any]) -> bool:
    """Whether `data` is the last member of a parsed stored document (dicts keep JSON order)."""
    return next(reversed(document), None) == "data"


def data_text(payload: bytes, document: dict[str, Any]) -> bytes | None:
    """The stored JSON text of `data` (`document` is `payload` parsed), or None when it cannot
    be cut out of the payload (see the module docstring)."""
    return _cut(payload) if data_last(document) else None


def json_text(data: Any, payload: bytes | None) -> bytes:
    """A JSON value's text for a push body: cut from `payload` (a stored payload whose last
    member is `data`, see data_last) when it can be, else the value serialised."""
    text = None if payload is None else _cut(payload)
    return orjson.dumps(data) if text is None else text


def _cut(payload: bytes) -> bytes | None:
    start = payload.find(_DATA_KEY)
    if start <= 0 or payload[-1] != _CLOSE or payload[start - 1] not in b",{":
        return None
    return payload[start + len(_DATA_KEY) : -1]


def dumps(document: Mapping[str, Any], text: bytes | None) -> bytes:
    """`document` as a stored payload; with `text` (from data_text), `data` is that text,
    verbatim, as the last member."""
    if text is None:
        return orjson.dumps(document)
    members = {name: value for name, value in document.items() if name != "data"}
    members["data"] = orjson.Fragment(text)
    return orjson.dumps(members)
