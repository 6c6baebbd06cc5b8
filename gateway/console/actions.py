"""What the console's forms do, each through the admin API's own operation (issue 23): redrive
and purge dead letters (`POST /v1/topics/{name}/events:redrive|purge`) and publish a test event
(`POST /topics/{topic}/events`, structured mode). No second implementation of any of them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.console.calls import AdminCalls, Answer

ACTIONS = ("redrive", "purge")


@dataclass(frozen=True)
class Choice:
    """Which dead letters of one subscription: these ids, or all of them."""

    subscription: str
    ids: tuple[str, ...] = ()
    all: bool = False

    def body(self) -> dict[str, Any]:
        if self.all:
            return {"all": True, "subscription": self.subscription}
        return {"ids": list(self.ids), "subscription": self.subscription}


async def act_on_dead_letters(
    calls: AdminCalls, action: str, dead_letter_topic: str, choice: Choice
) -> Answer:
    assert action in ACTIONS
    return await calls.call(
        "POST",
        "/v1/topics/{name}/events:" + action,
        {"name": dead_letter_topic},
        body=choice.body(),
    )


@dataclass(frozen=True)
class TestEvent:
    type: str
    source: str
    data: str = ""
    subject: str = ""
    id: str = ""

    def document(self) -> dict[str, Any]:
        """The event in structured JSON form: JSON data as JSON, anything else as text."""
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id or str(uuid.uuid4()),
            "type": self.type,
            "source": self.source,
        }
        if self.subject:
            event["subject"] = self.subject
        if self.data.strip():
            try:
                event["data"] = orjson.loads(self.data)
                event["datacontenttype"] = "application/json"
            except orjson.JSONDecodeError:
                event["data"] = self.data
                event["datacontenttype"] = "text/plain"
        return event


async def publish(calls: AdminCalls, topic: str, event: dict[str, Any]) -> Answer:
    return await calls.call(
        "POST",
        "/topics/{topic}/events",
        {"topic": topic},
        body=event,
        content_type="application/cloudevents+json",
    )
