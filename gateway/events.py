"""CloudEvents in from HTTP, and the stored form they are kept in (DESIGN "CloudEvents fidelity").

Ingress accepts binary (`ce-*` headers), structured (`application/cloudevents+json`) and batch
(`application/cloudevents-batch+json`) mode, spec versions 1.0 and 0.3, and checks every rule of
the core spec's type system, the HTTP binding and the JSON format itself (gateway.cetypes). The
cloudevents SDK is not used here: it invents a missing `id` and `time`, takes NaN and Infinity
in JSON data, replaces invalid UTF-8 in headers with U+FFFD, parses a body without Content-Type
as JSON and hands back valid-UTF-8 binary data as text, and has no batch format.

What each mode's values mean:
- binary: every `ce-*` value is a String (its canonical string form: a header does not say
  whether `5` or `true` was meant as an Integer or Boolean, so nothing is guessed). The body is
  the data: JSON under a JSON `Content-Type` (it must then be valid JSON), text under a text type
  (when it is valid UTF-8), and bytes otherwise, including a body with no `Content-Type` at all.
- structured and batch: attributes are JSON strings, booleans (1.0 only; 0.3 has no Boolean) and
  integers in the signed 32-bit range; `null` means absent (JSON format 2.2); `data` under a
  non-JSON `datacontenttype` must be a string.

Limits: attribute names are 1 to MAX_NAME_LENGTH lowercase letters and digits (the spec's 20 is a
SHOULD NOT; the rule is gateway.policy.names, which subscription filters use too); JSON
nests at most gateway.jsonsafe.MAX_DEPTH levels; attributes named like the gateway's own
dead-letter attributes (`dl*`, gateway.deadletters) are refused, so a dead letter is always one
the gateway made.

Stored form: the event in the JSON format, with `time` as published: bytes as 1.0's
`data_base64` (0.3: `datacontentencoding: base64` and base64 `data`), text and JSON as `data`.
It is what the admin API lists, and what pushes are built from (gateway.delivery.pushes).
Binary-mode JSON data arrived as bytes and is kept byte for byte: the body's text is embedded
verbatim as the last member (gateway.policy.stored), and binary-mode and data-mode pushes send it
as it came. Structured and batch data arrived as a JSON value inside the event's JSON, not as
bytes of its own: it is kept as that value and re-serialised compactly (whitespace and escapes
inside the publisher's document are not data).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.common import get_event_factory_for_version

from gateway import cetypes, jsonsafe
from gateway.policy.deadletters import DL_ATTRIBUTES
from gateway.policy.names import ATTRIBUTE_NAME, MAX_NAME_LENGTH
from gateway.problems import InvalidEvent, PayloadTooLarge, UnsupportedMediaType

STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
REQUIRED: Final = ("specversion", "id", "source", "type")
SPEC_VERSIONS: Final = ("1.0", "0.3")
NAME: Final = ATTRIBUTE_NAME
DATA_MEMBERS: Final = frozenset({"data", "data_base64"})
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
_JSON_TYPE = re.compile(r"[^/;\s]+/(?:[^/;\s]*\+)?json", re.IGNORECASE)
_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";\s]+)', re.IGNORECASE)
_UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_TEXT_TYPE = re.compile(
    r"text/.*|application/(?:xml|javascript|ecmascript|x-www-form-urlencoded|yaml|x-yaml|toml"
    r"|graphql|sql)|[^/]+/[^;]*\+(?:xml|yaml)|.*;\s*charset=.*",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One validated event, ready for the store: its dedup pair and its stored bytes."""

    source: str
    id: str
    attributes: Mapping[str, Any]
    payload: bytes


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """Whether a datacontenttype declares JSON data (`*/json`, `*/*+json`; JSON format 3.1.1);
    none means JSON in the JSON format."""
    return content_type is None or _JSON_TYPE.fullmatch(media_type(content_type)) is not None


def is_text(content_type: str) -> bool:
    """Whether binary-mode data of this type is text (kept as a string when it is UTF-8) rather
    than bytes (kept as base64): text/*, XML, YAML, scripts, forms, anything with a charset."""
    return _TEXT_TYPE.fullmatch(content_type.strip()) is not None


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
        document = _json_object(body, index=None)
        return [parse_structured(document, None, limits, _suspect(body))]
    if any(name[:3].lower() == "ce-" for name in headers):
        return [parse_binary(headers, body, limits)]
    raise UnsupportedMediaType(
        f"content type {kind or '(none)'!r} carries no CloudEvent; send binary mode (ce-* headers),"
        f" {STRUCTURED} or {BATCH}",
    )


# --- binary mode -------------------------------------------------------------------------------


def parse_binary(
    headers: Mapping[str, str], body: bytes, limits: Limits = DEFAULT_LIMITS
) -> IncomingEvent:
    attributes, content_type = _binary_attributes(headers.items())
    _check_required(attributes, index=None, prefix="ce-")
    version = attributes["specversion"]
    if version == "0.3":
        # 0.3: datacontentencoding only describes string-encoded data (structured mode); with
        # binary data it "MUST NOT be set and MUST be ignored when set".
        attributes.pop("datacontentencoding", None)
    _check_names(attributes, version, limits, index=None, prefix="ce-")
    _check_attributes(attributes, version, index=None, strings=False)
    if content_type is not None:
        _check_content_type(content_type, "content-type", index=None)
        attributes["datacontenttype"] = content_type
    document = {**attributes, **_binary_data(body, content_type, version)}
    return _incoming(document, attributes)


def _binary_attributes(
    headers: Iterable[tuple[str, str]],
) -> tuple[dict[str, Any], str | None]:
    """The `ce-*` attributes, decoded, and the Content-Type; each header at most once."""
    attributes: dict[str, Any] = {}
    content_type: str | None = None
    for header, raw in headers:
        name = header.lower()
        if name == "content-type":
            if content_type is not None:
                raise InvalidEvent("Content-Type is sent more than once", field="content-type")
            content_type = raw
            continue
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        if attribute in attributes:
            raise InvalidEvent(f"header {name} is sent more than once", field=attribute)
        if attribute == "datacontenttype":
            raise InvalidEvent(
                "ce-datacontenttype must not be sent in binary mode; the Content-Type header is "
                "the datacontenttype (HTTP binding 3.1.1)",
                field=attribute,
            )
        attributes[attribute] = _header_value(attribute, raw)
    return attributes, content_type


def _header_value(attribute: str, raw: str) -> str:
    try:
        return cetypes.decode_header_value(raw)
    except ValueError as error:
        raise InvalidEvent(f"ce-{attribute} {error}", field=attribute) from None


def _utf8_charset(content_type: str) -> bool:
    """Whether text of this type is UTF-8 (no charset, utf-8 or us-ascii): text in another
    charset is kept as its bytes, since the JSON format carries a String as Unicode text
    (3.1.1) and decoding it as UTF-8 would change what a receiver re-encodes."""
    found = _CHARSET.search(content_type)
    return found is None or found.group(1).lower() in _UTF8_CHARSETS


def _binary_data(body: bytes, content_type: str | None, version: str) -> dict[str, Any]:
    """The stored data members for a binary-mode body (none for an empty body)."""
    if not body:
        return {}
    if content_type is not None and is_json(content_type):
        try:
            # One level less: the data sits inside the event when it is pushed structured.
            jsonsafe.parse(body, limit=jsonsafe.MAX_DEPTH - 1)
        except jsonsafe.UnsafeJSON as error:
            raise InvalidEvent(
                f"the body is declared {media_type(content_type)} but is {error}", field="data"
            ) from None
        # Valid JSON: stored as the text that arrived, the document's last member
        # (gateway.policy.stored), so a binary-mode push sends these very bytes.
        return {"data": orjson.Fragment(body)}
    if content_type is not None and is_text(content_type) and _utf8_charset(content_type):
        try:
            return {"data": body.decode("utf-8")}
        except UnicodeDecodeError:
            pass  # not UTF-8 after all: kept as the bytes it is
    return bytes_members(body, version)


def bytes_members(data: bytes, version: str) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    if version == "0.3":
        return {"datacontentencoding": "base64", "data": encoded}
    return {"data_base64": encoded}


# --- structured and batch mode -----------------------------------------------------------------


def parse_structured(
    document: dict[str, Any],
    index: int | None,
    limits: Limits = DEFAULT_LIMITS,
    strings: bool = True,
) -> IncomingEvent:
    """One JSON-format event. `strings=False` skips the String character checks: the caller
    found no byte sequence in the body that could encode a disallowed character."""
    if None in document.values():
        # JSON format 2.2: null means unset; `data: null` is an explicit null payload (3.1.1).
        document = {k: v for k, v in document.items() if v is not None or k == "data"}
    _check_required(document, index=index, prefix="")
    version = document["specversion"]
    attributes = {k: v for k, v in document.items() if k not in DATA_MEMBERS}
    if version == "0.3" and "data_base64" in document:
        _invalid_name("data_base64", version, index, prefix="")
    _check_names(attributes, version, limits, index=index, prefix="")
    _check_attributes(attributes, version, index=index, strings=strings)
    document = _check_data(document, version, index)
    return _incoming(document, attributes)


def parse_batch(body: bytes, limits: Limits = DEFAULT_LIMITS) -> list[IncomingEvent]:
    documents = _json(body)
    if not isinstance(documents, list):
        raise InvalidEvent("a batch must be a JSON array of CloudEvents", field=None)
    strings = _suspect(body)
    events = []
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise InvalidEvent("a batch element must be a JSON object", field=None, index=index)
        events.append(parse_structured(document, index, limits, strings))
        if events[0].attributes["specversion"] != events[-1].attributes["specversion"]:
            raise InvalidEvent(
                "all events of a batch must have the same specversion (HTTP binding 3.3.2)",
                field="specversion",
                index=index,
            )
    return events


def _suspect(body: bytes) -> bool:
    return cetypes.may_hold_disallowed(body)


def _check_data(document: dict[str, Any], version: str, index: int | None) -> dict[str, Any]:
    """The JSON format's rules for `data` and `data_base64` (3.1); the document to store."""
    if "data" in document and "data_base64" in document:
        raise InvalidEvent(
            "data and data_base64 are mutually exclusive (JSON format 3.1.1)",
            field="data_base64",
            index=index,
        )
    if "data_base64" in document:
        _check_base64(document["data_base64"], "data_base64", index)
    elif version == "0.3" and "datacontentencoding" in document and "data" in document:
        _check_base64(document["data"], "data", index)
    elif not is_json(document.get("datacontenttype")) and "data" in document:
        if document["data"] is None:
            return {k: v for k, v in document.items() if k != "data"}
        if not isinstance(document["data"], str):
            raise InvalidEvent(
                f"data must be a string: datacontenttype {document['datacontenttype']!r} does "
                "not declare JSON (JSON format 3.1.2)",
                field="data",
                index=index,
            )
    return document


def _check_base64(encoded: Any, field: str, index: int | None) -> None:
    try:
        base64.b64decode(encoded, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidEvent(f"{field} is not valid base64", field=field, index=index) from None


def _json(body: bytes) -> Any:
    try:
        return jsonsafe.parse(body)
    except jsonsafe.UnsafeJSON as error:
        raise InvalidEvent(f"body is {error}", field=None) from None


def _json_object(body: bytes, index: int | None) -> dict[str, Any]:
    document = _json(body)
    if not isinstance(document, dict):
        raise InvalidEvent("a structured CloudEvent must be a JSON object", field=None, index=index)
    return document


# --- attribute rules ---------------------------------------------------------------------------


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


def _check_names(
    attributes: Mapping[str, Any], version: str, limits: Limits, index: int | None, prefix: str
) -> None:
    extensions = 0
    for name in attributes:
        if name == "data" or NAME[version].fullmatch(name) is None:
            _invalid_name(name, version, index, prefix)
        if name in DL_ATTRIBUTES:
            raise InvalidEvent(
                f"{prefix}{name} is an attribute the gateway sets on dead letters; publishers "
                "cannot set it",
                field=name,
                index=index,
            )
        if name not in CONTEXT_ATTRIBUTES:
            extensions += 1
            if extensions > limits.max_extensions:
                raise InvalidEvent(
                    f"more than {limits.max_extensions} extension attributes "
                    f"(server.maxExtensions); '{prefix}{name}' is one too many",
                    field=name,
                    index=index,
                )


def _invalid_name(name: str, version: str, index: int | None, prefix: str) -> None:
    if name == "data":
        detail = f"attribute name '{prefix}data' is reserved (core spec, Naming Conventions)"
    else:
        start = ", beginning with a letter" if version == "0.3" else ""
        detail = (
            f"attribute name '{prefix}{name}' is invalid; CloudEvents {version} attribute names "
            f"are lowercase letters or digits{start}, here at most {MAX_NAME_LENGTH}"
        )
    raise InvalidEvent(detail, field=name, index=index)


_STRING_RULES: Final = {
    "source": cetypes.check_uri_reference,
    "time": cetypes.check_timestamp,
    "dataschema": cetypes.check_uri,
    "schemaurl": cetypes.check_uri_reference,
}


def _check_attributes(
    attributes: Mapping[str, Any], version: str, index: int | None, strings: bool
) -> None:
    """Every attribute value against its type (core spec "Type System" and attribute rules)."""
    for name, value in attributes.items():
        try:
            _check_value(name, value, version, strings)
        except ValueError as error:
            raise InvalidEvent(f"{name}: {error}", field=name, index=index) from None


def _check_value(name: str, value: Any, version: str, strings: bool) -> None:
    if isinstance(value, str):
        if strings:
            cetypes.check_string(value)
        rule = _STRING_RULES.get(name)
        if rule is not None:
            rule(value)
        elif name in ("subject", "dataschema") and not value:
            raise ValueError("must not be empty")
        elif name == "datacontenttype":
            cetypes.check_media_type(value)
        elif name == "datacontentencoding" and version == "0.3" and value.lower() != "base64":
            raise ValueError(f"{value!r} is not defined; 0.3 defines only base64")
        return
    if name in CONTEXT_ATTRIBUTES:
        raise ValueError("must be a string")
    if isinstance(value, bool):
        if version == "0.3":
            raise ValueError("is a boolean, and spec 0.3 has no Boolean type; send a string")
        return
    if isinstance(value, int | float):
        cetypes.check_integer(value)
        return
    raise ValueError(
        "must be a string, a boolean or an integer (CloudEvents type system); maps and lists "
        "are not attribute values"
    )


def _check_content_type(value: str, field: str, index: int | None) -> None:
    try:
        cetypes.check_string(value)
        cetypes.check_media_type(value)
    except ValueError as error:
        raise InvalidEvent(f"{field} {error}", field=field, index=index) from None


# --- the stored form ---------------------------------------------------------------------------


def _incoming(document: dict[str, Any], attributes: dict[str, Any]) -> IncomingEvent:
    return IncomingEvent(
        source=attributes["source"],
        id=attributes["id"],
        attributes=attributes,
        payload=orjson.dumps(document),
    )


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


def from_stored(payload: bytes) -> tuple[BaseCloudEvent, str | None]:
    """The SDK event for a stored payload, and the original `time` text if it had one (`time`
    is left out of the SDK event: the SDK would keep only microseconds)."""
    document = orjson.loads(payload)
    original_time = document.pop("time", None)
    data = stored_data(document)
    event = get_event_factory_for_version(document["specversion"])(document, data)
    event.get_attributes().pop("time", None)
    return event, original_time
