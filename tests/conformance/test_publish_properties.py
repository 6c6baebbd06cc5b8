"""Property-based test of the publish path (issue 19): for generated CloudEvents 1.0 (context
attributes, extensions of every CloudEvents type, JSON, text or bytes data, and now and then a
hostile character) published in every content mode to one real gateway, the answer is never a
5xx; what is refused is a 400 naming a field and is not stored; what is accepted round-trips
exactly, through browse and through a binary and a structured push (SDK-decoded too)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.register_assert_rewrite("tests.support.conformance_harness")

from tests.support.conformance_harness import (  # noqa: E402
    Harness,
    canonical,
    check_binary_push,
    check_sdk_decodes,
    check_structured_push,
    harness,
)

T = TypeVar("T")
HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' "%')
RESERVED = {
    "specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time",
    "data", "datacontentencoding", "schemaurl",
}  # fmt: skip


class Live:
    """The harness running on its own event loop in a thread, so hypothesis (synchronous) can
    drive it."""

    def __init__(self, harness_: Harness, loop: asyncio.AbstractEventLoop) -> None:
        self.harness = harness_
        self.loop = loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    context = harness(tmp_path_factory.mktemp("properties"))
    running = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(30)
    try:
        yield Live(running, loop)
    finally:
        asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- strategies ----------------------------------------------------------------------------------

good_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=12)
hostile_text = st.text(min_size=1, max_size=4)  # may hold control characters, noncharacters
text = st.one_of(good_text, good_text, good_text, hostile_text)
sources = st.one_of(
    st.from_regex(r"\A(/[a-z0-9._~-]{1,8}){1,3}\Z"),
    st.from_regex(r"\Aurn:[a-z]{1,5}:[a-z0-9-]{1,10}\Z"),
    st.from_regex(r"\Ahttps://example\.com(/[a-zA-Z0-9%-]{0,8}){0,2}\Z").filter(
        lambda uri: "%" not in uri
    ),
    hostile_text,
)
times = st.builds(
    lambda when, digits, zone: (
        when.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{when.microsecond:06d}"[: digits + 1] if digits else "")
        + zone
    ),
    st.datetimes(),
    st.integers(0, 6),
    st.sampled_from(["Z", "+02:00", "-05:30", "+00:00"]),
)
names = st.from_regex(r"\A[a-z][a-z0-9]{0,11}\Z").filter(
    lambda name: name not in RESERVED and not name.startswith("dl")
)
extension_values = st.one_of(good_text, st.booleans(), st.integers(-(2**31), 2**31 - 1))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | good_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(good_text, children, max_size=3)
    ),
    max_leaves=8,
)
data = st.one_of(
    st.just(None),
    st.tuples(st.sampled_from(["application/json", "application/vnd.x+json", None]), json_values),
    st.tuples(st.just("text/plain; charset=utf-8"), st.text(max_size=20)),
    st.tuples(
        st.sampled_from(["application/octet-stream", "image/png", None]), st.binary(max_size=24)
    ),
)


@st.composite
def events(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[str | None, Any] | None]:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(text),
        "source": draw(sources),
        "type": draw(text),
    }
    for name, strategy in (("subject", text), ("time", times)):
        if draw(st.booleans()):
            attributes[name] = draw(strategy)
    if draw(st.booleans()):
        attributes["dataschema"] = "https://example.com/schemas/" + draw(
            st.from_regex(r"\A[a-z]{1,6}\Z")
        )
    attributes.update(draw(st.dictionaries(names, extension_values, max_size=4)))
    return attributes, draw(data)


# --- one publish, and what must follow ---------------------------------------------------------


def structured_form(attributes: dict[str, Any], payload: Any) -> dict[str, Any]:
    document = dict(attributes)
    if payload is None:
        return document
    content_type, value = payload
    if content_type is not None:
        document["datacontenttype"] = content_type
    if isinstance(value, bytes):
        document["data_base64"] = base64.b64encode(value).decode()
    else:
        document["data"] = value
    return document


def binary_form(
    attributes: dict[str, Any], payload: Any
) -> tuple[list[tuple[str, str]], bytes, dict[str, Any]]:
    """The request headers and body, and the event the gateway must store from them: in binary
    mode every attribute is a String, and a body without Content-Type is bytes."""
    headers = [
        ("ce-" + name, quote(canonical(value), safe=HEADER_SAFE))
        for name, value in attributes.items()
    ]
    stored: dict[str, Any] = {name: canonical(value) for name, value in attributes.items()}
    if payload is None:
        return headers, b"", stored
    content_type, value = payload
    if isinstance(value, bytes):
        body = value
    elif content_type is None or content_type.endswith("json"):
        content_type = content_type or "application/json"
        # Not the compact form: whitespace and \u escapes must reach a binary push as sent.
        body = json.dumps(value, indent=1, ensure_ascii=True).encode() + b"\n"
    else:
        body = value.encode()
    if content_type is not None:
        headers.append(("content-type", content_type))
        stored["datacontenttype"] = content_type
    if body:
        if isinstance(value, bytes):
            stored["data_base64"] = base64.b64encode(body).decode()
        else:
            stored["data"] = value
    return headers, body, stored


async def publish_and_check(h: Harness, mode: str, attributes: dict[str, Any], payload: Any) -> str:
    sent = None
    if mode == "binary":
        headers, sent, expected = binary_form(attributes, payload)
        response = await h.publish("binary", (headers, sent))
    else:
        expected = structured_form(attributes, payload)
        request = expected if mode == "structured" else [expected]
        response = await h.publish(mode, request)
    assert response.status_code < 500, response.text
    if response.status_code != 202:
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "field" in response.json() or mode != "binary", response.text
        assert await h.stored(attributes["id"]) == []
        return "refused"
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert await h.stored(attributes["id"]) == [expected]
    pushes = await h.pushes(attributes["id"])
    check_binary_push(pushes["binary"], expected, sent)
    check_structured_push(pushes["structured"], expected)
    check_sdk_decodes(pushes, expected)
    return "accepted"


def test_publish_never_fails_and_what_is_accepted_round_trips(live: Live) -> None:
    outcomes: Counter[str] = Counter()
    serial = itertools.count()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(events(), st.sampled_from(["binary", "structured", "batch"]))
    def publish(event: tuple[dict[str, Any], Any], mode: str) -> None:
        attributes, payload = event
        attributes = {**attributes, "id": f"{next(serial)}:{attributes['id']}"}
        outcomes[live.run(publish_and_check(live.harness, mode, attributes, payload))] += 1

    publish()
    assert outcomes["accepted"] >= 50, outcomes  # the generator mostly makes valid events
    assert outcomes["refused"] >= 1, outcomes  # and some hostile ones
