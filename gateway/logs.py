"""Logging: one JSON object per line for machines (level, logger, message, and topic,
subscription or event id where relevant), readable text when a person watches a terminal.

Log lines never carry event data or secrets: code passes names and ids as `extra`, never
payloads, headers or credentials.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"


def configure(log_format: str = "auto", level: int = logging.INFO) -> None:
    """`auto`: JSON unless stderr is a terminal."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
        if use_json
        else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
