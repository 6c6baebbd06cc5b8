"""Building a push request from a stored event: pure, no I/O (DESIGN "Pushes").

Binary mode puts the attributes in `ce-*` headers and the data in the body (built by the
cloudevents SDK); structured mode sends the stored structured JSON as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat

from gateway.events import STRUCTURED, from_stored
from gateway.signing import signature_headers, webhook_id

if TYPE_CHECKING:
    from gateway.subscriptions import HttpTarget

_JSON = JSONFormat()


@dataclass(frozen=True, slots=True)
class PushRequest:
    headers: dict[str, str]
    body: bytes
    source: str
    id: str


def build_push(payload: bytes, content_mode: str) -> PushRequest:
    event, original_time = from_stored(payload)
    if content_mode == "structured":
        return PushRequest(
            {"content-type": STRUCTURED}, payload, event.get_source(), event.get_id()
        )
    message = http.to_binary(event, _JSON)
    headers = dict(message.headers)
    if original_time is not None:
        headers["ce-time"] = original_time  # every fraction digit the publisher sent
    return PushRequest(headers, message.body, event.get_source(), event.get_id())


def with_credentials(
    request: PushRequest, subscription: str, target: HttpTarget, timestamp: int
) -> PushRequest:
    """Add the destination's Authorization and the Standard Webhooks signature headers."""
    headers = dict(request.headers)
    if target.authorization:
        headers["authorization"] = target.authorization
    if target.signing_secrets:
        message_id = webhook_id(subscription, request.source, request.id)
        headers.update(
            signature_headers(target.signing_secrets, message_id, timestamp, request.body)
        )
    return PushRequest(headers, request.body, request.source, request.id)
