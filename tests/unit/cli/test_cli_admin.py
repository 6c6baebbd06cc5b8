"""`ce-gateway`'s admin commands as a user runs them: the real console script in a subprocess,
against a real gateway served in this test's event loop (so the subprocess is awaited with
asyncio, never blocked on), checking every effect through the admin API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.settings import load_config
from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    make_settings,
    run_gateway,
    settle,
    subscription,
)
from tests.support.subscriber import Answer, Received, Subscriber, run_subscriber

CE_GATEWAY = Path(sys.executable).with_name("ce-gateway")
TIMEOUT = 20
TOPICS = [{"name": "orders"}, {"name": "orders-dead", "retention": "7d"}]
SLOW_RETRY = {"minimumBackoff": "30s", "maximumBackoff": "60s"}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def rows(self) -> list[list[str]]:
        """The table on stdout, header first, split on the column gaps."""
        return [re.split(r"\s{2,}", line.strip()) for line in self.stdout.splitlines()]


async def cli(
    *args: str, url: str | None = None, env: dict[str, str] | None = None, stdin: str = ""
) -> Run:
    """Run `ce-gateway ARGS [--url URL]` with only the given CE_GATEWAY_* variables set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CE_GATEWAY_")}
    environment.update(env or {})
    argv = [str(CE_GATEWAY), *args, *(["--url", url] if url else [])]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def ok(run: Run) -> Run:
    assert run.code == 0, (run.stdout, run.stderr)
    assert run.stderr == "", run.stderr
    return run


def failed(run: Run, code: int = 1) -> str:
    """The one stderr line of a failed command."""
    assert run.code == code, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    if code == 1:
        assert run.stdout == ""
        assert len(run.stderr.splitlines()) == 1, run.stderr
    return run.stderr.strip()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def write(path: Path, document: Any) -> str:
    path.write_text(yaml.safe_dump(document))
    return str(path)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(tmp_path / "data", egress=LOOPBACK_EGRESS, topics=TOPICS)
    async with run_gateway(settings) as running:
        yield running


@pytest.fixture
async def sub() -> AsyncIterator[Subscriber]:
    async with run_subscriber() as subscriber:
        yield subscriber


# -- usage ------------------------------------------------------------------------------------

COMMANDS = [
    ["topics"],
    ["topics", "list"],
    ["topics", "get"],
    ["topics", "apply"],
    ["topics", "delete"],
    ["subscriptions"],
    ["subscriptions", "list"],
    ["subscriptions", "get"],
    ["subscriptions", "apply"],
    ["subscriptions", "delete"],
    ["deadletters"],
    ["deadletters", "list"],
    ["deadletters", "show"],
    ["deadletters", "redrive"],
    ["deadletters", "purge"],
    ["publish"],
    ["reload"],
]


async def test_help_on_every_command_and_subcommand() -> None:
    limit = asyncio.Semaphore(4)

    async def help_of(command: list[str]) -> Run:
        async with limit:
            return await cli(*command, "--help")

    top = ok(await cli("--help"))
    for name in ("topics", "subscriptions", "deadletters", "publish", "reload", "serve"):
        assert name in top.stdout
    runs = await asyncio.gather(*(help_of(command) for command in COMMANDS))
    for command, run in zip(COMMANDS, runs, strict=True):
        ok(run)
        assert run.stdout.startswith("usage: ce-gateway " + " ".join(command)), run.stdout
        if len(command) == 2 or command[0] in ("publish", "reload"):
            assert "--url" in run.stdout and "--token" in run.stdout, command
        if command[-1] in ("list", "get", "show"):
            assert "--output" in run.stdout, command


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("topics: [unclosed")
    no_names = write(tmp_path / "nameless.yaml", {"topics": [{"retention": "1h"}]})
    cases = [
        (["topics"], "usage:"),
        (["deadletters", "redrive", "orders-dead"], "one of the arguments --id --all"),
        (["deadletters", "purge", "orders-dead", "--id", "x", "--all"], "not allowed with"),
        (["deadletters", "list", "orders-dead", "--limit", "0"], "--limit"),
        (["deadletters", "list", "orders-dead", "--reason", "bored"], "--reason"),
        (["publish", "orders", "--type", "t"], "--source"),
        (["publish", "orders", "--type", "t", "--source", "s", "--data", "{no"], "valid JSON"),
        (["topics", "list", "--url", "ftp://example.com"], "not an http"),
        (["topics", "list", "--output", "yaml"], "--output"),
        (["topics", "apply", "-f", str(tmp_path / "missing.yaml")], "cannot read"),
        (["topics", "apply", "-f", str(bad_yaml)], "not valid YAML"),
        (["topics", "apply", "-f", no_names], "topics[0] is not a mapping with a name"),
        (["subscriptions", "apply", "-f", no_names], "no subscriptions found"),
    ]
    runs = await asyncio.gather(*(cli(*args) for args, _ in cases))
    for (args, expected), run in zip(cases, runs, strict=True):
        assert expected in failed(run, code=2), args


# -- topics -----------------------------------------------------------------------------------


async def test_topics_apply_list_get_delete(gw: RunningGateway, tmp_path: Path) -> None:
    several = {"topics": [{"name": "alpha", "retention": "1h"}, {"name": "beta"}]}
    run = ok(await cli("topics", "apply", "-f", write(tmp_path / "t.yaml", several), url=gw.url))
    assert run.stdout.splitlines() == ["topic/alpha created", "topic/beta created"]
    assert (await gw.client.get("/v1/topics/alpha")).json() == {"name": "alpha", "retention": "1h"}
    one = json.dumps({"name": "alpha", "retention": "2h"})
    run = ok(await cli("topics", "apply", "-f", "-", url=gw.url, stdin=one))
    assert run.stdout == "topic/alpha updated\n"
    assert (await gw.client.get("/v1/topics/alpha")).json()["retention"] == "2h"

    table, as_json, get = await asyncio.gather(
        cli("topics", "list", url=gw.url),
        cli("topics", "list", "-o", "json", url=gw.url),
        cli("topics", "get", "beta", url=gw.url),
    )
    assert ok(table).rows == [
        ["NAME", "RETENTION"],
        ["alpha", "2h"],
        ["beta", "24h"],
        ["default", "24h"],
        ["orders", "24h"],
        ["orders-dead", "168h"],
    ]
    lines = table.stdout.splitlines()
    starts = {line.index(row[1], len(row[0])) for line, row in zip(lines, table.rows, strict=True)}
    assert starts == {len("orders-dead   ")}, "the columns are aligned"
    assert ok(as_json).json() == (await gw.client.get("/v1/topics")).json()
    assert ok(get).rows == [["NAME", "RETENTION"], ["beta", "24h"]]
    got = ok(await cli("topics", "get", "beta", "--output", "json", url=gw.url)).json()
    assert got == {"name": "beta", "retention": "24h"}

    deleted = ok(await cli("topics", "delete", "beta", "--yes", url=gw.url))
    assert deleted.stdout == "topic/beta deleted\n"
    assert (await gw.client.get("/v1/topics/beta")).status_code == 404


async def test_problems_are_one_line_with_detail_and_field(
    gw: RunningGateway, tmp_path: Path
) -> None:
    missing = (await gw.client.get("/v1/topics/nope")).json()["detail"]
    assert failed(await cli("topics", "get", "nope", url=gw.url)) == f"ce-gateway: {missing}"
    assert "always exists" in failed(await cli("topics", "delete", "default", "--yes", url=gw.url))
    bad = write(tmp_path / "bad.yaml", [{"name": "ok"}, {"name": "bad", "retention": "forever"}])
    run = await cli("topics", "apply", "-f", bad, url=gw.url)
    assert run.code == 1
    assert run.stdout == "topic/ok created\n"  # applied in order, up to the refused one
    line = run.stderr.strip()
    assert line.startswith("ce-gateway: topic 'bad': ") and "'forever'" in line
    assert line.endswith("(retention)"), line
    assert (await gw.client.get("/v1/topics/bad")).status_code == 404


# -- subscriptions ----------------------------------------------------------------------------


async def test_subscriptions_apply_list_get_delete(
    gw: RunningGateway, sub: Subscriber, tmp_path: Path
) -> None:
    sub.script = lambda request: Answer(503)
    config = {
        "topics": TOPICS,
        "subscriptions": [
            subscription("billing", sub.url + "/billing", retryPolicy=SLOW_RETRY),
            subscription(
                "audit",
                sub.url + "/audit",
                retryPolicy=SLOW_RETRY,
                deadLetterTopic="orders-dead",
                filters=[{"exact": {"type": "com.example.order.created"}}],
            ),
        ],
    }
    run = ok(
        await cli("subscriptions", "apply", "-f", write(tmp_path / "c.yaml", config), url=gw.url)
    )
    assert run.stdout.splitlines() == ["subscription/billing created", "subscription/audit created"]
    audit = (await gw.client.get("/v1/subscriptions/audit")).json()
    assert audit["deadLetterTopic"] == "orders-dead"
    assert audit["filters"] == [{"exact": {"type": "com.example.order.created"}}]

    assert (await gw.publish("orders", "e1")).status_code == 202

    async def both_tried() -> bool:
        return len(sub.received) == 2

    await eventually(both_tried, "a first attempt for each subscription")
    await settle(gw)

    table, as_json, get = await asyncio.gather(
        cli("subscriptions", "list", url=gw.url),
        cli("subscriptions", "list", "-o", "json", url=gw.url),
        cli("subscriptions", "get", "audit", url=gw.url),
    )
    header = ["NAME", "TOPIC", "DESTINATION", "PENDING", "ACKED", "DEADLETTERED", "DROPPED"]
    assert ok(table).rows == [
        [*header, "DEADLETTERTOPIC"],
        ["audit", "orders", sub.url + "/audit", "1", "0", "0", "0", "orders-dead"],
        ["billing", "orders", sub.url + "/billing", "1", "0", "0", "0", "-"],
    ]
    listed = ok(as_json).json()["subscriptions"]
    assert [s["name"] for s in listed] == ["audit", "billing"]
    assert listed[0]["status"] == (await gw.client.get("/v1/subscriptions/audit")).json()["status"]
    fields = dict(row for row in ok(get).rows if len(row) == 2)
    assert fields["destination.http.url"] == sub.url + "/audit"
    assert fields["deadLetterTopic"] == "orders-dead"
    assert fields["status.published"] == "1" and fields["status.pending"] == "1"
    assert fields["status.acked"] == "0" and fields["status.dropped"] == "0"

    # `get -o json` applies back unchanged (its status is not part of the spec).
    document = ok(await cli("subscriptions", "get", "audit", "-o", "json", url=gw.url)).json()
    assert document["status"]["pending"] == 1
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(document))
    run = ok(await cli("subscriptions", "apply", "-f", str(path), url=gw.url))
    assert run.stdout == "subscription/audit updated\n"

    refused = failed(await cli("subscriptions", "delete", "billing", url=gw.url))
    assert "1 pending" in refused, refused
    assert (await gw.client.get("/v1/subscriptions/billing")).status_code == 200
    run = ok(await cli("subscriptions", "delete", "billing", "--force", url=gw.url))
    assert run.stdout == "subscription/billing deleted\n"
    assert (await gw.client.get("/v1/subscriptions/billing")).status_code == 404

    wrong = write(tmp_path / "wrong.yaml", subscription("x", sub.url, topic="nope"))
    line = failed(await cli("subscriptions", "apply", "-f", wrong, url=gw.url))
    assert line.startswith("ce-gateway: subscription 'x' (subscriptions[0]): "), line
    assert line.endswith("(topic)"), line


# -- dead letters -----------------------------------------------------------------------------


async def test_deadletters_list_show_redrive_purge(gw: RunningGateway, sub: Subscriber) -> None:
    sub.script = lambda request: Answer(422, body=b"no thanks")
    for name in ("billing", "audit"):
        spec = subscription(name, f"{sub.url}/{name}", deadLetterTopic="orders-dead")
        assert (await gw.client.put(f"/v1/subscriptions/{name}", json=spec)).status_code == 201
    published = ok(
        await cli(
            "publish",
            "orders",
            *("--type", "com.example.order.created", "--source", "/shop"),
            *("--id", "e1", "--subject", "o-1", "--data", '{"total": 12.5}'),
            url=gw.url,
        )
    )
    assert json.loads(published.stdout) == {"accepted": 1, "duplicates": 0, "id": "e1"}
    for event_id in ("e2", "e3"):
        assert (await gw.publish("orders", event_id)).status_code == 202

    async def dead_letters() -> list[dict[str, Any]]:
        page = (await gw.client.get("/v1/topics/orders-dead/events")).json()
        events: list[dict[str, Any]] = page["events"]
        return events

    async def all_dead() -> bool:
        return len(await dead_letters()) == 6

    await eventually(all_dead, "six dead letters")
    await settle(gw)

    table, billing, limited, as_json, show = await asyncio.gather(
        cli("deadletters", "list", "orders-dead", url=gw.url),
        cli("deadletters", "list", "orders-dead", "--subscription", "billing", url=gw.url),
        cli("deadletters", "list", "orders-dead", "--limit", "2", "-o", "json", url=gw.url),
        cli(
            "deadletters", "list", "orders-dead", "--reason", "permanent", "-o", "json", url=gw.url
        ),
        cli("deadletters", "show", "orders-dead", "e1", url=gw.url),
    )
    header = ["ID", "SOURCE", "TYPE", "DLSUBSCRIPTION", "DLREASON", "DLATTEMPTS", "DLSTATUS"]
    rows = ok(table).rows
    assert rows[0] == [*header, "DLTIME"]
    assert len(rows) == 7
    assert all(
        row[1:7] == ["/shop", "com.example.order.created", row[3], "permanent", "1", "422"]
        for row in rows[1:]
    )
    assert sorted((row[0], row[3]) for row in rows[1:]) == sorted(
        (event_id, name) for event_id in ("e1", "e2", "e3") for name in ("billing", "audit")
    )
    assert sorted(row[0] for row in ok(billing).rows[1:]) == ["e1", "e2", "e3"]
    assert len(ok(limited).json()["events"]) == 2
    assert ok(as_json).json() == {"events": await dead_letters()}
    shown = ok(show).json()["events"]
    assert sorted(event["dlsubscription"] for event in shown) == ["audit", "billing"]
    for event in shown:
        assert event["id"] == "e1" and event["subject"] == "o-1"
        assert event["data"] == {"total": 12.5}
        assert event["dlbody"] == "no thanks"
    details = ok(await cli("deadletters", "show", "orders-dead", "e1", "-o", "table", url=gw.url))
    lines = details.stdout.splitlines()
    assert lines.count("") == 1, "two events, one blank line between them"
    assert len([line for line in lines if re.fullmatch(r"dlbody +no thanks", line)]) == 2
    assert len([line for line in lines if re.fullmatch(r'data +\{"total":12\.5\}', line)]) == 2
    assert "no event with id 'zz'" in failed(
        await cli("deadletters", "show", "orders-dead", "zz", url=gw.url)
    )

    sub.script = lambda request: Answer(200)
    one = ok(
        await cli(
            "deadletters",
            "redrive",
            "orders-dead",
            "--id",
            "e1",
            "--subscription",
            "billing",
            url=gw.url,
        )
    )
    assert one.stdout == "redriven 1, skipped 0\n"
    run = await cli(
        "deadletters", "redrive", "orders-dead", "--all", "--subscription", "billing", url=gw.url
    )
    assert run.code == 0, run.stderr
    assert run.stdout == "redriven 2, skipped 0\n"
    assert run.stderr == "redriven 2 of 2 matching events in orders-dead\n"  # not a terminal

    async def billing_got_all_again() -> bool:
        return all(len(sub.for_event(e)) == 3 for e in ("e1", "e2", "e3"))  # 2 x 422, 1 x 200

    await eventually(billing_got_all_again, "the redriven events delivered")
    await settle(gw)
    billing_paths = sorted(r.event_id for r in sub.received if r.path == "/billing")
    assert billing_paths == ["e1", "e1", "e2", "e2", "e3", "e3"]
    assert {event["dlsubscription"] for event in await dead_letters()} == {"audit"}
    redriven = [r for r in sub.received if r.path == "/billing"][-1]
    assert not any(name.startswith("ce-dl") for name in redriven.headers)

    purged = ok(await cli("deadletters", "purge", "orders-dead", "--id", "e2", url=gw.url))
    assert purged.stdout == "purged 1\n"
    run = await cli("deadletters", "purge", "orders-dead", "--all", "--yes", url=gw.url)
    assert (run.code, run.stdout) == (0, "purged 2\n")
    assert run.stderr == "purged 2 of 2 matching events in orders-dead\n"
    assert await dead_letters() == []
    await settle(gw)
    assert len([r for r in sub.received if r.path == "/audit"]) == 3, "purged, not redriven"
    empty = ok(await cli("deadletters", "list", "orders-dead", url=gw.url))
    assert empty.rows == [[*header, "DLTIME"]]


# -- publish ----------------------------------------------------------------------------------


async def test_publish_binary_mode(gw: RunningGateway, sub: Subscriber) -> None:
    spec = subscription("hook", sub.url)
    assert (await gw.client.put("/v1/subscriptions/hook", json=spec)).status_code == 201
    args = ("publish", "orders", "--type", "com.example.ping", "--source", "/cli")
    first, plain = await asyncio.gather(
        cli(*args, "--id", "p1", "--data", '{"hello": "world"}', url=gw.url),
        cli(*args, url=gw.url),
    )
    assert ok(first).json() == {"accepted": 1, "duplicates": 0, "id": "p1"}
    printed = ok(plain).json()
    assert printed == {"accepted": 1, "duplicates": 0, "id": printed["id"]}
    again = ok(await cli(*args, "--id", "p1", "--data", "{}", url=gw.url))
    assert again.json() == {"accepted": 0, "duplicates": 1, "id": "p1"}

    async def two_pushed() -> bool:
        return len(sub.received) == 2

    await eventually(two_pushed, "two pushes")
    by_id = {request.event_id: request for request in sub.received}
    pushed = by_id.pop("p1")
    assert pushed.headers["ce-type"] == "com.example.ping"
    assert pushed.headers["ce-source"] == "/cli"
    assert pushed.headers["content-type"] == "application/json"
    assert json.loads(pushed.body) == {"hello": "world"}
    (generated,) = by_id
    assert str(uuid.UUID(generated)) == generated
    assert generated == printed["id"], "publish prints the id it generated"

    detail = (await gw.publish("nope", "x")).json()["detail"]
    line = failed(await cli("publish", "nope", "--type", "t", "--source", "s", url=gw.url))
    assert line == f"ce-gateway: {detail}"


# -- connection -------------------------------------------------------------------------------


async def test_unreachable_url_exits_1_naming_it() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    for args in (("topics", "list"), ("deadletters", "redrive", "t", "--all"), ("reload",)):
        line = failed(await cli(*args, url=url))
        assert line.startswith(f"ce-gateway: cannot reach the gateway at {url}"), line


async def test_environment_defaults_and_bearer_token(gw: RunningGateway, sub: Subscriber) -> None:
    # The environment's URL is used when --url is absent, and --url wins over it.
    from_env = await cli("topics", "list", env={"CE_GATEWAY_URL": gw.url})
    assert ["orders", "24h"] in ok(from_env).rows
    unreachable = f"http://127.0.0.1:{closed_port()}"
    overridden = await cli("topics", "list", url=gw.url, env={"CE_GATEWAY_URL": unreachable})
    assert ok(overridden).stdout == from_env.stdout
    assert unreachable in failed(await cli("topics", "list", env={"CE_GATEWAY_URL": unreachable}))

    # A recording server stands in for a gateway to show what is sent.
    def fake_gateway(request: Received) -> Answer:
        return Answer(200, {"content-type": "application/json"}, b'{"topics": []}')

    sub.script = fake_gateway
    env = {"CE_GATEWAY_URL": sub.url, "CE_GATEWAY_TOKEN": "from-env"}
    ok(await cli("topics", "list", env=env))
    ok(await cli("topics", "list", "--token", "from-flag", env=env))
    ok(await cli("topics", "list", env={"CE_GATEWAY_URL": sub.url}))
    sent = [request.headers.get("authorization") for request in sub.received]
    assert sent == ["Bearer from-env", "Bearer from-flag", None]
    assert [request.path for request in sub.received] == ["/v1/topics"] * 3

    sub.script = lambda request: Answer(502, body=b"<html>bad gateway</html>")
    line = failed(await cli("topics", "list", env=env))
    assert line == f"ce-gateway: GET {sub.url}/v1/topics answered HTTP 502"


# -- reload -----------------------------------------------------------------------------------


async def test_reload_applies_the_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    config: dict[str, Any] = {"server": {"dataDir": str(tmp_path / "data")}, "topics": TOPICS}
    write(path, config)
    async with run_gateway(load_config(path)) as gw:
        write(path, {**config, "topics": [*TOPICS, {"name": "added", "retention": "2h"}]})
        run = ok(await cli("reload", url=gw.url))
        assert run.stdout == "reloaded: 3 topics, 0 subscriptions, 0 pruned\n"
        assert (await gw.client.get("/v1/topics/added")).json()["retention"] == "2h"
        write(path, {**config, "topics": [{"name": "bad", "retention": "soon"}]})
        line = failed(await cli("reload", url=gw.url))
        assert "'soon'" in line and line.endswith(")"), line
        assert (await gw.client.get("/v1/topics/bad")).status_code == 404


async def test_reload_without_a_config_file_is_a_problem(gw: RunningGateway) -> None:
    line = failed(await cli("reload", url=gw.url))
    assert "without --config" in line, line


# -- global options -----------------------------------------------------------------------------


async def test_global_options_before_or_after_the_command(gw: RunningGateway) -> None:
    before, between, after, json_first = await asyncio.gather(
        cli("--url", gw.url, "topics", "list"),
        cli("topics", "--url", gw.url, "list"),
        cli("topics", "list", "--url", gw.url),
        cli("--output", "json", "--url", gw.url, "topics", "list"),
    )
    assert ["orders", "24h"] in ok(before).rows
    assert ok(between).stdout == before.stdout == ok(after).stdout
    assert ok(json_first).json() == (await gw.client.get("/v1/topics")).json()
    # Given twice, the one after the command wins; -o before a command that shows JSON by
    # default still chooses.
    unreachable = f"http://127.0.0.1:{closed_port()}"
    twice = await cli("--url", unreachable, "topics", "list", "--url", gw.url)
    assert ok(twice).stdout == before.stdout
    assert unreachable in failed(await cli("--url", gw.url, "topics", "list", "--url", unreachable))
    shown = await cli("-o", "table", "--url", gw.url, "topics", "get", "orders")
    assert ok(shown).rows == [["NAME", "RETENTION"], ["orders", "24h"]]


async def test_global_token_before_the_command_is_sent(sub: Subscriber) -> None:
    sub.script = lambda request: Answer(
        200, {"content-type": "application/json"}, b'{"topics": []}'
    )
    ok(await cli("--token", "before", "--url", sub.url, "topics", "list"))
    ok(await cli("topics", "list", "--url", sub.url, "--token", "after"))
    sent = [request.headers.get("authorization") for request in sub.received]
    assert sent == ["Bearer before", "Bearer after"]


# -- reload: what it did not apply ----------------------------------------------------------------


async def test_reload_names_what_it_did_not_apply(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    token = tmp_path / "admin-token"
    token.write_text("an-admin-token-of-some-length")
    config: dict[str, Any] = {"server": {"dataDir": str(tmp_path / "data")}, "topics": TOPICS}
    write(path, config)
    async with run_gateway(load_config(path)) as gw:
        changed = {
            "server": {"dataDir": str(tmp_path / "data"), "port": 9999},
            "egress": {"allowedNetworks": ["10.0.0.0/8"]},
            "auth": {"adminTokenFile": str(token)},
            "topics": [*TOPICS, {"name": "added"}],
        }
        write(path, changed)
        answer = (await gw.client.post("/v1/config:reload")).json()
        assert answer["topics"] == 3 and answer["pruned"] == 0  # the existing fields stay
        assert answer["applied"] == ["topic/orders", "topic/orders-dead", "topic/added"]
        not_applied = {change["key"]: change["reason"] for change in answer["notApplied"]}
        assert set(not_applied) == {"server.port", "egress.allowedNetworks", "auth.adminTokenFile"}
        assert all("restart" in reason for reason in not_applied.values())
        # Really not applied: the admin API is still open, and the topic change did apply.
        assert (await gw.client.get("/v1/topics/added")).status_code == 200

        run = await cli("reload", url=gw.url)
        assert run.code == 1, run
        assert run.stdout == "reloaded: 3 topics, 0 subscriptions, 0 pruned\n"
        lines = run.stderr.splitlines()
        assert len(lines) == 3, run.stderr
        assert lines[0].startswith("ce-gateway: not applied: server.port: "), lines
        assert any(
            line.startswith("ce-gateway: not applied: auth.adminTokenFile: ") for line in lines
        )
        as_json = await cli("reload", "-o", "json", url=gw.url)
        assert as_json.code == 1 and as_json.json()["notApplied"] == answer["notApplied"]

        schemas = (await gw.client.get("/openapi.json")).json()["components"]["schemas"]
        assert {"applied", "notApplied"} <= set(schemas["ReloadResult"]["required"])
        assert set(schemas["NotApplied"]["properties"]) == {"key", "reason"}

        write(path, {**config, "topics": [*TOPICS, {"name": "added"}]})  # back as it runs
        run = ok(await cli("reload", url=gw.url))
        assert (await gw.client.post("/v1/config:reload")).json()["notApplied"] == []


# -- not found, confirmation, all-or-nothing apply ----------------------------------------------


async def dead_lettered_e1(gw: RunningGateway, sub: Subscriber) -> None:
    sub.script = lambda request: Answer(422)
    spec = subscription("billing", sub.url, deadLetterTopic="orders-dead")
    assert (await gw.client.put("/v1/subscriptions/billing", json=spec)).status_code == 201
    for event_id in ("e1", "e2"):
        assert (await gw.publish("orders", event_id)).status_code == 202

    async def dead() -> bool:
        page = (await gw.client.get("/v1/topics/orders-dead/events")).json()
        return len(page["events"]) == 2

    await eventually(dead, "two dead letters")
    await settle(gw)


async def test_redrive_and_purge_say_what_was_not_found(
    gw: RunningGateway, sub: Subscriber
) -> None:
    await dead_lettered_e1(gw, sub)
    api = await gw.client.post("/v1/topics/orders-dead/events:purge", json={"ids": ["nope"]})
    assert api.json() == {"purged": 0, "notFound": ["nope"]}
    document = (await gw.client.get("/openapi.json")).json()
    for shape in ("RedriveResult", "PurgeResult"):
        assert "notFound" in document["components"]["schemas"][shape]["properties"]
    put = document["paths"]["/v1/subscriptions/{name}"]["put"]
    assert "dryRun" in {parameter["name"] for parameter in put["parameters"]}
    sub.script = lambda request: Answer(200)

    run = await cli(
        "deadletters", "redrive", "orders-dead", "--id", "e1", "--id", "nope", url=gw.url
    )
    assert (run.code, run.stdout) == (1, "redriven 1, skipped 0\n"), run
    assert run.stderr == "ce-gateway: no dead letter in 'orders-dead' with id 'nope'\n"
    run = await cli("deadletters", "purge", "orders-dead", "--id", "e1", url=gw.url)  # redriven
    assert (run.code, run.stdout) == (1, "purged 0\n"), run
    assert "with id 'e1'" in run.stderr

    for verb in (["redrive"], ["purge", "--yes"]):
        run = await cli(
            "deadletters", *verb, "orders-dead", "--all", "--subscription", "ghost", url=gw.url
        )
        assert run.code == 1, run
        assert "subscription 'ghost' does not exist" in run.stderr, run.stderr
    # A subscription that exists, with nothing to purge, is not an error; e2 is still there.
    ok_run = await cli("deadletters", "redrive", "orders-dead", "--id", "e2", url=gw.url)
    assert (ok_run.code, ok_run.stdout) == (0, "redriven 1, skipped 0\n"), ok_run


async def cli_on_terminal(*args: str, answer: str) -> Run:
    """`ce-gateway ARGS` with a terminal as stdin, typing `answer` and Enter."""
    leader, follower = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            str(CE_GATEWAY),
            *args,
            stdin=follower,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        os.write(leader, answer.encode() + b"\n")
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    finally:
        os.close(follower)
        os.close(leader)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def test_destructive_commands_ask_first(gw: RunningGateway, sub: Subscriber) -> None:
    await dead_lettered_e1(gw, sub)
    purge = ("deadletters", "purge", "orders-dead", "--all", "--url", gw.url)

    async def depth() -> int:
        return len((await gw.client.get("/v1/topics/orders-dead/events")).json()["events"])

    # No terminal (stdin closed or a pipe): refused, naming --yes; nothing purged.
    line = failed(await cli(*purge))
    assert "without confirmation: pass --yes" in line and "purge 2 matching dead letters" in line
    assert await depth() == 2
    refused = await cli_on_terminal(*purge, answer="n")
    assert (
        refused.code == 1
        and "Purge 2 matching dead letters from 'orders-dead'? [y/N]" in refused.stderr
    )
    assert "not confirmed" in refused.stderr
    assert await depth() == 2
    confirmed = await cli_on_terminal(*purge, answer="y")
    assert (confirmed.code, confirmed.stdout) == (0, "purged 2\n"), confirmed
    assert await depth() == 0

    assert (await gw.client.put("/v1/topics/scratch", json={})).status_code == 201
    line = failed(await cli("topics", "delete", "scratch", url=gw.url))
    assert "delete topic 'scratch'" in line and "--yes" in line
    refused = await cli_on_terminal("topics", "delete", "scratch", "--url", gw.url, answer="")
    assert refused.code == 1 and "[y/N]" in refused.stderr
    assert (await gw.client.get("/v1/topics/scratch")).status_code == 200
    yes = await cli_on_terminal("topics", "delete", "scratch", "--url", gw.url, answer="yes")
    assert (yes.code, yes.stdout) == (0, "topic/scratch deleted\n"), yes
    assert (await gw.client.get("/v1/topics/scratch")).status_code == 404
    # A topic that does not exist is said so at once, without a question.
    gone = await cli_on_terminal("topics", "delete", "scratch", "--url", gw.url, answer="y")
    assert gone.code == 1 and "[y/N]" not in gone.stderr and "scratch" in gone.stderr, gone


async def test_subscriptions_apply_checks_every_item_before_applying_any(
    gw: RunningGateway, sub: Subscriber, tmp_path: Path
) -> None:
    good = [subscription("a", sub.url), subscription("b", sub.url)]
    cases = [
        # the gateway's egress policy refuses it: only the gateway can check this one
        (subscription("c", "http://10.1.2.3/hook"), "destination.http.url"),
        (subscription("c", sub.url, ackDeadline="soon"), "ackDeadline"),
        (subscription("c", sub.url, topic="nope"), "topic"),
    ]
    for bad, field in cases:
        listed = write(tmp_path / "list.yaml", [*good, bad])
        run = await cli("subscriptions", "apply", "-f", listed, url=gw.url)
        line = failed(run)
        assert line.startswith(
            "ce-gateway: subscription 'c' (subscriptions[2]): nothing was applied"
        ), line
        assert line.endswith(f"({field})"), line
        assert (await gw.client.get("/v1/subscriptions")).json()["subscriptions"] == []
    run = ok(
        await cli("subscriptions", "apply", "-f", write(tmp_path / "ok.yaml", good), url=gw.url)
    )
    assert run.stdout.splitlines() == ["subscription/a created", "subscription/b created"]
