"""Why msgspec and orjson: decode/validate and encode costs measured side by side.

    .venv/bin/python bench/libraries.py        (pydantic is measured if it is installed)

Cases: a subscription body decoded and validated into a typed object (the admin API and config
path), and a stored structured event parsed and re-encoded (the push path's JSON work).
"""

from __future__ import annotations

import json
import os
import platform
import timeit
from typing import Any

import msgspec
import orjson

SUBSCRIPTION = {
    "name": "orders-to-billing",
    "topic": "orders",
    "filters": [{"exact": {"type": "com.example.order.created"}}],
    "destination": {"http": {"url": "https://billing.internal/events", "contentMode": "binary"}},
    "ackDeadline": "10s",
    "retryPolicy": {"minimumBackoff": "10s", "maximumBackoff": "600s"},
    "maxDeliveryAttempts": 5,
    "deadLetterTopic": "orders-dead",
}
EVENT = {
    "specversion": "1.0",
    "id": "order-1",
    "source": "/shop",
    "type": "com.example.order.created",
    "datacontenttype": "application/json",
    "data": {"order": 42, "lines": [{"sku": "A", "qty": 2}] * 5},
}


class Http(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    url: str
    content_mode: str = "binary"


class Destination(msgspec.Struct, forbid_unknown_fields=True):
    http: Http | None = None


class Retry(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    minimum_backoff: str = "10s"
    maximum_backoff: str = "600s"


class Sub(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    name: str
    topic: str
    destination: Destination
    filters: list[dict[str, Any]] = []
    ack_deadline: str = "10s"
    retry_policy: Retry = Retry()
    max_delivery_attempts: int | None = None
    dead_letter_topic: str | None = None


def per_call_us(statement: Any, number: int = 20000) -> float:
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def pydantic_case(body: bytes) -> tuple[str, float] | None:
    try:
        import pydantic
    except ImportError:
        return None

    class PHttp(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)
        url: str
        content_mode: str = pydantic.Field("binary", alias="contentMode")

    class PDest(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        http: PHttp | None = None

    class PRetry(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        minimumBackoff: str = "10s"
        maximumBackoff: str = "600s"

    class PSub(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        name: str
        topic: str
        destination: PDest
        filters: list[dict[str, Any]] = []
        ackDeadline: str = "10s"
        retryPolicy: PRetry = PRetry()
        maxDeliveryAttempts: int | None = None
        deadLetterTopic: str | None = None

    version = f"pydantic {pydantic.VERSION}"
    return version, per_call_us(lambda: PSub.model_validate_json(body))


def main() -> None:
    body = orjson.dumps(SUBSCRIPTION)
    payload = orjson.dumps(EVENT)
    decoder = msgspec.json.Decoder(Sub)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"decode+validate a subscription, msgspec {msgspec.__version__}: "
        f"{per_call_us(lambda: decoder.decode(body)):.2f} us"
    )
    measured = pydantic_case(body)
    if measured:
        print(f"decode+validate a subscription, {measured[0]}: {measured[1]:.2f} us")
    print(
        f"parse+encode an event, orjson: "
        f"{per_call_us(lambda: orjson.dumps(orjson.loads(payload))):.2f} us"
    )
    print(
        f"parse+encode an event, stdlib json: "
        f"{per_call_us(lambda: json.dumps(json.loads(payload)).encode()):.2f} us"
    )


if __name__ == "__main__":
    main()
