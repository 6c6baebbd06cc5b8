"""`/openapi.json` against the served app, and schemathesis against a running gateway (S9).

The gateway is served by Hypercorn on 127.0.0.1 in a background thread with its own event loop
(`run_gateway`, lifespan and all); schemathesis's Python API drives it over real HTTP:
`APIOperation.as_strategy()` for each operation in positive and negative mode, then the state
machine it infers from the document (the stateful phase). Its pytest integration
(`schemathesis.pytest.from_fixture`) is not usable with pytest 9 (it reads `Function._nodeid`).

The engine's sink is replaced by a stub that resolves no name and acks every push without any
network I/O: schemathesis invents destination URLs (public names and addresses), and nothing may
leave this machine. The clock is manual, so retention never removes events behind the S9 count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import hypothesis.errors
import jsonschema_rs
import orjson
import pytest
import schemathesis
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31
from starlette.routing import Route

from gateway.clock import ManualClock
from gateway.delivery.pushes import PushRequest
from gateway.delivery.sinks.http import PushResult
from gateway.destinations.egress import EgressPolicy, PolicyResolver
from gateway.events import BATCH, STRUCTURED, IncomingEvent, parse_request
from gateway.policy.deadletters import Failure, dead_letter_attributes, dead_letter_payload
from gateway.store.lmdb import keys
from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    assert_problem,
    make_settings,
    run_gateway,
    subscription,
)

T = TypeVar("T")
TOPIC_NAMES = ("orders", "orders-dead", "default")
SUBSCRIPTION_NAMES = ("s-seed", "s-other")
MAX_EXAMPLES = 30
STATEFUL_EXAMPLES = 100
STATEFUL_STEPS = 10
PROBLEM = "application/problem+json"
JSON = "application/json"
SEEDED_SUBSCRIPTIONS = [
    subscription("s-seed", "http://subscriber.invalid/a", deadLetterTopic="orders-dead"),
    subscription("s-other", "http://subscriber.invalid/b", topic="default"),
]
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schemathesis.check
def problem_json_for_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is an RFC 9457 problem body (DESIGN "Interfaces")."""
    if response.status_code < 400:
        return None
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert media_type == PROBLEM, f"{response.status_code} answered as {media_type!r}"
    problem = orjson.loads(response.content)
    assert problem["status"] == response.status_code, problem
    assert problem["type"].startswith("urn:ce-gateway:problem:"), problem
    assert isinstance(problem["detail"], str) and problem["detail"], problem
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    problem_json_for_errors,
]


class NoDns(AbstractResolver):
    """No name resolves (as a name not created yet): the save-time check accepts it."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(f"{host}: no DNS in this test")

    async def close(self) -> None:
        pass


class NullSink:
    """The engine's sinks (HTTP and SQS), minus the network: no name is resolved and every push
    is acked at once. Schemathesis invents destination URLs and queues (public names and
    addresses); nothing may leave this machine."""

    def __init__(self, policy: EgressPolicy | None = None, *args: Any, **kwargs: Any) -> None:
        self.resolver = PolicyResolver(policy or EgressPolicy(), NoDns())
        self.pushes = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def push(self, target: object, request: PushRequest, deadline: float) -> PushResult:
        self.pushes += 1
        return PushResult(200, None, None, b"", None)


class Ledger:
    """What the 2xx answers say each topic holds: accepted publishes, less what purge and
    redrive removed; a deleted topic holds nothing."""

    def __init__(self) -> None:
        self.expected: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[tuple[str, str, int]] = collections.Counter()

    def record(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        status: int,
        body: Any,
        sent: Any = None,
    ) -> None:
        self.statuses[(method, path, status)] += 1
        if status == 202 and (method, path) == ("POST", "/topics/{topic}/events"):
            self.expected[params["topic"]] += body["accepted"]
        elif status == 202 and (method, path) == ("POST", "/"):
            self.expected["default"] += body["accepted"]
        elif status == 202 and (method, path) == ("POST", "/v1/event"):
            self.expected[f"pretry.{sent['identifier']}"] += body["accepted"]
        elif status == 204 and (method, path) == ("DELETE", "/v1/config/{identifier}"):
            for topic in ("", ".dead"):
                self.expected[f"pretry.{params['identifier']}{topic}"] = 0
        elif status == 200 and path == "/v1/topics/{name}/events:purge":
            self.expected[params["name"]] -= body["purged"]
        elif status == 200 and path == "/v1/topics/{name}/events:redrive":
            self.expected[params["name"]] -= body["redriven"]
        elif status == 204 and (method, path) == ("DELETE", "/v1/topics/{name}"):
            self.expected[params["name"]] = 0

    def record_case(self, case: Any, response: Any) -> None:
        body = None
        if response.status_code in (200, 202):
            with contextlib.suppress(ValueError):
                body = orjson.loads(response.content)
        self.record(
            case.method.upper(),
            case.operation.path,
            dict(case.path_parameters or {}),
            response.status_code,
            body,
            case.body,
        )


class LiveGateway:
    """A gateway served on 127.0.0.1 from a background thread with its own event loop."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self._gw: RunningGateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def gw(self) -> RunningGateway:
        assert self._gw is not None
        return self._gw

    @property
    def url(self) -> str:
        return self.gw.url

    def run(self, work: Callable[[], T]) -> T:
        """Call `work` on the gateway's loop thread (where its store is used) and return."""
        assert self._loop is not None

        async def call() -> T:
            return work()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(30)

    def run_async(self, work: Callable[[], Awaitable[T]]) -> T:
        """Await `work()` on the gateway's loop thread and return its result."""
        assert self._loop is not None

        async def call() -> T:
            return await work()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(30)

    def stored_events(self) -> dict[str, int]:
        """Events per topic, counted in the store itself."""
        store = self.gw.store

        def count() -> dict[str, int]:
            def run(txn: Any) -> dict[str, int]:
                found: collections.Counter[str] = collections.Counter()
                for key in txn.cursor(db=store.db["events"]).iternext(keys=True, values=False):
                    found[key.split(keys.SEP, 1)[0].decode()] += 1
                return dict(found)

            return store.read(run)

        return self.run(count)

    @contextlib.contextmanager
    def serving(self, data_dir: Path) -> Iterator[LiveGateway]:
        started = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            config = make_settings(
                data_dir,
                topics=[{"name": name} for name in TOPIC_NAMES if name != "default"],
                subscriptions=SEEDED_SUBSCRIPTIONS,
            )
            async with run_gateway(config, clock=ManualClock()) as gw:
                self._gw, self._loop, self._stop = gw, asyncio.get_running_loop(), asyncio.Event()
                started.set()
                await self._stop.wait()

        def thread_main() -> None:
            try:
                asyncio.run(main())
            except BaseException as error:
                failure.append(error)
            finally:
                started.set()

        thread = threading.Thread(target=thread_main, name="live-gateway", daemon=True)
        thread.start()
        started.wait(30)
        if failure or self._loop is None:
            raise RuntimeError("the gateway did not start") from (failure or [None])[0]
        try:
            yield self
        finally:
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            thread.join(30)
        if failure:
            raise failure[0]


def seed_dead_letters(live: LiveGateway, events: list[dict[str, Any]]) -> None:
    """Dead letters of `s-seed`, made the way the gateway makes them and stored directly:
    publishers cannot send `dl*` attributes (issue 19, F5)."""
    incoming = parse_request({"content-type": BATCH}, orjson.dumps(events))
    attributes = dead_letter_attributes(
        subscription="s-seed",
        reason="permanent",
        attempts=1,
        failure=Failure("400", None, None),
        at=0,
    )
    letters = [
        IncomingEvent(
            event.source,
            event.id,
            {**event.attributes, **attributes},
            dead_letter_payload(event.payload, attributes),
        )
        for event in incoming
    ]
    store = live.gw.store
    result = live.run_async(lambda: store.publish("orders-dead", letters, live.gw.gateway_now()))
    answer = {"accepted": result.accepted, "duplicates": result.duplicates}
    live.ledger.record("POST", "/topics/{topic}/events", {"topic": "orders-dead"}, 202, answer)


def seed(live: LiveGateway) -> None:
    """A few events for browse, purge and redrive to find: ordinary ones on each topic, and on
    `orders-dead` events shaped like dead letters of `s-seed` (so redrive has work to do)."""
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for topic in TOPIC_NAMES:
            events = [
                {"specversion": "1.0", "id": f"seed-{i}", "source": "/seed", "type": "t", "data": i}
                for i in range(5)
            ]
            if topic == "orders-dead":
                seed_dead_letters(live, events)
                continue
            response = client.post(
                f"/topics/{topic}/events",
                content=orjson.dumps(events),
                headers={"content-type": "application/cloudevents-batch+json"},
            )
            assert response.status_code == 202, response.text
            live.ledger.record(
                "POST", "/topics/{topic}/events", {"topic": topic}, 202, response.json()
            )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gateway.app.Sinks", NullSink)
        gateway = LiveGateway()
        with gateway.serving(tmp_path_factory.mktemp("openapi") / "data"):
            seed(gateway)
            yield gateway


@pytest.fixture(scope="module")
def client(live: LiveGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10) as admin:
        yield admin


@pytest.fixture(scope="module")
def api_schema(live: LiveGateway) -> Any:
    # The stateful phase sends schema-valid requests only: its links fill a request body from an
    # earlier answer, and schemathesis (4.32.5) keeps judging such a case by the negation it
    # drew (a body it then replaced), reporting valid requests as accepted invalid input.
    # Invalid input is the stateless test's negative mode.
    config = schemathesis.Config.from_dict(
        {"base-url": live.url, "phases": {"stateful": {"generation": {"mode": "positive"}}}}
    )
    return schemathesis.openapi.from_url(live.url + "/openapi.json", config=config)


def assert_store_matches_publishes(live: LiveGateway) -> None:
    """S9: the store holds exactly the events the 2xx answers account for."""
    expected = {topic: count for topic, count in live.ledger.expected.items() if count}
    assert live.stored_events() == expected


def known_names(path: str) -> tuple[str, ...]:
    if path.startswith("/v1/config/"):
        return PRETRY_IDENTIFIERS
    return SUBSCRIPTION_NAMES if path.startswith("/v1/subscriptions") else TOPIC_NAMES


EVENT = st.fixed_dictionaries(
    {
        "specversion": st.sampled_from(["1.0", "0.3"]),
        "id": st.text(min_size=1, max_size=12),
        "source": st.sampled_from(["/a", "/b", "urn:x"]),
        "type": st.sampled_from(["t", "com.example.order.created"]),
    },
    optional={"data": st.integers() | st.text(max_size=20), "subject": st.text(max_size=10)},
)
EDGE_INTEGERS = st.sampled_from([10**23, 2**64, 10_001, 10_000, 1001, 1000, 1, 0]) | st.integers()
SUBSCRIPTION_SPEC = st.fixed_dictionaries(
    {
        "topic": st.just("default"),
        "destination": st.fixed_dictionaries(
            {"http": st.fixed_dictionaries({"url": st.just("http://subscriber.invalid/p")})}
        ),
    },
    optional={"filters": st.just([{"prefix": {"source": "/a"}}])},
) | st.just(
    {
        "topic": "orders",
        "destination": {"http": {"url": "http://subscriber.invalid/q"}},
        "deadLetterTopic": "orders-dead",
    }
)
# One numeric field at a time, at, inside and past the edges of its documented range, integers
# of any size: 10^23 was stored with a 500 and made every later listing a 500 (issue 19, F4).
RANGED_FIELDS = ("maxDeliveryAttempts", "maxConcurrency", "permanentStatusCodes")
SUBSCRIPTION_SPEC |= st.tuples(st.sampled_from(RANGED_FIELDS), EDGE_INTEGERS).map(
    lambda chosen: {
        "topic": "default",
        "destination": {"http": {"url": "http://subscriber.invalid/r"}},
        chosen[0]: [chosen[1]] if chosen[0] == "permanentStatusCodes" else chosen[1],
    }
)
PRETRY_IDENTIFIERS = ("p-seed", "p-new")
PRETRY_SEED = {
    "identifier": "p-seed",
    "maxRetry": 2,
    "retryHours": [1, 2],
    "integrations": [
        {"type": "HTTP", "config": {"url": "http://subscriber.invalid/p"}},
        {
            "type": "SQS",
            "config": {
                "url": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
                "accessKey": "a",
                "secretKey": "b",
            },
        },
    ],
}
PRETRY_CONFIG = st.sampled_from(PRETRY_IDENTIFIERS).map(
    lambda identifier: {**PRETRY_SEED, "identifier": identifier}
)
PRETRY_EVENT = st.fixed_dictionaries(
    {"identifier": st.sampled_from(PRETRY_IDENTIFIERS), "eventBody": st.integers() | EVENT}
)
# Bodies the document cannot describe precisely enough for schemathesis to produce valid ones
# often (a CloudEvent, a subscription on a topic that exists): (names, body, media type).
VALID_REQUESTS: dict[tuple[str, str], tuple[tuple[str, ...], st.SearchStrategy[Any], str]] = {
    ("POST", "/topics/{topic}/events"): (TOPIC_NAMES, EVENT, STRUCTURED),
    ("POST", "/"): ((), EVENT, STRUCTURED),
    ("PUT", "/v1/subscriptions/{name}"): ((*SUBSCRIPTION_NAMES, "s-new"), SUBSCRIPTION_SPEC, JSON),
    ("POST", "/v1/config"): ((), PRETRY_CONFIG, JSON),
    ("POST", "/v1/event"): ((), PRETRY_EVENT, JSON),
    ("PUT", "/v1/topics/{name}"): (
        ("orders", "t-new"),
        st.fixed_dictionaries({}, optional={"retention": st.sampled_from(["1h", "PT90M"])}),
        JSON,
    ),
}


def cases(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    """Generated cases; for an operation with path parameters, some name a topic or
    subscription that exists, so the handler runs past its 404; in positive mode, some carry a
    body that the handler accepts."""
    strategies = [operation.as_strategy(generation_mode=mode)]
    params = re.findall(r"{(\w+)}", operation.path)
    if params:
        strategies.append(
            st.sampled_from(known_names(operation.path)).flatmap(
                lambda value: operation.as_strategy(
                    generation_mode=mode, path_parameters=dict.fromkeys(params, value)
                )
            )
        )
    valid = VALID_REQUESTS.get((operation.method.upper(), operation.path))
    if valid is not None and mode is GenerationMode.POSITIVE:
        names, bodies, media_type = valid
        accepted = st.tuples(st.sampled_from(names or ("",)), bodies).flatmap(
            lambda chosen: operation.as_strategy(
                generation_mode=mode,
                path_parameters=dict.fromkeys(params, chosen[0]),
                body=chosen[1],
                media_type=media_type,
            )
        )
        strategies.append(accepted)
    return st.one_of(strategies)


F4_BODY = {"topic": "default", "destination": {"http": {"url": "http://subscriber.invalid/f4"}}}
# Requests every run sends (as explicit examples): values past the documented ranges in bodies
# that are otherwise accepted. `maxDeliveryAttempts: 10^23` was stored although the answer was
# a 500, and every later listing was a 500 too (issue 19, F4); `reset` lists them.
EDGE_CASES: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {
    ("PUT", "/v1/subscriptions/{name}"): [
        ("s-new", {**F4_BODY, "maxDeliveryAttempts": 10**23}),
        ("s-new", {**F4_BODY, "maxDeliveryAttempts": 10_001}),
        ("s-new", {**F4_BODY, "maxConcurrency": 2**64}),
        ("s-new", {**F4_BODY, "permanentStatusCodes": [10**23]}),
        ("s-new", {**F4_BODY, "retryPolicy": {"maximumBackoff": "99999999999999999999h"}}),
    ],
    ("PUT", "/v1/topics/{name}"): [("t-new", {"retention": "0s"})],
    ("POST", "/v1/config"): [("", {**PRETRY_SEED, "maxRetry": 10**23})],
}


def edge_cases(operation: Any, mode: GenerationMode) -> list[Any]:
    if mode is not GenerationMode.POSITIVE:
        return []
    params = re.findall(r"{(\w+)}", operation.path)
    return [
        operation.Case(
            path_parameters=dict.fromkeys(params, name), body=body, media_type="application/json"
        )
        for name, body in EDGE_CASES.get((operation.method.upper(), operation.path), [])
    ]


def reset(live: LiveGateway, client: httpx.Client) -> None:
    """Back to the seeded topics and subscriptions: put back what an earlier request changed or
    deleted, delete what it created. Each stateful scenario starts from the same state, so a
    replayed scenario sees the same answers (Hypothesis requires that)."""
    for name in TOPIC_NAMES:
        assert client.put(f"/v1/topics/{name}", json={}).status_code in (200, 201)
    for spec in SEEDED_SUBSCRIPTIONS:
        body = {key: value for key, value in spec.items() if key != "name"}
        response = client.put(f"/v1/subscriptions/{spec['name']}", json=body)
        assert response.status_code in (200, 201), response.text
    for existing in client.get("/v1/subscriptions").json()["subscriptions"]:
        if existing["name"] not in SUBSCRIPTION_NAMES:
            url = f"/v1/subscriptions/{quote(existing['name'], safe='')}?force=true"
            assert client.delete(url).status_code == 204
    for topic in client.get("/v1/topics").json()["topics"]:
        if topic["name"] not in TOPIC_NAMES:
            assert client.delete(f"/v1/topics/{quote(topic['name'], safe='')}").status_code == 204
            live.ledger.expected[topic["name"]] = 0  # its events went with it
    for identifier in PRETRY_IDENTIFIERS:  # what a DELETE /v1/config/... left or removed
        client.delete(f"/v1/config/{identifier}")
    assert client.post("/v1/config", json=PRETRY_SEED).status_code == 201


# -- the document ----------------------------------------------------------------------------


async def test_openapi_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    async with run_gateway(make_settings(tmp_path / "data")) as gw:
        response = await gw.client.get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        spec = response.json()
    assert spec["openapi"].startswith("3.1.")
    jsonschema_rs.Draft202012Validator(OPENAPI_31).validate(spec)  # the official 3.1 schema
    schemas = spec["components"]["schemas"]
    for schema in schemas.values():
        jsonschema_rs.meta.validate(schema)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', orjson.dumps(spec).decode()))
    assert refs <= set(schemas), refs - set(schemas)
    operation_ids = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert list(answer["content"]) == [PROBLEM], (method, path, status)
    assert len(operation_ids) == len(set(operation_ids))


def served_routes(gw: RunningGateway) -> set[tuple[str, str]]:
    served = set()
    for route in gw.app.routes:
        assert isinstance(route, Route), route
        if route.path.startswith("/console"):
            continue  # the web console's HTML pages (issue 23) are not part of the JSON API
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # Starlette adds HEAD to every GET route
        served |= {(method, route.path) for method in methods}
    return served


async def test_every_route_is_documented_and_every_documented_operation_is_served(
    tmp_path: Path,
) -> None:
    async with run_gateway(make_settings(tmp_path / "data")) as gw:
        spec = (await gw.client.get("/openapi.json")).json()
        documented = {
            (method.upper(), path) for path, item in spec["paths"].items() for method in item
        }
        assert served_routes(gw) == documented
        # Each documented operation answers through its handler: a name that does not exist
        # gets the handler's 404 (or a 400 for the body), never the router's 404 or a 405.
        for method, path in sorted(documented):
            url = re.sub(r"{\w+}", "no-such-name", path)
            response = await gw.client.request(
                method, url, content=b"{}", headers={"content-type": "application/json"}
            )
            assert response.status_code != 405, (method, path, response.text)
            if response.status_code == 404:
                assert not response.json()["detail"].startswith("no route"), (method, path)
        # ... and what is not documented is the router's problem+json 404 or 405.
        assert_problem(await gw.client.get("/v1/nothing-here"), 404, "not-found")
        assert_problem(await gw.client.patch("/v1/topics/orders"), 405, "method-not-allowed")


LOOPBACK_URL = "http://127.0.0.1:9/"  # a literal address: no DNS; nothing is published


@pytest.mark.parametrize("resource", ["topics", "subscriptions"])
async def test_names_with_a_trailing_newline_are_refused(tmp_path: Path, resource: str) -> None:
    """Names are 1-100 of [A-Za-z0-9._-]; `TOPIC_NAME` is used with `re.match` and ends in `$`,
    which also matches before a final newline, so `orders\\n` passes as a name."""
    settings = make_settings(tmp_path / "data", egress=LOOPBACK_EGRESS)
    async with run_gateway(settings) as gw:
        body = {} if resource == "topics" else subscription("x", LOOPBACK_URL)
        body.pop("name", None)
        response = await gw.client.put(f"/v1/{resource}/orders%0A", json=body)
        listed = (await gw.client.get(f"/v1/{resource}")).json()[resource]
        assert "orders\n" not in [item["name"] for item in listed]
        assert_problem(response, 400, "invalid-request")


async def test_document_carries_the_limits(tmp_path: Path) -> None:
    """So schemathesis generates the values at and past the edges (issue 19): the ranges of
    the fields, the lengths of strings and lists, and the names' pattern."""
    async with run_gateway(make_settings(tmp_path / "data")) as gw:
        spec = (await gw.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    fields = schemas["SubscriptionSpec"]["properties"]
    assert fields["maxDeliveryAttempts"]["anyOf"][0] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10_000,
    }
    assert fields["maxConcurrency"]["minimum"] == 1
    assert fields["maxConcurrency"]["maximum"] == 1000
    codes = fields["permanentStatusCodes"]["anyOf"][0]
    assert codes["items"] == {"type": "integer", "minimum": 400, "maximum": 499}
    assert codes["maxItems"] == 100
    assert fields["filters"]["maxItems"] == 100
    assert fields["ackDeadline"]["maxLength"] == 64
    assert fields["name"]["maxLength"] == 100
    assert fields["name"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
    schedule = schemas["RetryPolicySpec"]["properties"]["schedule"]["anyOf"][0]
    assert schedule["maxItems"] == 100
    assert schemas["HttpDestinationSpec"]["properties"]["url"]["maxLength"] == 2048
    assert schemas["TopicBody"]["properties"]["retention"]["maxLength"] == 64
    pretry = schemas["PretryConfig"]["properties"]
    assert pretry["retryHours"]["maxItems"] == 100
    assert pretry["maxRetry"]["maximum"] == 100
    parameters = spec["paths"]["/v1/subscriptions/{name}"]["put"]["parameters"]
    assert parameters[0]["schema"]["pattern"] == fields["name"]["pattern"]
    parameters = spec["paths"]["/v1/config/{identifier}"]["get"]["parameters"]
    assert parameters[0]["schema"]["maxLength"] == 80


def request_schema(spec: dict[str, Any], method: str, path: str) -> tuple[bool, dict[str, Any]]:
    """Whether the operation's request body is required, and its JSON schema (refs resolvable)."""
    body = spec["paths"][path][method]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    return bool(body.get("required")), {**schema, "components": spec["components"]}


async def test_document_does_not_call_requests_the_server_accepts_invalid(tmp_path: Path) -> None:
    """What schemathesis's stateful phase ran into: `PUT /v1/subscriptions/{name}` takes the name
    from the path (a body without `name` is created), but the document's `SubscriptionSpec`
    lists `name` as required; and `PUT /v1/topics/{name}` with no body creates the topic, while
    the document says the body is required."""
    settings = make_settings(tmp_path / "data", egress=LOOPBACK_EGRESS)
    async with run_gateway(settings) as gw:
        spec = (await gw.client.get("/openapi.json")).json()
        body = {"topic": "orders", "destination": {"http": {"url": LOOPBACK_URL}}}
        created = await gw.client.put("/v1/subscriptions/s-no-name", json=body)
        bare = await gw.client.put("/v1/topics/t-no-body")
    assert created.status_code == 201, created.text
    assert bare.status_code == 201, bare.text
    problems = []
    _, schema = request_schema(spec, "put", "/v1/subscriptions/{name}")
    errors = [error.message for error in jsonschema_rs.validator_for(schema).iter_errors(body)]
    if errors:
        problems.append(f"PUT /v1/subscriptions/{{name}} {body}: {errors}")
    required, _ = request_schema(spec, "put", "/v1/topics/{name}")
    if required:
        problems.append("PUT /v1/topics/{name}: requestBody.required, yet no body is accepted")
    assert not problems, problems


# -- schemathesis ----------------------------------------------------------------------------


def test_schemathesis_every_operation_positive_and_negative(
    api_schema: Any, live: LiveGateway, client: httpx.Client
) -> None:
    """No 5xx, every answer conforms to the document (status, content type, body schema),
    invalid input is refused, every 4xx is problem+json; the store matches the 2xx publishes."""
    failures: dict[str, BaseException] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:
        reset(live, client)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=cases(operation, mode))
            @SETTINGS
            def run(case: Any) -> None:
                response = case.call(timeout=10)
                live.ledger.record_case(case, response)
                case.validate_response(response, checks=CHECKS)

            for edge in edge_cases(operation, mode):
                run = example(case=edge)(run)
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing of it can be made invalid
            except Exception as error:
                failures[f"{operation.label} ({mode.value})"] = error
    report = "\n\n".join(f"== {label}\n{error}" for label, error in failures.items())
    assert not failures, report
    assert_store_matches_publishes(live)


def test_schemathesis_stateful(api_schema: Any, live: LiveGateway, client: httpx.Client) -> None:
    """The stateful phase: sequences along the links schemathesis infers (a topic or
    subscription named by one answer is used by the next request)."""
    machine = api_schema.as_state_machine()
    ledger = live.ledger

    class Recorded(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            reset(live, client)

        def after_call(self, response: Any, case: Any) -> None:
            assert case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
            ledger.record_case(case, response)
            super().after_call(response, case)

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response, checks=CHECKS, transport_kwargs=kwargs or None, recorder=self.recorder
            )

    before = sum(ledger.statuses.values())
    Recorded.run(
        settings=settings(
            SETTINGS, max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS
        )
    )
    assert sum(ledger.statuses.values()) > before
    assert_store_matches_publishes(live)
    print(f"\nschemathesis {schemathesis.__version__}: {sum(ledger.statuses.values())} requests")
    for (method, path, status), count in sorted(ledger.statuses.items()):
        print(f"  {method:6} {path:40} {status}: {count}")
