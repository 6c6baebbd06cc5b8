"""README "First steps" as a newcomer runs it: `make run`'s gateway (config/example.yaml, in a
temp data dir on a free port), the README's demo receiver, and the README's `ce-gateway`
commands, each a real process; the push must arrive and the refused event must be dead-lettered.

The only changes to what the README says: the ports (free ones instead of 8080 and 9000, so the
test cannot collide with anything on this machine), the data directory, and `ce-gateway` is the
console script next to this interpreter (what `. .venv/bin/activate` puts on the PATH).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.unit.cli.test_cli import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CE_GATEWAY = Path(sys.executable).with_name("ce-gateway")
README = ROOT / "README.md"
EXAMPLE = ROOT / "config" / "example.yaml"
WAIT = 20.0


def first_steps() -> str:
    text = README.read_text()
    return text.split("\n## First steps\n", 1)[1].split("\n## ", 1)[0]


def commands(section: str) -> list[list[str]]:
    """The `ce-gateway ...` lines of the section's sh blocks, split as a shell would."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            if line.startswith("ce-gateway "):
                found.append(shlex.split(line, comments=True)[1:])
    return found


def make_run_command() -> list[str]:
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].splitlines()[1]
    return shlex.split(recipe.replace("$(VENV)/bin/ce-gateway", "ce-gateway"))


def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        running = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield running
    finally:
        if running.poll() is None:
            running.send_signal(signal.SIGINT if "demo-receiver" in argv else signal.SIGTERM)
            try:
                running.wait(timeout=15)
            except subprocess.TimeoutExpired:
                running.kill()
                running.wait(timeout=5)


def with_port(words: list[str], port: int) -> list[str]:
    index = words.index("--port")
    return [*words[: index + 1], str(port), *words[index + 2 :]]


def test_make_run_serves_the_example_config() -> None:
    assert make_run_command()[:4] == ["ce-gateway", "serve", "--config", "config/example.yaml"]
    settings = yaml.safe_load(EXAMPLE.read_text())
    assert settings["egress"] == {"allowedNetworks": ["127.0.0.1/32"]}, "loopback, explicitly"


def test_first_steps_show_a_push_and_a_dead_letter(tmp_path: Path) -> None:
    steps = commands(first_steps())
    (receiver_args,) = [words for words in steps if words[0] == "demo-receiver"]
    publishes = [words for words in steps if words[0] == "publish"]
    assert len(publishes) == 2
    assert ["subscriptions", "get", "orders-to-demo"] in steps
    assert ["deadletters", "list", "orders-dead"] in steps

    receiver_port, gateway_port = free_port(), free_port()
    config = EXAMPLE.read_text()
    assert "http://127.0.0.1:9000/events" in config and receiver_args[-3:-2] != ["--port"]
    config_path = tmp_path / "example.yaml"
    config_path.write_text(config.replace("127.0.0.1:9000", f"127.0.0.1:{receiver_port}"))
    serve = make_run_command()
    serve[serve.index("--config") + 1] = str(config_path)
    serve[serve.index("--data-dir") + 1] = str(tmp_path / "data")
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    env = {**os.environ, "CE_GATEWAY_URL": gateway_url}

    def ce_gateway(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CE_GATEWAY), *words], capture_output=True, text=True, timeout=30, env=env
        )

    received = tmp_path / "receiver.log"
    with (
        process([str(CE_GATEWAY), *with_port(receiver_args, receiver_port)], received),
        process(
            [str(CE_GATEWAY), *serve[1:], "--port", str(gateway_port)], tmp_path / "gateway.log"
        ) as gateway,
    ):
        until(lambda: "listening on" in received.read_text(), "the demo receiver")
        wait_ready(gateway, gateway_url, tmp_path / "gateway.log")
        ids = []
        for words in publishes:
            published = ce_gateway(*words)
            assert published.returncode == 0, published.stderr
            answer = json.loads(published.stdout)
            assert (answer["accepted"], answer["duplicates"]) == (1, 0)
            ids.append(answer["id"])

        def pushed() -> list[str]:
            lines = received.read_text().splitlines()
            return [line for line in lines if line.startswith("received ")]

        lines = until(lambda: len(pushed()) >= 2 and pushed(), "two pushes")
        assert len(lines) == 2, lines
        pushes = {line.split(" id=")[1].split(" ")[0]: line for line in lines}
        created, refused = ids
        assert "com.example.order.created" in pushes[created]
        assert pushes[created].endswith("-> 200")
        assert pushes[refused].endswith("-> 422")

        def data(line: str) -> Any:
            return json.loads(line.split(" data=", 1)[1].rsplit(" -> ", 1)[0])

        assert (data(pushes[created]), data(pushes[refused])) == ({"order": 42}, {"order": 43})

        def dead_letters() -> list[dict[str, Any]]:
            listed = ce_gateway("deadletters", "list", "orders-dead", "-o", "json")
            assert listed.returncode == 0, listed.stderr
            events: list[dict[str, Any]] = json.loads(listed.stdout)["events"]
            return events

        (dead,) = until(dead_letters, "the dead letter")
        assert (dead["id"], dead["dlreason"], dead["dlstatus"]) == (refused, "permanent", "422")
        assert dead["type"] == "com.example.order.refused"
        table = ce_gateway("deadletters", "list", "orders-dead")
        assert refused in table.stdout and "permanent" in table.stdout
        shown = ce_gateway("subscriptions", "get", "orders-to-demo", "-o", "json")
        status = json.loads(shown.stdout)["status"]
        assert (status["acked"], status["deadlettered"], status["pending"]) == (1, 1, 0)
