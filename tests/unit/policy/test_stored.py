"""JSON data byte for byte (DESIGN "CloudEvents fidelity"): a binary-mode publish's JSON body is
stored as the text that arrived and pushed as it in binary and data mode, while the listing and
structured pushes show it as the JSON value; payloads stored by earlier versions push as before."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest

from gateway.delivery.pushes import build_push
from gateway.events import parse_request
from gateway.policy import stored
from gateway.policy.deadletters import dead_letter_payload, redriven_payload
from tests.conftest import LOOPBACK_EGRESS, make_settings, run_gateway, settle, subscription
from tests.support.subscriber import Answer, Received, run_subscriber

HEADERS = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/s", "ce-type": "t"}
BODY = b' {\n  "z": 1E2, "a": "caf\\u00e9 \\/ \\ud83d\\ude00",\n  "a": [ 1.50, -0 ]\n}\r\n'
VALUE = {"z": 100.0, "a": [1.5, 0]}  # what a JSON reader makes of BODY (the later "a" wins)


def publish(body: bytes = BODY, **headers: str) -> bytes:
    (incoming,) = parse_request({**HEADERS, "content-type": "application/json", **headers}, body)
    return incoming.payload


def test_binary_json_body_is_pushed_byte_for_byte() -> None:
    payload = publish()
    binary = build_push(payload, "binary")
    assert binary.body == BODY
    assert binary.headers["content-type"] == "application/json"
    assert binary.headers["ce-id"] == "e-1"
    data = build_push(payload, "data")
    assert data.body == BODY
    assert data.headers == {"content-type": "application/json"}


def test_the_stored_form_is_still_the_event_in_the_json_format() -> None:
    """What the topic listing and a structured push show: `data` is the JSON value."""
    payload = publish()
    document = json.loads(payload)  # a strict reader other than orjson
    assert document == {
        **{k[3:]: v for k, v in HEADERS.items()},
        "datacontenttype": "application/json",
        "data": VALUE,
    }
    structured = build_push(payload, "structured")
    assert orjson.loads(structured.body)["data"] == VALUE


@pytest.mark.parametrize(
    ("headers", "attributes"),
    [
        pytest.param(
            {"ce-subject": "%22data%22:%7B%7D"},
            {"subject": '"data":{}'},
            id="attribute-holding-the-key-text",
        ),
        pytest.param(
            {"ce-subject": '"a\\",\\"data\\":1"'},
            {"subject": 'a","data":1'},
            id="quoted-string-holding-the-key",
        ),
        pytest.param(
            {"ce-metadata": "x", "ce-data1": "y", "ce-xdata": "z"},
            {"metadata": "x", "data1": "y", "xdata": "z"},
            id="data-like-names",
        ),
        pytest.param(
            {"ce-time": "2024-05-06T07:08:09.123456789Z"},
            {"time": "2024-05-06T07:08:09.123456789Z"},
            id="with-time",
        ),
    ],
)
def test_attributes_before_the_data_cannot_confuse_it(
    headers: dict[str, str], attributes: dict[str, str]
) -> None:
    payload = publish(**headers)
    request = build_push(payload, "binary")
    assert request.body == BODY
    pushed = {name: unquote(request.headers["ce-" + name]) for name in attributes}
    assert pushed == attributes
    document = orjson.loads(payload)
    assert {name: document[name] for name in attributes} == attributes
    assert document["data"] == VALUE


@pytest.mark.parametrize(
    "body",
    [b"null", b'"a string"', b"[]", b"  0  ", b'{"data":{"data":1}}', b'{"x":"}"}'],
)
def test_every_json_text_round_trips(body: bytes) -> None:
    payload = publish(body)
    assert build_push(payload, "binary").body == body
    assert build_push(payload, "data").body == body
    assert orjson.loads(payload)["data"] == orjson.loads(body)


def test_dead_letters_and_redrive_keep_the_bytes() -> None:
    letter = dead_letter_payload(publish(), {"dlsubscription": "billing", "dlreason": "x"})
    pushed = build_push(letter, "binary")
    assert pushed.body == BODY
    assert pushed.headers["ce-dlsubscription"] == "billing"
    assert orjson.loads(letter)["data"] == VALUE
    again = dead_letter_payload(letter, {"dlsubscription": "other", "dlreason": "y"})
    assert build_push(again, "binary").headers["ce-dlsubscription"] == "other"
    assert build_push(again, "binary").body == BODY
    redriven = redriven_payload(again)
    assert build_push(redriven, "binary").body == BODY
    assert "ce-dlsubscription" not in build_push(redriven, "binary").headers


# --- payloads stored by earlier versions -------------------------------------------------------

OLD = {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "t"}


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        pytest.param(
            orjson.dumps({**OLD, "datacontenttype": "application/json", "data": {"a": [1]}}),
            b'{"a":[1]}',
            id="previous-version-binary",
        ),
        pytest.param(
            orjson.dumps({**OLD, "data": {"a": 1}, "subject": "x"}),
            b'{"a":1}',
            id="structured-data-not-last",
        ),
        pytest.param(
            json.dumps({**OLD, "datacontenttype": "application/json", "data": {"a": 1}}).encode(),
            b'{"a":1}',
            id="sdk-era-spaced",
        ),
        pytest.param(
            orjson.dumps({**OLD, "datacontenttype": "text/plain", "data": "h\u00e9"}),
            "h\u00e9".encode(),
            id="text",
        ),
        pytest.param(orjson.dumps({**OLD, "data_base64": "AAEC"}), b"\x00\x01\x02", id="bytes"),
        pytest.param(
            orjson.dumps(
                {**OLD, "specversion": "0.3", "datacontentencoding": "base64", "data": "AAEC"}
            ),
            b"\x00\x01\x02",
            id="bytes-spec-0.3",
        ),
    ],
)
def test_earlier_stored_shapes_push_as_before(payload: bytes, body: bytes) -> None:
    assert build_push(payload, "binary").body == body
    assert build_push(payload, "data").body == body
    assert build_push(payload, "binary").headers["ce-id"] == "e-1"


def test_data_text_only_where_it_can_be_cut_out() -> None:
    compact = orjson.dumps({**OLD, "data": {"a": 1}})
    assert stored.data_text(compact, orjson.loads(compact)) == b'{"a":1}'
    spaced = json.dumps({**OLD, "data": {"a": 1}}).encode()
    assert stored.data_text(spaced, orjson.loads(spaced)) is None
    middle = orjson.dumps({**OLD, "data": 1, "subject": "x"})
    assert stored.data_text(middle, orjson.loads(middle)) is None
    none = orjson.dumps(OLD)
    assert stored.data_text(none, orjson.loads(none)) is None


# --- over HTTP ---------------------------------------------------------------------------------

KEY = b"upstream-signing-key"


def upstream_signature(body: bytes) -> str:
    return hmac.new(KEY, body, hashlib.sha256).hexdigest()


def verified(request: Received) -> bool:
    """What a subscriber does that checks the upstream publisher's signature over the body."""
    signature = request.headers.get("ce-bodysig") or request.headers.get("x-bodysig", "")
    return hmac.compare_digest(signature, upstream_signature(request.body))


async def test_an_upstream_signature_over_the_body_still_verifies(tmp_path: Path) -> None:
    """Published in binary mode with the publisher's HMAC of the body in an extension: the binary
    subscriber (and the dead-letter topic's, after a permanent failure) verifies it; the
    listing and the structured subscriber see the JSON value."""
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(400 if r.path == "/refuses" else 200)
        subscriptions = [
            subscription("binary", f"{sub.url}/binary"),
            subscription("structured", f"{sub.url}/structured", contentMode="structured"),
            subscription("data", f"{sub.url}/data", contentMode="data"),
            subscription("refuses", f"{sub.url}/refuses", deadLetterTopic="orders-dead"),
            subscription("dead", f"{sub.url}/dead", topic="orders-dead"),
        ]
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "orders-dead"}],
            subscriptions=subscriptions,
        )
        async with run_gateway(settings) as gw:
            headers: dict[str, Any] = {
                **HEADERS,
                "content-type": "application/json",
                "ce-bodysig": upstream_signature(BODY),
            }
            response = await gw.client.post("/topics/orders/events", headers=headers, content=BODY)
            assert response.status_code == 202, response.text
            await settle(gw)
            await settle(gw)
            by_path = {request.path: request for request in sub.received}
            assert set(by_path) == {"/binary", "/structured", "/data", "/refuses", "/dead"}
            for path in ("/binary", "/refuses", "/dead"):
                assert by_path[path].body == BODY
                assert verified(by_path[path]), path
            assert by_path["/data"].body == BODY
            assert orjson.loads(by_path["/structured"].body)["data"] == VALUE
            listing = (await gw.client.get("/v1/topics/orders/events")).json()["events"]
            assert [event["data"] for event in listing] == [VALUE]
