"""CloudEvents in and out of HTTP, through the cloudevents SDK's `cloudevents.core` API.

Ingress accepts binary (`ce-*` headers), structured (`application/cloudevents+json`) and batch
(`application/cloudevents-batch+json`) mode, spec versions 1.0 and 0.3. The SDK parses and
validates; we add what it leaves out: it silently invents a missing `id` or `time` (a missing
`id` must be a 400, and we never alter a publisher's event), it has no batch format, and it
does not cap extension names at 20 characters.

Stored form: the SDK's structured JSON of the event, which is also what the admin API shows.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http
from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat

from gateway.problems import InvalidEvent, PayloadTooLarge, UnsupportedMediaType

STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
REQUIRED: Final = ("specversion", "id", "source", "type")
SPEC_VERSIONS: Final = ("1.0", "0.3")
EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
CONTEXT_ATTRIBUTES = frozenset(
    {
        *REQUIRED,
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        "data",
        "data_base64",
        "datacontentencoding",
        "schemaurl",
    }  # the last two are spec 0.3's
)
_JSON = JSONFormat()


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One validated event, ready for the store: its dedup pair and its stored bytes."""

    source: str
    id: str
    attributes: Mapping[str, Any]
    payload: bytes


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-event limits (the whole request is limited by server.maxBodySize as it streams)."""

    max_event_size: int = 256 * 1024
    max_extensions: int = 32


DEFAULT_LIMITS = Limits()


def parse_request(
    headers: Mapping[str, str], body: bytes, limits: Limits = DEFAULT_LIMITS
) -> list[IncomingEvent]:
    """Every event in one ingress request; raises InvalidEvent, PayloadTooLarge or
    UnsupportedMediaType."""
    events = _parse(headers, body, limits)
    batch = len(events) != 1 or media_type(headers.get("content-type")) == BATCH
    for index, event in enumerate(events):
        if len(event.payload) > limits.max_event_size:
            raise PayloadTooLarge(
                f"event {event.id!r} is {len(event.payload)} bytes stored, over "
                f"server.maxEventSize ({limits.max_event_size} bytes)",
                index=index if batch else None,
            )
    return events


def _parse(headers: Mapping[str, str], body: bytes, limits: Limits) -> list[IncomingEvent]:
    kind = media_type(headers.get("content-type"))
    if kind == BATCH:
        return parse_batch(body, limits)
    if kind == STRUCTURED:
        return [parse_structured(_json_object(body, index=None), index=None, limits=limits)]
    if "ce-specversion" in headers or any(name.startswith("ce-") for name in headers):
        return [parse_binary(headers, body, limits)]
    raise UnsupportedMediaType(
        f"content type {kind or '(none)'!r} carries no CloudEvent; send binary mode (ce-* headers),"
        f" {STRUCTURED} or {BATCH}",
    )


def parse_binary(
    headers: Mapping[str, str], body: bytes, limits: Limits = DEFAULT_LIMITS
) -> IncomingEvent:
    attributes = {name[3:]: value for name, value in headers.items() if name.startswith("ce-")}
    _check_required(attributes, index=None, prefix="ce-")
    _check_extension_names(attributes, index=None, prefix="ce-")
    _check_extension_count(attributes, limits, index=None, prefix="ce-")
    message = http.HTTPMessage(headers=dict(headers), body=body)
    event = _sdk(lambda: http.from_binary(message, _JSON), index=None, prefix="ce-")
    if _unparsed_json(event, body):
        # The SDK keeps a body that says JSON but is not as text, which would be stored as
        # a JSON string and pushed back quoted; kept as bytes, it goes out as it came in.
        event = type(event)(dict(event.get_attributes()), body)
    return _incoming(event, original_time=_header_time(attributes.get("time")))


def _unparsed_json(event: BaseCloudEvent, body: bytes) -> bool:
    if not isinstance(event.get_data(), str) or not is_json(event.get_datacontenttype()):
        return False
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    return False


def parse_structured(
    document: dict[str, Any], index: int | None, limits: Limits = DEFAULT_LIMITS
) -> IncomingEvent:
    _check_required(document, index=index, prefix="")
    _check_extension_names(document, index=index, prefix="")
    _check_extension_count(document, limits, index=index, prefix="")
    _check_value_types(document, index)
    encoded = orjson.dumps(document)
    event = _sdk(lambda: _JSON.read(None, encoded), index=index, prefix="")
    if "time" not in document:
        # The SDK stamps a missing `time` with the current time; keep the event as published.
        event.get_attributes().pop("time", None)
    # The SDK has validated the document; storing it as published (rather than the SDK's
    # re-serialisation) keeps every byte of it and halves the cost of a batch element.
    return IncomingEvent(
        source=event.get_source(),
        id=event.get_id(),
        attributes=event.get_attributes(),
        payload=encoded,
    )


def parse_batch(body: bytes, limits: Limits = DEFAULT_LIMITS) -> list[IncomingEvent]:
    documents = _json(body)
    if not isinstance(documents, list):
        raise InvalidEvent("a batch must be a JSON array of CloudEvents", field=None)
    events = []
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise InvalidEvent("a batch element must be a JSON object", field=None, index=index)
        events.append(parse_structured(document, index, limits))
    return events


def to_stored(event: BaseCloudEvent, original_time: str | None) -> bytes:
    """The SDK's structured JSON, with `time` exactly as the publisher wrote it (the SDK keeps
    only microseconds; RFC 3339 allows any number of fraction digits)."""
    if original_time is None:
        return _JSON.write(event)
    document = orjson.loads(_JSON.write(event))
    document["time"] = original_time
    return orjson.dumps(document)


def from_stored(payload: bytes) -> tuple[BaseCloudEvent, str | None]:
    """The SDK event for a stored payload, and the original `time` text if it had one.

    The stored form was validated by the SDK when it came in, so it is built straight from
    its JSON (orjson) by the SDK's event class rather than re-read by the SDK's JSON format,
    whose stdlib parse and timestamp parse cost half a push's encoding time. `time` is left
    out (the SDK stamps one, which is removed again): a push carries the publisher's text.
    """
    document = orjson.loads(payload)
    original_time = document.pop("time", None)
    data = stored_data(document)
    event = get_event_factory_for_version(document["specversion"])(document, data)
    event.get_attributes().pop("time", None)
    return event, original_time


def stored_data(document: dict[str, Any]) -> Any:
    """Take the data out of a stored document: a JSON value, text, or bytes (base64 in the
    stored form: 1.0's `data_base64`, 0.3's `datacontentencoding: base64`)."""
    encoded = document.pop("data_base64", None)
    if encoded is not None:
        return base64.b64decode(encoded)
    data = document.pop("data", None)
    if _base64_in_data(document) and isinstance(data, str):
        return base64.b64decode(data)
    return data


def _base64_in_data(document: dict[str, Any]) -> bool:
    """Spec 0.3 carried bytes as base64 in `data`; in 1.0 the attribute is just an extension."""
    return document.get("specversion") == "0.3" and _declares_base64(document)


def _declares_base64(document: Mapping[str, Any]) -> bool:
    return str(document.get("datacontentencoding", "")).lower() == "base64"


def is_json(content_type: str | None) -> bool:
    """Whether a datacontenttype declares JSON data, by the SDK's own rule (none means JSON)."""
    return bool(JSONFormat.JSON_CONTENT_TYPE_PATTERN.match(content_type or "application/json"))


def _incoming(event: BaseCloudEvent, *, original_time: str | None) -> IncomingEvent:
    if original_time is None:
        # The SDK stamps a missing `time` with the current time; keep the event as published.
        event.get_attributes().pop("time", None)
    return IncomingEvent(
        source=event.get_source(),
        id=event.get_id(),
        attributes=event.get_attributes(),
        payload=to_stored(event, original_time),
    )


def _header_time(value: str | None) -> str | None:
    return None if value is None else unquote(value)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent(f"body is not valid JSON: {error}", field=None) from None


def _json_object(body: bytes, index: int | None) -> dict[str, Any]:
    document = _json(body)
    if not isinstance(document, dict):
        raise InvalidEvent("a structured CloudEvent must be a JSON object", field=None, index=index)
    return document


def _check_required(attributes: Mapping[str, Any], index: int | None, prefix: str) -> None:
    for name in REQUIRED:
        value = attributes.get(name)
        if value is None or value == "":
            raise InvalidEvent(
                f"required attribute {prefix}{name} is missing or empty", field=name, index=index
            )
        if not isinstance(value, str):
            raise InvalidEvent(f"attribute {name} must be a string", field=name, index=index)
    version = attributes["specversion"]
    if version not in SPEC_VERSIONS:
        raise InvalidEvent(
            f"specversion {version!r} is not supported; use 1.0 or 0.3",
            field="specversion",
            index=index,
        )


def _check_extension_names(attributes: Mapping[str, Any], index: int | None, prefix: str) -> None:
    for name in attributes:
        if name in ("data", "data_base64") or EXTENSION_NAME.match(name):
            continue
        raise InvalidEvent(
            f"attribute name '{prefix}{name}' is invalid; CloudEvents attribute names are 1-20"
            " lowercase letters or digits",
            field=name,
            index=index,
        )


def _check_extension_count(
    attributes: Mapping[str, Any], limits: Limits, index: int | None, prefix: str
) -> None:
    extensions = [name for name in attributes if name not in CONTEXT_ATTRIBUTES]
    if len(extensions) > limits.max_extensions:
        name = extensions[limits.max_extensions]
        raise InvalidEvent(
            f"more than {limits.max_extensions} extension attributes (server.maxExtensions);"
            f" '{prefix}{name}' is one too many",
            field=name,
            index=index,
        )


def _check_value_types(document: Mapping[str, Any], index: int | None) -> None:
    """Attribute values are scalars (CloudEvents type system); base64 must really be base64."""
    for name, value in document.items():
        if name != "data" and isinstance(value, dict | list):
            raise InvalidEvent(f"attribute {name} must be a scalar", field=name, index=index)
    if "time" in document and not isinstance(document["time"], str):
        raise InvalidEvent("time must be an RFC 3339 string", field="time", index=index)
    _check_base64(document.get("data_base64"), "data_base64", index)
    if _declares_base64(document):  # spec 0.3
        _check_base64(document.get("data"), "data", index)


def _check_base64(encoded: Any, field: str, index: int | None) -> None:
    if encoded is None:
        return
    try:
        base64.b64decode(encoded, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidEvent(f"{field} is not valid base64", field=field, index=index) from None


def _sdk(parse: Any, index: int | None, prefix: str) -> BaseCloudEvent:
    """Run an SDK parse, translating its errors into InvalidEvent naming the field."""
    try:
        event: BaseCloudEvent = parse()
    except CloudEventValidationError as error:
        field, problems = next(iter(error.errors.items()))
        detail = "; ".join(str(problem) for problem in problems)
        raise InvalidEvent(f"{prefix}{field}: {detail}", field=field, index=index) from None
    except (BaseCloudEventException, ValueError, TypeError, OverflowError) as error:
        # What is left after our own checks is the SDK's bare ValueError for a bad `time`.
        raise InvalidEvent(
            f"{prefix}time is not an RFC 3339 timestamp: {error}", field="time", index=index
        ) from None
    return event
