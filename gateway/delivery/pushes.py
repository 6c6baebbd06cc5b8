"""Building a push from a stored event, and what one push attempt returns: pure, no I/O
(DESIGN "Pushes").

Binary mode puts the attributes in `ce-*` headers, each in its canonical string form
(`true`/`false`, integers as digits, strings percent-encoded as HTTP binding 3.1.3.2 says), and
the data in the body: bytes as they are, text as UTF-8, a JSON value as JSON (byte for byte the
JSON text a binary-mode publisher sent, gateway.policy.stored; re-serialised otherwise).
`Content-Type` is the `datacontenttype`; an event without one carries none, except JSON data
(JSON format 3.1.2: re-serialized in another binding, the implied `application/json` SHOULD be
set explicitly). The cloudevents SDK is not used: it writes booleans as `True`/`False` and JSON
lists as Python text.
Structured mode sends the stored JSON-format event as it is. Data mode sends only the event's
data with its content type, no CloudEvent attributes (what Pretry's HTTP and SQS integrations
deliver).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.cetypes import header_value
from gateway.destinations.signing import signature_headers, webhook_id
from gateway.destinations.targets import HttpTarget, Target
from gateway.events import STRUCTURED, is_json, stored_data
from gateway.policy.stored import data_last, json_text

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
    return _binary_push(payload)


def _binary_push(payload: bytes) -> PushRequest:
    document = orjson.loads(payload)
    tail_payload = payload if data_last(document) else None
    has_data = "data" in document or document.get("data_base64") is not None
    content_type = document.get("datacontenttype")
    data = stored_data(document)
    if document["specversion"] == "0.3":
        # 0.3: datacontentencoding describes string-encoded data only; binary mode has bytes.
        document.pop("datacontentencoding", None)
    headers = {
        "ce-" + name: header_value(value)
        for name, value in document.items()
        if name != "datacontenttype"
    }
    if content_type is not None:
        headers["content-type"] = content_type
    elif has_data and not isinstance(data, bytes):
        headers["content-type"] = "application/json"
    body = _data_bytes(data, content_type, tail_payload) if has_data else b""
    return PushRequest(headers, body, str(document["source"]), str(document["id"]))


def _data_push(payload: bytes) -> PushRequest:
    """Only the data: JSON data (no datacontenttype means JSON) as its JSON text, so a JSON
    string stays a JSON string; other text as it is; binary data decoded from base64."""
    document = orjson.loads(payload)
    tail_payload = payload if data_last(document) else None
    content_type = document.get("datacontenttype")
    has_data = "data" in document or document.get("data_base64") is not None
    data = stored_data(document)  # bytes from 1.0's data_base64 or 0.3's base64 `data`
    if isinstance(data, bytes):
        content_type = content_type or "application/octet-stream"
    body = _data_bytes(data, content_type, tail_payload) if has_data else b""
    headers = {"content-type": content_type or "application/json"} if body else {}
    return PushRequest(headers, body, str(document["source"]), str(document["id"]))


def _data_bytes(data: Any, content_type: str | None, tail_payload: bytes | None) -> bytes:
    """A push body from an event's data: bytes as they are, text (a string under a non-JSON
    type) as UTF-8, anything else (JSON null included) as JSON: its text as stored (cut from
    `tail_payload`, the payload when its last member is `data`: byte for byte what a binary-mode
    publisher sent), else serialised."""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and not is_json(content_type):
        return data.encode()
    return json_text(data, tail_payload)


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
