"""Building a push from a stored event, and what one push attempt returns: pure, no I/O
(DESIGN "Pushes").

Binary mode puts the attributes in `ce-*` headers and the data in the body (built by the
cloudevents SDK); structured mode sends the stored structured JSON as it is; data mode sends
only the event's data with its content type, no CloudEvent attributes (what Pretry's HTTP and
SQS integrations deliver).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat

from gateway.events import STRUCTURED, from_stored, is_json, stored_data
from gateway.signing import signature_headers, webhook_id
from gateway.targets import HttpTarget, Target


class _PushFormat(JSONFormat):
    """The SDK's JSON format, writing JSON data as JSON whatever its type. The SDK's own
    `write_data` writes only an object as JSON: a list, number, boolean or string came out as
    Python text (`[1, True]`), or unquoted. Text (a string under a non-JSON type) and bytes
    go as they are. orjson, as everywhere else here."""

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:
        return b"" if data is None else _data_bytes(data, datacontenttype)


_FORMAT = _PushFormat()
MAX_DETAIL = 256


@dataclass(frozen=True, slots=True)
class PushRequest:
    headers: dict[str, str]
    body: bytes
    source: str
    id: str


@dataclass(frozen=True, slots=True)
class PushResult:
    status: int | None  # None when no HTTP answer came back
    error: str | None  # an error kind (gateway.outcomes) when status is None
    detail: str | None
    body: bytes
    retry_after: str | None

    @classmethod
    def failed(cls, kind: str, detail: str) -> PushResult:
        return cls(None, kind, detail[:MAX_DETAIL], b"", None)


def build_push(payload: bytes, content_mode: str) -> PushRequest:
    if content_mode == "data":
        return _data_push(payload)
    if content_mode == "structured":
        # The stored form is structured JSON already: send it as it is. Only the dedup pair
        # is needed from it (for the webhook-id), so no SDK parse.
        identity = orjson.loads(payload)
        return PushRequest(
            {"content-type": STRUCTURED}, payload, str(identity["source"]), str(identity["id"])
        )
    event, original_time = from_stored(payload)
    message = http.to_binary(event, _FORMAT)
    headers = dict(message.headers)
    if original_time is not None:
        headers["ce-time"] = original_time  # every fraction digit the publisher sent
    return PushRequest(headers, message.body, event.get_source(), event.get_id())


def _data_push(payload: bytes) -> PushRequest:
    """Only the data: JSON data (no datacontenttype means JSON) as its JSON text, so a JSON
    string stays a JSON string; other text as it is; binary data decoded from base64."""
    document = orjson.loads(payload)
    content_type = document.get("datacontenttype")
    has_data = "data" in document or document.get("data_base64") is not None
    data = stored_data(document)  # bytes from 1.0's data_base64 or 0.3's base64 `data`
    if isinstance(data, bytes):
        content_type = content_type or "application/octet-stream"
    body = _data_bytes(data, content_type) if has_data else b""
    headers = {"content-type": content_type or "application/json"} if body else {}
    return PushRequest(headers, body, str(document["source"]), str(document["id"]))


def _data_bytes(data: Any, content_type: str | None) -> bytes:
    """A push body from an event's data: bytes as they are, text (a string under a non-JSON
    type) as UTF-8, anything else (JSON null included) as JSON."""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and not is_json(content_type):
        return data.encode()
    return orjson.dumps(data)


def with_credentials(
    request: PushRequest, subscription: str, target: Target, timestamp: int
) -> PushRequest:
    """Add an HTTP destination's Authorization and the Standard Webhooks signature headers
    (an SQS destination signs its API calls itself)."""
    if not isinstance(target, HttpTarget) or not (target.authorization or target.signing_secrets):
        return request
    headers = dict(request.headers)
    if target.authorization:
        headers["authorization"] = target.authorization
    if target.signing_secrets:
        message_id = webhook_id(subscription, request.source, request.id)
        headers.update(
            signature_headers(target.signing_secrets, message_id, timestamp, request.body)
        )
    return PushRequest(headers, request.body, request.source, request.id)
