"""Conformance with the CloudEvents specs, one case per rule, each id naming its spec section:
core spec 1.0.2 (`core-...`: Naming Conventions, Type System, REQUIRED and OPTIONAL attributes),
HTTP protocol binding 1.0.2 (`http-3.x.y-...`), JSON event format 1.0.2 (`json-x.y-...`), and
spec 0.3 (`v03-...`), plus the gateway's own ingress rules (`gateway-...`).

Each case is published in every content mode it applies to (binary, structured, batch) to a real
gateway; an accepted event is checked as stored (`GET /v1/topics/{t}/events`) and as pushed to a
real subscriber in binary and in structured mode, decoded by the cloudevents SDK; a refused one
is a 400 problem naming the attribute, and nothing is stored (a refused batch element takes the
whole batch with it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import pytest_asyncio

pytest.register_assert_rewrite("tests.support.conformance_harness")

from tests.conftest import assert_problem  # noqa: E402
from tests.support.conformance_harness import (  # noqa: E402
    Harness,
    check_binary_push,
    check_sdk_decodes,
    check_structured_push,
    harness,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

TYPE = "com.example.someevent"
BASE: dict[str, Any] = {"specversion": "1.0", "type": TYPE, "source": "/mycontext"}
BASE_V03: dict[str, Any] = {**BASE, "specversion": "0.3"}
HEADERS: dict[str, str] = {"ce-specversion": "1.0", "ce-type": TYPE, "ce-source": "/mycontext"}
HEADERS_V03: dict[str, str] = {**HEADERS, "ce-specversion": "0.3"}
ACCEPT = "(accepted)"
NON_UTF8 = b"\x00\xff\xfe\x80binary"
UTF8_BYTES = b"plain ASCII, but octet-stream"


@dataclass(frozen=True)
class Case:
    """One rule. `doc` is the JSON-format event (structured and batch mode) or its raw bytes,
    `binary` the binary-mode (headers, body); an id is added to each unless the case sets one.
    `stored` is what the gateway must keep (without `id`), `stored_binary` when binary mode's
    differs; `field` the attribute a refusal names (`field_binary` for binary mode)."""

    doc: dict[str, Any] | bytes | None = None
    binary: tuple[Any, bytes] | None = None
    stored: dict[str, Any] | None = None
    stored_binary: dict[str, Any] | None = None
    field: str | None = ACCEPT
    field_binary: str | None = ACCEPT
    modes: tuple[str, ...] = ()


def ev(base: dict[str, Any] = BASE, **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def hd(base: dict[str, str] = HEADERS, **changes: str) -> dict[str, str]:
    """Headers: `ce_subject="x"` sets ce-subject; `content_type` sets Content-Type."""
    return {**base, **{k.replace("_", "-", 1): v for k, v in changes.items()}}


def accepted(doc: Any = None, binary: Any = None, stored: Any = None, **kw: Any) -> Case:
    stored_value = stored if stored is not None else doc
    return Case(doc, binary, stored_value, field=ACCEPT, field_binary=ACCEPT, **kw)


def refused(name: str | None, doc: Any = None, binary: Any = None, **kw: Any) -> Case:
    return Case(doc, binary, None, field=name, field_binary=kw.pop("field_binary", name), **kw)


EURO = "Euro \u20ac \U0001f600"
DEEP = b"[" * 10_000 + b"]" * 10_000

CASES: dict[str, Case] = {
    # --- core spec: REQUIRED attributes ---
    "core-required-id-missing": refused("id", ev(id=None), ({**HEADERS, "ce-id": None}, b"")),
    "core-required-id-empty": refused("id", ev(id=""), (hd(ce_id=""), b"")),
    "core-required-source-missing": refused(
        "source",
        {k: v for k, v in BASE.items() if k != "source"},
        ({**HEADERS, "ce-source": ""}, b""),
    ),
    "core-required-type-missing": refused(
        "type", {k: v for k, v in BASE.items() if k != "type"}, ({**HEADERS, "ce-type": ""}, b"")
    ),
    "core-specversion-unsupported": refused(
        "specversion", ev(specversion="2.0"), (hd(ce_specversion="2.0"), b"")
    ),
    "core-source-uri-reference-path": accepted(
        ev(source="/cloudevents/spec/pull/123"),
        (hd(ce_source="/cloudevents/spec/pull/123"), b""),
    ),
    "core-source-urn-uuid": accepted(
        ev(source="urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"),
        (hd(ce_source="urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"), b""),
    ),
    "core-source-mailto": accepted(
        ev(source="mailto:cncf-wg-serverless@lists.cncf.io"),
        (hd(ce_source="mailto:cncf-wg-serverless@lists.cncf.io"), b""),
    ),
    "core-source-application-specific": accepted(
        ev(source="1-555-123-4567"), (hd(ce_source="1-555-123-4567"), b"")
    ),
    "core-source-must-be-uri-reference": refused(
        "source", ev(source="/my context"), (hd(ce_source="%2Fmy%20context"), b"")
    ),
    # --- core spec: OPTIONAL attributes ---
    "core-datacontenttype-rfc2046": refused(
        "datacontenttype",
        ev(datacontenttype="json", data={}),
        (hd(content_type="json"), b"{}"),
        field_binary="content-type",
    ),
    "core-dataschema-uri": accepted(
        ev(dataschema="https://example.com/schemas/order.json"),
        (hd(ce_dataschema="https://example.com/schemas/order.json"), b""),
    ),
    "core-dataschema-must-be-absolute-uri": refused(
        "dataschema", ev(dataschema="/schemas/order"), (hd(ce_dataschema="/schemas/order"), b"")
    ),
    "core-dataschema-non-empty": refused(
        "dataschema", ev(dataschema=""), (hd(ce_dataschema=""), b"")
    ),
    "core-subject": accepted(ev(subject="mynewfile.jpg"), (hd(ce_subject="mynewfile.jpg"), b"")),
    "core-subject-non-empty": refused("subject", ev(subject=""), (hd(ce_subject=""), b"")),
    "core-time-rfc3339": accepted(
        ev(time="2018-04-05T17:31:00Z"), (hd(ce_time="2018-04-05T17:31:00Z"), b"")
    ),
    "core-time-fraction-and-offset-kept-as-sent": accepted(
        ev(time="2018-04-05T19:31:00.123456+02:00"),
        (hd(ce_time="2018-04-05T19:31:00.123456%2B02:00"), b""),
    ),
    "core-time-without-offset": refused(
        "time", ev(time="2018-04-05T17:31:00"), (hd(ce_time="2018-04-05T17:31:00"), b"")
    ),
    "core-time-date-only": refused("time", ev(time="2018-04-05"), (hd(ce_time="2018-04-05"), b"")),
    "core-time-no-such-day": refused(
        "time", ev(time="2018-02-30T00:00:00Z"), (hd(ce_time="2018-02-30T00:00:00Z"), b"")
    ),
    # --- core spec: Naming Conventions ---
    "core-naming-lowercase": refused("Tenant", ev(Tenant="a"), modes=("structured", "batch")),
    "core-naming-letters-and-digits": refused(
        "tenant_id", ev(tenant_id="a"), (hd(ce_tenant_id="a"), b"")
    ),
    "core-naming-digits-allowed": accepted(ev(**{"1st": "a"}), (hd(**{"ce-1st": "a"}), b"")),
    "core-naming-data-reserved": refused("data", binary=(hd(ce_data="x"), b"")),
    "core-naming-over-20-is-only-should-not": accepted(
        ev(**{"e" * 64: "long"}), (hd(**{"ce-" + "e" * 64: "long"}), b"")
    ),
    "gateway-naming-limit-64": refused(
        "e" * 65, ev(**{"e" * 65: "long"}), (hd(**{"ce-" + "e" * 65: "long"}), b"")
    ),
    # --- core spec: Type System ---
    "core-type-system-boolean": accepted(
        ev(urgent=True, archived=False),
        (hd(ce_urgent="true", ce_archived="false"), b""),
        stored_binary=ev(urgent="true", archived="false"),
    ),
    "core-type-system-integer-range": accepted(
        ev(high=2_147_483_647, low=-2_147_483_648),
        (hd(ce_high="2147483647", ce_low="-2147483648"), b""),
        stored_binary=ev(high="2147483647", low="-2147483648"),
    ),
    "core-type-system-integer-above-range": refused("big", ev(big=2_147_483_648)),
    "core-type-system-integer-below-range": refused("small", ev(small=-2_147_483_649)),
    "core-type-system-integer-no-fraction": refused("ratio", ev(ratio=5.5)),
    "json-2.2-integer-only-integer-component": refused("count", ev(count=5.0)),
    "core-type-system-no-maps": refused("tenant", ev(tenant={"id": "a"})),
    "core-type-system-no-lists": refused("tenant", ev(tenant=["a"])),
    "core-type-system-string-unicode": accepted(
        ev(subject=EURO), (hd(ce_subject="Euro%20%E2%82%AC%20%F0%9F%98%80"), b"")
    ),
    "core-type-system-string-no-c0-controls": refused(
        "subject", ev(subject="a\u0001b"), (hd(ce_subject="a%01b"), b"")
    ),
    "core-type-system-string-no-del-or-c1": refused(
        "subject", ev(subject="a\u0085b"), (hd(ce_subject="a%C2%85b"), b"")
    ),
    "core-type-system-string-no-noncharacters": refused(
        "subject", ev(subject="a\ufffeb"), (hd(ce_subject="a%EF%BF%BEb"), b"")
    ),
    "core-type-system-string-no-surrogates": refused(
        None,
        b'{"specversion":"1.0","type":"t","source":"/s","id":"x","subject":"\\udead"}',
        (hd(ce_subject="%ED%BA%AD"), b""),
        field_binary="subject",
    ),
    # --- HTTP binding ---
    "http-3.1.1-content-type-is-datacontenttype": accepted(
        ev(datacontenttype="application/xml", data='<much wow="xml"/>'),
        (hd(content_type="application/xml"), b'<much wow="xml"/>'),
    ),
    "http-3.1.1-ce-datacontenttype-must-not-be-present": refused(
        "datacontenttype", binary=(hd(ce_datacontenttype="text/plain"), b"x")
    ),
    "http-3.1.1-no-content-type-means-no-datacontenttype": accepted(
        binary=(hd(), b'{"looks": "like JSON"}'),
        stored_binary=ev(data_base64="eyJsb29rcyI6ICJsaWtlIEpTT04ifQ=="),
    ),
    "http-3.1.2-body-is-the-data-bytes": accepted(
        ev(datacontenttype="application/octet-stream", data_base64="AP/+gGJpbmFyeQ=="),
        (hd(content_type="application/octet-stream"), NON_UTF8),
    ),
    "http-3.1.2-bytes-that-are-utf8-stay-bytes": accepted(
        ev(datacontenttype="image/png", data_base64="cGxhaW4gQVNDSUksIGJ1dCBvY3RldC1zdHJlYW0="),
        (hd(content_type="image/png"), UTF8_BYTES),
    ),
    "http-3.1.3.1-header-names-case-insensitive": accepted(
        binary=(
            {
                "CE-SpecVersion": "1.0",
                "Ce-Type": TYPE,
                "CE-SOURCE": "/mycontext",
                "Ce-Tenant": "acme",
            },
            b"",
        ),
        stored_binary=ev(tenant="acme"),
    ),
    "http-3.1.3.2-percent-decoding": accepted(
        binary=(hd(ce_subject="Euro%20%E2%82%AC%20%F0%9F%98%80"), b""),
        stored_binary=ev(subject=EURO),
    ),
    "http-3.1.3.2-lowercase-hex-accepted": accepted(
        binary=(hd(ce_subject="%e2%82%ac"), b""), stored_binary=ev(subject="\u20ac")
    ),
    "http-3.1.3.2-unnecessary-encoding-accepted": accepted(
        binary=(hd(ce_subject="%41%42"), b""), stored_binary=ev(subject="AB")
    ),
    "http-3.1.3.2-quoted-string-unescaped": accepted(
        binary=(hd(ce_subject='"invoice \\"42\\".pdf"'), b""),
        stored_binary=ev(subject='invoice "42".pdf'),
    ),
    "http-3.1.3.2-quoted-string-then-percent-decoded": accepted(
        binary=(hd(ce_subject='"100%25 sure"'), b""), stored_binary=ev(subject="100% sure")
    ),
    "http-3.1.3.2-invalid-utf8-ff-rejected": refused("id", binary=(hd(ce_id="%FF"), b"")),
    "http-3.1.3.2-invalid-utf8-fe-rejected": refused("id", binary=(hd(ce_id="%FE"), b"")),
    "http-3.1.3.2-overlong-c0-rejected": refused("id", binary=(hd(ce_id="%C0"), b"")),
    "http-3.1.3.2-overlong-c0a0-rejected": refused(
        "subject", binary=(hd(ce_subject="%C0%A0"), b"")
    ),
    "http-3.1.3.2-raw-non-ascii-rejected": refused(
        "subject", binary=({**HEADERS, "ce-subject": "caf\u00e9".encode()}, b"")
    ),
    "http-3.1.3-one-header-per-attribute": refused(
        "id", binary=([*HEADERS.items(), ("ce-id", "a"), ("ce-id", "b")], b"")
    ),
    "http-3.3.2-batch-same-specversion": refused("specversion", ev(BASE_V03), modes=("batch",)),
    # --- JSON event format ---
    "json-2.2-null-means-unset": accepted(
        ev(subject=None, time=None, tenant=None), stored=ev(), modes=("structured", "batch")
    ),
    "json-2.2-null-required-is-missing": refused(
        "source", ev(source=None), modes=("structured", "batch")
    ),
    "json-3.1.1-data-base64": accepted(
        ev(datacontenttype="application/vnd.apache.thrift.binary", data_base64="AP/+gGJpbmFyeQ=="),
        (hd(content_type="application/vnd.apache.thrift.binary"), NON_UTF8),
    ),
    "json-3.1.1-data-and-data-base64-exclusive": refused(
        "data_base64", ev(data="x", data_base64="eA==")
    ),
    "json-3.1.1-data-base64-must-be-base64": refused("data_base64", ev(data_base64="***")),
    "json-3.1.1-json-data-without-datacontenttype": accepted(
        ev(data={"appinfoA": "abc", "appinfoB": 123, "appinfoC": True}),
        modes=("structured", "batch"),
    ),
    "json-3.1.1-json-data": accepted(
        ev(datacontenttype="application/json", data={"appinfoA": "abc", "appinfoB": 123}),
        (hd(content_type="application/json"), b'{"appinfoA": "abc", "appinfoB": 123}'),
    ),
    "json-3.1.1-json-data-as-sent-whitespace": accepted(
        ev(datacontenttype="application/json", data={"b": [1, 2], "a": {"c": None}}),
        (hd(content_type="application/json"), b' {\n\t"b" : [ 1,2 ],\r\n "a":{"c":null} }\n'),
    ),
    "json-3.1.1-json-data-as-sent-escapes": accepted(
        ev(datacontenttype="application/json", data={"s": "\u00e9/\U0001f600", "k\u00e9y": 1}),
        (
            hd(content_type="application/json"),
            b'{"s":"\\u00e9\\/\\ud83d\\ude00","k\\u00e9y":1}',
        ),
    ),
    "json-3.1.1-json-data-as-sent-numbers": accepted(
        ev(datacontenttype="application/json", data=[100.0, 1.5, 0, -0.0, 12, 1000000]),
        (hd(content_type="application/json"), b"[1E2,1.50,-0,-0.0,1.2e1,1e6]"),
        modes=("binary",),
    ),
    "json-3.1.1-json-data-as-sent-duplicate-keys": accepted(
        ev(datacontenttype="application/json", data={"a": 2, "b": 3}),
        (hd(content_type="application/json"), b'{"a":1,"b":3,"a":2}'),
        modes=("binary",),
    ),
    "json-3.1.1-json-suffix-media-type": accepted(
        ev(datacontenttype="application/vnd.order+json; charset=utf-8", data=[1, 2]),
        (hd(content_type="application/vnd.order+json; charset=utf-8"), b"[1, 2]"),
    ),
    "json-3.1.1-explicit-null-data": accepted(
        ev(datacontenttype="application/json", data=None),
        (hd(content_type="application/json"), b"null"),
    ),
    "json-3.1.2-json-string-data-not-reparsed": accepted(
        ev(data="I'm just a string"), modes=("structured", "batch")
    ),
    "json-3.1.2-string-under-json-type-is-a-json-string": accepted(
        ev(datacontenttype="application/json", data='{"a": 1}'),
        (hd(content_type="application/json"), b'"{\\"a\\": 1}"'),
    ),
    "json-3.1.2-non-json-data-is-a-string": refused(
        "data", ev(datacontenttype="text/plain", data={"a": 1}), modes=("structured", "batch")
    ),
    "json-3.2-xml-string-data": accepted(
        ev(datacontenttype="text/xml", data="<much wow='xml'/>"),
        (hd(content_type="text/xml"), b"<much wow='xml'/>"),
    ),
    "json-rfc8259-no-nan": refused(
        None,
        b'{"specversion":"1.0","type":"t","source":"/s","id":"x","data":NaN}',
        (hd(content_type="application/json"), b'{"n": NaN}'),
        field_binary="data",
    ),
    "json-rfc8259-no-infinity": refused(
        None,
        b'{"specversion":"1.0","type":"t","source":"/s","id":"x","data":-Infinity}',
        (hd(content_type="application/json"), b"[Infinity]"),
        field_binary="data",
    ),
    "json-rfc8259-number-out-of-double-range": refused(
        None,
        b'{"specversion":"1.0","type":"t","source":"/s","id":"x","data":1e100000}',
        (hd(content_type="application/json"), b"1e100000"),
        field_binary="data",
    ),
    "json-declared-json-must-be-json": refused(
        "data", binary=(hd(content_type="application/json"), b"not json")
    ),
    "gateway-json-depth-limit": refused(
        None,
        b'{"specversion":"1.0","type":"t","source":"/s","id":"x","data":' + DEEP + b"}",
        (hd(content_type="application/json"), DEEP),
        field_binary="data",
    ),
    # --- spec 0.3 ---
    "v03-accepted": accepted(
        ev(BASE_V03, subject="s", time="2018-04-05T17:31:00Z"),
        (hd(HEADERS_V03, ce_subject="s", ce_time="2018-04-05T17:31:00Z"), b""),
    ),
    "v03-schemaurl-is-uri-reference": accepted(
        ev(BASE_V03, schemaurl="/schemas/order"),
        (hd(HEADERS_V03, ce_schemaurl="/schemas/order"), b""),
    ),
    "v03-schemaurl-must-be-uri-reference": refused(
        "schemaurl", ev(BASE_V03, schemaurl="a b"), (hd(HEADERS_V03, ce_schemaurl="a%20b"), b"")
    ),
    "v03-naming-begins-with-letter": refused(
        "1st", ev(BASE_V03, **{"1st": "a"}), (hd(HEADERS_V03, **{"ce-1st": "a"}), b"")
    ),
    "v03-type-system-has-no-boolean": refused(
        "urgent", ev(BASE_V03, urgent=True), modes=("structured", "batch")
    ),
    "v03-datacontentencoding-base64": accepted(
        ev(
            BASE_V03,
            datacontenttype="application/octet-stream",
            datacontentencoding="base64",
            data="AP/+gGJpbmFyeQ==",
        ),
        (hd(HEADERS_V03, content_type="application/octet-stream"), NON_UTF8),
    ),
    "v03-datacontentencoding-ignored-in-binary-mode": accepted(
        binary=(
            hd(
                HEADERS_V03,
                ce_datacontentencoding="base64",
                content_type="application/octet-stream",
            ),
            NON_UTF8,
        ),
        stored_binary=ev(
            BASE_V03,
            datacontenttype="application/octet-stream",
            datacontentencoding="base64",
            data="AP/+gGJpbmFyeQ==",
        ),
    ),
    "v03-datacontentencoding-only-base64-defined": refused(
        "datacontentencoding",
        ev(BASE_V03, datacontentencoding="7bit", data="x"),
        modes=("structured", "batch"),
    ),
    # --- the gateway's own rules ---
    "gateway-dead-letter-attributes-are-the-gateways": refused(
        "dlsubscription", ev(dlsubscription="billing"), (hd(ce_dlsubscription="billing"), b"")
    ),
    "gateway-content-type-without-control-characters": refused(
        "datacontenttype",
        ev(datacontenttype="text/plain\u0007", data="x"),
        (hd(content_type="text/plain;\tq=1"), b"x"),
        field_binary="content-type",
    ),
}


def modes_of(case: Case) -> list[str]:
    if case.modes:
        return list(case.modes)
    return (["binary"] if case.binary else []) + (["structured", "batch"] if case.doc else [])


PARAMS = [
    pytest.param(name, mode, id=f"{name}[{mode}]")
    for name, case in CASES.items()
    for mode in modes_of(case)
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def conformance(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    async with harness(tmp_path_factory.mktemp("conformance")) as running:
        yield running


def request_for(case: Case, mode: str, event_id: str) -> Any:
    """The request body (or binary (headers, body)) of `case` in `mode`, with `event_id`."""
    if mode == "binary":
        assert case.binary is not None
        headers, body = case.binary
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if not any(name.lower() == "ce-id" for name, _ in pairs):
            pairs.append(("ce-id", event_id))
        return [(name, value) for name, value in pairs if value is not None], body
    doc = case.doc
    if isinstance(doc, dict) and "id" not in doc:
        doc = {**doc, "id": event_id}
    if mode == "structured":
        return doc
    if isinstance(doc, bytes):
        return b"[" + doc + b"]"
    if case.field != ACCEPT:  # a good event first: the whole batch must go
        return [{**BASE, "id": event_id + "-good"}, doc]
    return [doc]


@pytest.mark.parametrize(("name", "mode"), PARAMS)
async def test_conformance(conformance: Harness, name: str, mode: str) -> None:
    case = CASES[name]
    event_id = f"{name}.{mode}"
    response = await conformance.publish(mode, request_for(case, mode, event_id))
    expected_field = case.field_binary if mode == "binary" else case.field
    if expected_field != ACCEPT:
        problem = assert_problem(response, 400, "invalid-event")
        assert problem.get("field") == expected_field, problem
        if mode == "batch" and isinstance(case.doc, dict):
            assert problem["index"] == 1
        assert await conformance.stored(event_id) == []
        assert await conformance.stored(event_id + "-good") == []
        return
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}
    expected = case.stored_binary if mode == "binary" and case.stored_binary else case.stored
    assert isinstance(expected, dict)
    expected = {**expected, "id": event_id}
    assert await conformance.stored(event_id) == [expected]
    pushes = await conformance.pushes(event_id)
    sent = case.binary[1] if mode == "binary" and case.binary else None
    check_binary_push(pushes["binary"], expected, sent)
    check_structured_push(pushes["structured"], expected)
    check_sdk_decodes(pushes, expected)


async def test_http_3_3_2_empty_batch_is_valid(conformance: Harness) -> None:
    response = await conformance.publish("batch", [])
    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "duplicates": 0}


async def test_there_are_enough_rules() -> None:
    assert len(CASES) >= 40
    assert len(PARAMS) >= 100
    assert orjson.dumps(sorted(CASES))  # ids are plain strings
