"""How `ce-gateway`'s admin commands print: aligned tables and key/value blocks for people, JSON
for programs, and progress lines on stderr. Plain functions over the API's JSON documents."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

TOPIC_COLUMNS = ("NAME", "RETENTION")
SUBSCRIPTION_COLUMNS = (
    "NAME",
    "TOPIC",
    "DESTINATION",
    "PENDING",
    "ACKED",
    "DEADLETTERED",
    "DROPPED",
    "DEADLETTERTOPIC",
)
EVENT_COLUMNS = (
    "ID",
    "SOURCE",
    "TYPE",
    "DLSUBSCRIPTION",
    "DLREASON",
    "DLATTEMPTS",
    "DLSTATUS",
    "DLTIME",
)
GAP = "   "


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def cell(value: Any) -> str:
    """One table cell on one line: `-` for nothing, compact JSON for lists and objects."""
    if value is None or value == "":
        return "-"
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return " ".join(str(value).split())


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell (the last one unpadded), headers first."""
    lines = [list(headers), *([cell(value) for value in row] for row in rows)]
    widths = [max(len(line[index]) for line in lines) for index in range(len(headers))]
    return "\n".join(
        GAP.join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def flatten(
    document: Mapping[str, Any], prefix: str = "", whole: frozenset[str] = frozenset()
) -> list[tuple[str, Any]]:
    """Nested objects as dotted keys (`destination.http.url`), except lists and the `whole`
    keys; unset (null) fields are left out."""
    pairs: list[tuple[str, Any]] = []
    for key, value in document.items():
        if value is None:
            continue
        if isinstance(value, dict) and value and key not in whole:
            pairs.extend(flatten(value, f"{prefix}{key}."))
        else:
            pairs.append((prefix + key, value))
    return pairs


def details(document: Mapping[str, Any], whole: frozenset[str] = frozenset()) -> str:
    """One resource as aligned `key  value` lines."""
    return table(("FIELD", "VALUE"), flatten(document, whole=whole)).split("\n", 1)[1]


def topic_row(topic: Mapping[str, Any]) -> list[Any]:
    return [topic.get("name"), topic.get("retention")]


def destination(subscription: Mapping[str, Any]) -> str:
    target = subscription.get("destination") or {}
    if target.get("http"):
        return str(target["http"].get("url"))
    if target.get("sqs"):
        return f"sqs:{target['sqs'].get('queueUrl')}"
    return "-"


def subscription_row(subscription: Mapping[str, Any]) -> list[Any]:
    status = subscription.get("status") or {}
    counts = [status.get(key) for key in ("pending", "acked", "deadlettered", "dropped")]
    return [
        subscription.get("name"),
        subscription.get("topic"),
        destination(subscription),
        *counts,
        subscription.get("deadLetterTopic"),
    ]


def event_row(event: Mapping[str, Any]) -> list[Any]:
    return [event.get(column.lower()) for column in EVENT_COLUMNS]


def topics_table(document: Mapping[str, Any]) -> str:
    return table(TOPIC_COLUMNS, (topic_row(topic) for topic in document["topics"]))


def subscriptions_table(document: Mapping[str, Any]) -> str:
    rows = (subscription_row(subscription) for subscription in document["subscriptions"])
    return table(SUBSCRIPTION_COLUMNS, rows)


def events_table(document: Mapping[str, Any]) -> str:
    return table(EVENT_COLUMNS, (event_row(event) for event in document["events"]))


def events_details(document: Mapping[str, Any]) -> str:
    return "\n\n".join(details(event, frozenset({"data"})) for event in document["events"])


class Progress:
    """Progress of a long operation on stderr: rewritten in place on a terminal; elsewhere
    (a log, a pipe) only the final line is written."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()

    def update(self, text: str) -> None:
        if self._live:
            self._stream.write(f"\r{text}\x1b[K")
            self._stream.flush()

    def done(self, text: str) -> None:
        self._stream.write(f"\r{text}\x1b[K\n" if self._live else f"{text}\n")
        self._stream.flush()
