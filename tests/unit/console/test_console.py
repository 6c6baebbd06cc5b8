"""The web console (issue 23) without a browser: its pure parts (charts, history, states, data
rendering, sessions) as tables, and its HTTP contract against a real gateway on 127.0.0.1
(security headers, login, CSRF, escaping, the admin-port split, redrive and purge through the
admin API's operations). `test_console_browser.py` drives the same pages in Chromium."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.console import charts
from gateway.console.data import data_of, hexdump
from gateway.console.history import Minute, OutcomeHistory, Totals
from gateway.console.pages import subscription_state
from gateway.console.session import Sessions, csrf_matches
from gateway.ingress.auth import Tokens, route_kind
from gateway.ops.metrics import OUTCOMES
from gateway.policy.outcomes import DELIVERY_CODES
from gateway.problems import Forbidden, Unauthorized
from gateway.store.records import Selection
from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    assert_problem,
    make_settings,
    run_gateway,
    subscription,
)
from tests.support.gateway_process import GatewayProcess, free_port
from tests.support.subscriber import Answer, Subscriber, run_subscriber

HTML = {"accept": "text/html"}
STATIC = Path(__file__).resolve().parents[3] / "gateway" / "console" / "static"


def minute(**counts: int) -> Minute:
    return Minute(0.0, {outcome: counts.get(outcome, 0) for outcome in OUTCOMES})


# -- charts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "rate", "attempts"),
    [
        pytest.param([], None, 0, id="nothing"),
        pytest.param([minute(acked=3)], 1.0, 3, id="all-acked"),
        pytest.param([minute(acked=1, retried=2), minute(deadlettered=1)], 0.25, 4, id="mixed"),
        pytest.param([minute(dropped=2)], 0.0, 2, id="all-failed"),
    ],
)
def test_summary_success_rate(minutes: list[Minute], rate: float | None, attempts: int) -> None:
    summary = charts.summarize(minutes)
    assert summary.success_rate == rate
    assert summary.attempts == attempts


def test_sparkline_draws_a_bar_per_busy_minute_and_says_it_in_text() -> None:
    svg = str(charts.sparkline([minute(), minute(acked=2), minute(acked=1, retried=1)]))
    assert svg.count('class="ok"') == 2 and svg.count('class="bad"') == 1
    assert 'role="img"' in svg
    assert "3 acked, 1 failed (75% succeeded)" in svg


def test_outcome_chart_stacks_every_outcome_with_a_text_legend() -> None:
    svg = str(charts.outcome_chart([minute(acked=1, retried=1, deadlettered=1, dropped=1)]))
    for outcome in OUTCOMES:
        assert f'class="{outcome}"' in svg
        assert f">{outcome}</text>" in svg


def test_code_chart_stacks_attempts_by_code_with_a_text_legend_and_summary() -> None:
    by_code = minute(acked=3, retried=2)
    by_code.codes.update({"2xx": 3, "5xx": 1, "timeout": 1})
    svg = str(charts.code_chart([by_code]))
    for code in DELIVERY_CODES:
        assert f'class="code-{code}"' in svg  # the legend names every code
        assert f">{code}</text>" in svg
    assert svg.count('class="code-5xx"') == 2  # its legend swatch and one bar
    assert "last hour by code: 3 2xx, 1 5xx, 1 timeout" in svg


# -- history --------------------------------------------------------------------------------


class FakeCounters:
    def __init__(self) -> None:
        self.totals: Totals = {}
        self.now = 6000.0  # minute 100

    def add(self, subscription: str, outcome: str, by: int, code: str = "2xx") -> None:
        key = (subscription, outcome, code)
        self.totals[key] = self.totals.get(key, 0.0) + by


def test_history_differences_counters_per_minute_and_keeps_an_hour() -> None:
    counters = FakeCounters()
    history = OutcomeHistory(lambda: dict(counters.totals), lambda: counters.now)
    counters.add("a", "acked", 5)
    history.sample()
    counters.add("a", "acked", 2)
    counters.add("a", "retried", 1, code="5xx")
    history.sample()  # the same minute: 7 acked, 1 retried
    counters.now += 60
    counters.add("a", "deadlettered", 4)
    history.sample()
    minutes = history.minutes("a")
    assert len(minutes) == 60
    assert minutes[-2].counts == {
        "acked": 7,
        "retried": 1,
        "deadlettered": 0,
        "dropped": 0,
        "error": 0,
    }
    assert minutes[-2].codes["2xx"] == 7 and minutes[-2].codes["5xx"] == 1
    assert minutes[-1].counts["deadlettered"] == 4
    counters.now += 59 * 60
    history.sample()
    assert history.minutes("a")[0].counts["deadlettered"] == 4
    assert sum(m.attempts for m in history.minutes("a")) == 4  # minute 100 has left the hour
    history.forget(["b"])
    assert sum(m.attempts for m in history.minutes("a")) == 0


# -- what the pages show -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "status", "state"),
    [
        pytest.param([minute()] * 60, {}, "idle", id="no-attempts"),
        pytest.param([minute(acked=2)] * 60, {}, "healthy", id="acks-only"),
        pytest.param([minute(retried=3)] + [minute()] * 59, {}, "degraded", id="old-failures"),
        pytest.param([minute(acked=1)] * 59 + [minute(retried=1)], {}, "failing", id="now-failing"),
        pytest.param(
            [minute(acked=1)] * 60,
            {"lastFailureTime": "2026-01-01T00:00:02Z", "lastSuccessTime": "2026-01-01T00:00:01Z"},
            "failing",
            id="status-failure-newer",
        ),
        pytest.param(
            [minute(acked=1)] * 60,
            {"lastFailureTime": "2026-01-01T00:00:01Z", "lastSuccessTime": "2026-01-01T00:00:02Z"},
            "healthy",
            id="status-success-newer",
        ),
    ],
)
def test_subscription_state(minutes: list[Minute], status: dict[str, Any], state: str) -> None:
    assert subscription_state(minutes, status) == state


@pytest.mark.parametrize(
    ("document", "kind", "text"),
    [
        pytest.param({"data": {"a": [1]}}, "json", '{\n  "a": [\n    1\n  ]\n}', id="json"),
        pytest.param({"data": "<b>hi</b>"}, "text", "<b>hi</b>", id="text"),
        pytest.param({"data_base64": "AAF/"}, "binary", "00000000  00 01 7f", id="binary"),
        pytest.param({}, "none", "", id="no-data"),
        pytest.param({"data_base64": "not base64!"}, "text", "not base64!", id="bad-base64"),
    ],
)
def test_event_data_as_shown(document: dict[str, Any], kind: str, text: str) -> None:
    data = data_of(document)
    assert data.kind == kind
    assert data.text.startswith(text)


def test_hexdump_prints_offsets_hex_and_printable_text() -> None:
    assert hexdump(b"AB\x00") == "00000000  41 42 00" + " " * 39 + "  AB."


# -- sessions -------------------------------------------------------------------------------


def test_sessions_check_the_admin_token_and_expire() -> None:
    now = [0.0]
    sessions = Sessions(Tokens(publisher=b"p" * 16, admin=b"a" * 16), lambda: now[0])
    sessions.check_token("a" * 16)
    with pytest.raises(Forbidden):
        sessions.check_token("p" * 16)
    with pytest.raises(Unauthorized):
        sessions.check_token("x" * 16)
    session = sessions.create()
    assert session.id != "a" * 16 and len(session.csrf) >= 32
    assert csrf_matches(session, session.csrf)
    assert not csrf_matches(session, None) and not csrf_matches(session, session.csrf[:-1])


def test_console_paths_are_their_own_route_kind() -> None:
    assert route_kind("GET", "/console") == "console"
    assert route_kind("POST", "/console/login") == "console"
    assert route_kind("GET", "/consoles") == "admin"


def test_vendored_htmx_matches_its_recorded_hash() -> None:
    recorded = (STATIC / "README.md").read_text()
    digest = hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest()
    assert f"`htmx.min.js` sha256 `{digest}`" in recorded
    assert (STATIC / "htmx.LICENSE").read_text().startswith("Zero-Clause BSD")


# -- against a real gateway ---------------------------------------------------------------

FAST_DEAD = {
    "retryPolicy": {"minimumBackoff": "0s", "maximumBackoff": "0s"},
    "maxDeliveryAttempts": 2,
    "deadLetterTopic": "orders-dead",
}


def console_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "egress": LOOPBACK_EGRESS,
        "topics": [{"name": "orders"}, {"name": "orders-dead"}],
        "subscriptions": [subscription("billing", url, **FAST_DEAD)],
        **extra,
    }


@pytest.fixture
async def failing() -> AsyncIterator[Subscriber]:
    async with run_subscriber() as subscriber:
        subscriber.script = lambda request: Answer(500, body=b"broken")
        yield subscriber


@pytest.fixture
async def console(tmp_path: Path, failing: Subscriber) -> AsyncIterator[RunningGateway]:
    async with run_gateway(make_settings(tmp_path / "data", **console_config(failing.url))) as gw:
        yield gw


async def dead_letters(gw: RunningGateway, count: int) -> list[str]:
    for _ in range(500):
        page = await gw.store.browse("orders-dead", None, 100, Selection(subscription="billing"))
        if len(page.events) >= count:
            return [orjson.loads(event.payload)["id"] for event in page.events]
        await asyncio.sleep(0.01)
    raise TimeoutError("the events did not dead-letter")


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def test_every_page_carries_the_security_headers(console: RunningGateway) -> None:
    await console.publish("orders", "e1")
    await dead_letters(console, 1)
    paths = [
        "/console",
        "/console/live",
        "/console/subscriptions/billing",
        "/console/subscriptions/billing/confirm?action=purge&id=e1",
        "/console/topics/orders",
        "/console/topics/orders/events/1",
        "/console/topics/orders/publish",
        "/console/static/console.css",
    ]
    for path in paths:
        response = await console.client.get(path, headers=HTML)
        assert response.status_code == 200, (path, response.text)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        if path != "/console/static/console.css":
            assert "<script>" not in response.text  # no inline script, only <script src>


async def test_event_data_and_names_are_escaped(console: RunningGateway) -> None:
    event = {
        "specversion": "1.0",
        "id": "<b>id</b>",
        "type": "<img src=x onerror=alert(2)>",
        "source": "/x",
        "data": "<script>alert(1)</script>",
    }
    response = await console.client.post(
        "/topics/orders/events",
        headers={"content-type": "application/cloudevents+json"},
        content=orjson.dumps(event),
    )
    assert response.status_code == 202
    page = (await console.client.get("/console/topics/orders/events/1")).text
    topic = (await console.client.get("/console/topics/orders")).text
    for text in (page, topic):
        assert "<script>alert" not in text and "<img src=x" not in text and "<b>id" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_a_post_without_the_csrf_token_is_refused(console: RunningGateway) -> None:
    await console.publish("orders", "e1")
    await dead_letters(console, 1)
    await console.client.get("/console")  # a session (auth is off)
    refused = await console.client.post(
        "/console/subscriptions/billing/purge", data={"id": "e1", "csrf": "forged"}
    )
    assert_problem(refused, 403, "forbidden")
    assert await dead_letters(console, 1) == ["e1"]


async def test_purge_through_the_console_removes_only_what_was_chosen(
    console: RunningGateway,
) -> None:
    for event_id in ("keep", "drop"):
        await console.publish("orders", event_id)
    await dead_letters(console, 2)
    confirm = await console.client.get(
        "/console/subscriptions/billing/confirm?action=purge&id=drop", headers=HTML
    )
    assert "Purge 1 dead letter(s) of billing?" in confirm.text
    done = await console.client.post(
        "/console/subscriptions/billing/purge", data={"id": "drop", "csrf": csrf_of(confirm.text)}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/subscriptions/billing?purged=1"
    assert await dead_letters(console, 1) == ["keep"]


async def test_redrive_through_the_console_delivers_again(
    console: RunningGateway, failing: Subscriber
) -> None:
    await console.publish("orders", "again")
    await dead_letters(console, 1)
    failing.script = lambda request: Answer(200)
    before = len(failing.for_event("again"))
    confirm = await console.client.get(
        "/console/subscriptions/billing/confirm?action=redrive&all=true", headers=HTML
    )
    done = await console.client.post(
        "/console/subscriptions/billing/redrive",
        data={"all": "true", "csrf": csrf_of(confirm.text)},
    )
    assert done.headers["location"] == "/console/subscriptions/billing?redriven=1&skipped=0"
    for _ in range(500):
        if len(failing.for_event("again")) > before:
            break
        await asyncio.sleep(0.01)
    assert len(failing.for_event("again")) == before + 1


async def test_publish_form_shows_the_gateways_answer(console: RunningGateway) -> None:
    form = (await console.client.get("/console/topics/orders/publish")).text
    answer = await console.client.post(
        "/console/topics/orders/publish",
        data={"type": "t", "source": "/s", "data": '{"a": 1}', "csrf": csrf_of(form)},
    )
    assert "The gateway answered 202" in answer.text
    assert "&#34;accepted&#34;: 1" in answer.text
    stored = orjson.loads((await console.store.browse("orders", None, 10)).events[0].payload)
    assert stored["data"] == {"a": 1} and stored["type"] == "t"


async def test_topic_pages_newest_first(console: RunningGateway) -> None:
    for number in range(3):
        await console.publish("orders", f"n{number}")
    newest = await console.store.browse("orders", None, 2, newest_first=True)
    assert [orjson.loads(e.payload)["id"] for e in newest.events] == ["n2", "n1"]
    older = await console.store.browse("orders", newest.next, 2, newest_first=True)
    assert [orjson.loads(e.payload)["id"] for e in older.events] == ["n0"] and older.next is None
    page = (await console.client.get("/console/topics/orders")).text
    assert page.index(">n2<") < page.index(">n1<") < page.index(">n0<")


# -- auth on --------------------------------------------------------------------------------

ADMIN = secrets.token_urlsafe(24)
PUBLISHER = secrets.token_urlsafe(24)


def auth_config(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "admin").write_text(ADMIN)
    (tmp_path / "publisher").write_text(PUBLISHER)
    return {
        "adminTokenFile": str(tmp_path / "admin"),
        "publisherTokenFile": str(tmp_path / "publisher"),
    }


async def login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = (await client.get("/console/login", headers=HTML)).text
    return await client.post(
        "/console/login", data={"token": token, "csrf": csrf_of(form)}, headers=HTML
    )


async def test_with_auth_on_the_console_wants_the_admin_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", auth=auth_config(tmp_path))
    async with run_gateway(settings) as gw:
        first = await gw.client.get("/console", headers=HTML)
        assert first.status_code == 303 and first.headers["location"] == "/console/login"
        for path in ("/console/topics/orders", "/console/topics/orders/events/1"):
            refused = await gw.client.get(path, headers=HTML)
            assert refused.status_code == 303 and refused.headers["location"] == "/console/login"
        publish = await gw.client.post("/console/topics/orders/publish", data={"type": "t"})
        assert_problem(publish, 401, "unauthorized")
        assert await gw.store.event_count("orders") == 0
        refresh = await gw.client.get("/console/live", headers={"hx-request": "true"})
        assert refresh.status_code == 401  # the overview then says its refresh failed
        assert (await login(gw.client, "wrong-token-0123456789")).status_code == 401
        assert (await login(gw.client, PUBLISHER)).status_code == 403
        assert "cegateway_console" not in gw.client.cookies
        answer = await login(gw.client, ADMIN)
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ADMIN not in cookie
        assert (await gw.client.get("/console", headers=HTML)).status_code == 200
        assert_problem(await gw.client.get("/v1/topics"), 401, "unauthorized")  # no token leak


async def test_login_without_its_form_token_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", auth=auth_config(tmp_path))
    async with run_gateway(settings) as gw:
        answer = await gw.client.post("/console/login", data={"token": ADMIN}, headers=HTML)
        assert answer.status_code == 403
        assert (
            "set-cookie" not in answer.headers
            or "cegateway_console=" not in answer.headers["set-cookie"].split(";")[0]
        )


async def test_console_lives_on_the_admin_port(tmp_path: Path) -> None:
    admin_port = free_port()
    gateway = GatewayProcess(tmp_path, {"topics": [{"name": "orders"}]})
    gateway.config_path.write_text(
        gateway.config_path.read_text().replace("server:", f"server:\n  adminPort: {admin_port}", 1)
    )
    await gateway.start()
    try:
        async with httpx.AsyncClient() as client:
            assert_problem(await client.get(gateway.url + "/console"), 404, "not-found")
            page = await client.get(f"http://127.0.0.1:{admin_port}/console")
            assert page.status_code == 200 and "<h1>Overview</h1>" in page.text
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/console/topics/nope", 404, id="unknown-topic"),
        pytest.param("/console/topics/orders?before=x%00", 400, id="bad-cursor"),
        pytest.param("/console/topics/orders/events/0", 404, id="seq-zero"),
        pytest.param("/console/topics/orders/events/99999999999999999999", 404, id="seq-huge"),
        pytest.param("/console/subscriptions/nope", 404, id="unknown-subscription"),
        pytest.param("/console/subscriptions/billing/confirm?action=evil&id=1", 404, id="action"),
        pytest.param("/console/subscriptions/billing/confirm?action=purge", 400, id="no-ids"),
        pytest.param("/console/topics/nope/publish", 404, id="publish-unknown"),
        pytest.param("/console/static/README.md", 404, id="not-an-asset"),
        pytest.param("/console/static/..%2Fpages.py", 404, id="traversal"),
    ],
)
async def test_hostile_console_requests_are_refused_not_crashed(
    console: RunningGateway, path: str, status: int
) -> None:
    response = await console.client.get(path)
    assert_problem(response, status, {400: "invalid-request", 404: "not-found"}[status])
    assert (await console.client.get(path, headers=HTML)).status_code == status


async def test_a_huge_form_is_refused(console: RunningGateway) -> None:
    form = (await console.client.get("/console/topics/orders/publish")).text
    answer = await console.client.post(
        "/console/topics/orders/publish",
        data={"csrf": csrf_of(form), "data": "x" * 300_000, "type": "t", "source": "/s"},
    )
    assert_problem(answer, 413, "payload-too-large")
    assert await console.store.event_count("orders") == 0


async def test_the_sampler_keeps_the_history_while_nobody_looks(
    tmp_path: Path, failing: Subscriber
) -> None:
    from gateway.clock import ManualClock
    from gateway.console import Console
    from tests.conftest import settle

    clock = ManualClock()
    settings = make_settings(tmp_path / "data", **console_config(failing.url))
    async with run_gateway(settings, clock=clock) as gw:
        await gw.publish("orders", "quiet")
        await dead_letters(gw, 1)
        await settle(gw)
        clock.advance(6)  # past one sampling interval; no console page is requested
        await asyncio.sleep(0.05)
        console: Console = gw.app.state.console
        minutes = console.pages.history.minutes("billing")
        assert sum(m.counts["retried"] for m in minutes) == 1
        assert sum(m.counts["deadlettered"] for m in minutes) == 1
