"""The demo receiver of README "First steps", as a process: what it prints and answers for a
push in each content mode, and `--fail-type` / `--fail-status`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.scenarios.test_walkthrough import process, until
from tests.unit.cli.test_cli import free_port


def test_prints_each_push_and_fails_the_chosen_type(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "receiver.log"
    argv = [sys.executable, "-m", "gateway.cli.demo_receiver", "--port", str(port)]
    argv += ["--fail-type", "com.example.bad", "--fail-status", "503"]
    with process(argv, log):
        until(lambda: "listening on" in log.read_text(), "the receiver")
        url = f"http://127.0.0.1:{port}/events"
        binary = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/s", "ce-type": "t.ok"}
        structured = {
            "specversion": "1.0",
            "id": "s1",
            "source": "/s",
            "type": "com.example.bad",
            "data": {"n": 1},
        }
        with httpx.Client(timeout=5) as client:
            ok = client.post(url, headers=binary, content=b"hello")
            bad = client.post(
                url,
                headers={"content-type": "application/cloudevents+json"},
                content=json.dumps(structured),
            )
            bare = client.post(url, content=b'{"just": "data"}')
        assert ok.status_code == 200 and bad.status_code == 503 and bare.status_code == 200
        assert "refuses com.example.bad" in bad.text
        lines = until(
            lambda: len(log.read_text().splitlines()) >= 4 and log.read_text().splitlines(),
            "three lines",
        )
    assert lines[0] == (
        f"demo receiver listening on http://127.0.0.1:{port}/; answering 503 to com.example.bad"
    )
    assert lines[1:] == [
        "received t.ok id=b1 source=/s (binary mode) data=hello -> 200",
        'received com.example.bad id=s1 source=/s (structured mode) data={"n": 1} -> 503',
        'received - id=- source=- (data mode) data={"just": "data"} -> 200',
    ]


def test_is_a_ce_gateway_command() -> None:
    ce_gateway = Path(sys.executable).with_name("ce-gateway")
    shown = subprocess.run(
        [str(ce_gateway), "demo-receiver", "--help"], capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0 and "--fail-type" in shown.stdout


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ce_gateway = Path(sys.executable).with_name("ce-gateway")
        ran = subprocess.run(
            [str(ce_gateway), "demo-receiver", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert ran.returncode == 1
    assert (
        ran.stderr == f"demo receiver: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
