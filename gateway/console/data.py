"""How the console shows an event's data (issue 23): JSON pretty-printed, text as text, and
binary data (`data_base64`) as its size and a hex dump of its first bytes. The templates
escape whatever this returns."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

HEX_BYTES = 256


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


@dataclass(frozen=True)
class Data:
    kind: str  # "json", "text", "binary" or "none"
    text: str = ""
    size: int = 0


def data_of(document: Mapping[str, Any]) -> Data:
    """An event's data as shown: pretty JSON, text, or a size and hex summary of bytes."""
    if "data_base64" in document:
        try:
            raw = base64.b64decode(str(document["data_base64"]), validate=True)
        except (binascii.Error, ValueError):
            return Data("text", str(document["data_base64"]))
        return Data("binary", hexdump(raw[:HEX_BYTES]), len(raw))
    if "data" not in document:
        return Data("none")
    data = document["data"]
    if isinstance(data, str):
        return Data("text", data, len(data.encode()))
    text = pretty(data)
    return Data("json", text, len(orjson.dumps(data)))


def hexdump(raw: bytes) -> str:
    lines = []
    for offset in range(0, len(raw), 16):
        chunk = raw[offset : offset + 16]
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {printable}")
    return "\n".join(lines)
