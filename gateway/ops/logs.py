"""Logging: one JSON object per line for machines (level, logger, message, and topic,
subscription or event id where relevant), readable text when a person watches a terminal.

Log lines never carry event data or secrets: code passes names and ids as `extra`, never
payloads, headers or credentials. Lines that a failing destination could repeat without end
(issue 19: a failed attempt, a dead letter) go through a `LineBudget`, so a subscription that
fails thousands of times a minute writes a bounded number of lines, each saying how many were
left out before it.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def configure(log_format: str = "auto", level: int = logging.INFO) -> None:
    """`auto`: JSON unless stderr is a terminal."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if use_json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class LineBudget:
    """A token bucket for log lines: `burst` lines at once, then `per_minute` a minute.

    Pure: the caller passes the time (monotonic seconds from its injected clock). `take`
    answers None for a line to leave out, or, for a line to write, how many were left out
    since the last one written (for that line to report).
    """

    def __init__(self, burst: int, per_minute: float) -> None:
        self._burst = float(burst)
        self._per_second = per_minute / 60.0
        self._tokens = float(burst)
        self._at: float | None = None
        self._suppressed = 0

    def take(self, now: float) -> int | None:
        if self._at is not None:
            elapsed = max(0.0, now - self._at)
            self._tokens = min(self._burst, self._tokens + elapsed * self._per_second)
        self._at = now
        if self._tokens < 1.0:
            self._suppressed += 1
            return None
        self._tokens -= 1.0
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
