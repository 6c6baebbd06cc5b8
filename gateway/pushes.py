"""Building a push request from a stored event: pure, no I/O (DESIGN "Pushes").

Binary mode puts the attributes in `ce-*` headers and the data in the body (built by the
cloudevents SDK); structured mode sends the stored structured JSON as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat

from gateway.events import STRUCTURED, from_stored

_JSON = JSONFormat()


@dataclass(frozen=True, slots=True)
class PushRequest:
    headers: dict[str, str]
    body: bytes


def build_push(payload: bytes, content_mode: str) -> PushRequest:
    if content_mode == "structured":
        return PushRequest({"content-type": STRUCTURED}, payload)
    event, original_time = from_stored(payload)
    message = http.to_binary(event, _JSON)
    headers = dict(message.headers)
    if original_time is not None:
        headers["ce-time"] = original_time  # every fraction digit the publisher sent
    return PushRequest(headers, message.body)
