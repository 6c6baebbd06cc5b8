"""Duration and size strings from configuration, parsed once into plain numbers.

Durations: "250ms", "10s", "1.5s", "10m", "24h", "2d" and ISO 8601 ("PT10S", "P1DT2H").
Sizes: "1MiB", "64KiB", "10MB", "512" (bytes).
"""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIMPLE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


class DurationError(ValueError):
    """A string that is not a duration or size; the message says which forms are accepted."""


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises DurationError naming the accepted forms."""
    match = _SIMPLE.match(text)
    if match:
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    iso = _ISO.match(text.strip())
    if iso and text.strip().upper() not in ("P", "PT"):
        parts = {key: float(value) for key, value in iso.groupdict().items() if value}
        if parts:
            return sum(value * _UNIT_SECONDS[key.lower()] for key, value in parts.items())
    raise DurationError(
        f"{text!r} is not a duration; use forms like 250ms, 10s, 1.5m, 24h or PT10S"
    )


def parse_size(text: str | int) -> int:
    """Bytes in `text` ("1MiB", "64KiB", "10MB", 512); raises DurationError when malformed."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise DurationError(f"{text!r} is not a size; use forms like 512, 64KiB, 1MiB or 10MB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_duration(seconds: float) -> str:
    """The shortest plain form of `seconds` ("10s", "1.5s", "250ms", "24h") for API output."""
    if seconds == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        value = seconds / _UNIT_SECONDS[unit]
        if value >= 1 and value == int(value):
            return f"{int(value)}{unit}"
    if seconds >= 1:
        return f"{_plain(seconds)}s"
    return f"{_plain(seconds * 1000)}ms"


def _plain(value: float) -> str:
    """A decimal without exponent or float noise, exact to the microsecond."""
    return f"{value:.6f}".rstrip("0").rstrip(".")
