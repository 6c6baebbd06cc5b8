"""`ce-gateway` as a user runs it: the real console script in a subprocess.

`python -m gateway.cli` has no `__main__` guard, so the installed `ce-gateway` script next to the
interpreter is what runs here.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import subscription

ROOT = Path(__file__).resolve().parents[3]
CE_GATEWAY = Path(sys.executable).parent / "ce-gateway"
EXAMPLE = ROOT / "config" / "example.yaml"
TIMEOUT = 30


def ce_gateway(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CE_GATEWAY), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd or ROOT,
        check=False,
    )


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def serving(
    data_dir: Path, log: Path, *extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real `ce-gateway serve [EXTRA]` on a free loopback port, ready; SIGTERM'd at the
    end."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(CE_GATEWAY),
                "serve",
                "--data-dir",
                str(data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *extra,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url, log)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=url, timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"gateway exited early: {log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.05)
    raise AssertionError(f"gateway never became ready: {log.read_text()}")


def test_console_script_is_installed() -> None:
    assert CE_GATEWAY.exists(), f"{CE_GATEWAY} missing; pip install -e ."


def test_help_lists_the_commands() -> None:
    result = ce_gateway("--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "validate-config" in result.stdout
    for command in ("serve", "validate-config"):
        sub = ce_gateway(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: ce-gateway " + command in sub.stdout
    assert "--data-dir" in ce_gateway("serve", "--help").stdout


@pytest.mark.parametrize("port", ["0", "65536", "99999", "http"])
def test_serve_port_outside_the_port_range_is_a_usage_error(port: str, tmp_path: Path) -> None:
    result = ce_gateway("serve", "--data-dir", str(tmp_path / "data"), "--port", port)
    assert result.returncode == 2
    assert "use 1 to 65535" in result.stderr
    assert not (tmp_path / "data").exists()


def test_no_command_is_a_usage_error() -> None:
    result = ce_gateway()
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_validate_example_config_is_ok() -> None:
    result = ce_gateway("validate-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{EXAMPLE}: ok (2 topics, 1 subscriptions)"
    assert result.stderr == ""


def test_validate_config_with_subscriptions_is_ok(tmp_path: Path) -> None:
    config = {
        "egress": {"allowedNetworks": ["127.0.0.1/32"]},
        "topics": [{"name": "orders"}, {"name": "orders-dead", "retention": "7d"}],
        "subscriptions": [
            subscription(
                "billing",
                "http://127.0.0.1:9000/hook",
                filters=[{"exact": {"type": "com.example.order.created"}}],
                retryPolicy={"schedule": ["1h", "2h"]},
                deadLetterTopic="orders-dead",
            )
        ],
    }
    result = ce_gateway("validate-config", str(write_config(tmp_path / "ok.yaml", config)))
    assert result.returncode == 0, result.stderr
    assert "ok (2 topics, 1 subscriptions)" in result.stdout


def _sub(**overrides: Any) -> dict[str, Any]:
    return subscription("s1", "https://example.com/hook", **overrides)


BAD_CONFIGS = [
    pytest.param(
        {"topics": [{"name": "orders"}], "subscriptions": [{**_sub(), "colour": "red"}]},
        ["subscriptions[0]", "colour"],
        id="unknown-key",
    ),
    pytest.param({"serverr": {}}, ["serverr"], id="unknown-top-level-key"),
    pytest.param(
        {
            "topics": [{"name": "orders"}],
            "subscriptions": [_sub(retryPolicy={"maximumBackoff": "ten minutes"})],
        },
        ["subscriptions[0].retryPolicy.maximumBackoff"],
        id="bad-duration",
    ),
    pytest.param(
        {"topics": [{"name": "orders", "retention": "forever"}]},
        ["topics[0].retention"],
        id="bad-retention",
    ),
    pytest.param(
        {"subscriptions": [_sub()]},
        ["subscriptions[0].topic", "orders"],
        id="missing-topic",
    ),
    pytest.param(
        {
            "topics": [{"name": "a"}, {"name": "b"}],
            "subscriptions": [
                subscription("s1", "https://example.com/1", topic="a", deadLetterTopic="b"),
                subscription("s2", "https://example.com/2", topic="b", deadLetterTopic="a"),
            ],
        },
        ["deadLetterTopic", "cycle"],
        id="dead-letter-cycle",
    ),
    pytest.param(
        {
            "topics": [{"name": "orders"}],
            "subscriptions": [subscription("s1", "http://169.254.169.254/latest/meta-data")],
        },
        ["subscriptions[0].destination.http.url", "169.254.169.254"],
        id="ssrf-metadata",
    ),
    pytest.param(
        {"topics": [{"name": "orders"}], "subscriptions": [subscription("s1", "http://[::1]/")]},
        ["subscriptions[0].destination.http.url"],
        id="ssrf-loopback-v6",
    ),
    pytest.param(
        {"egress": {"allowedNetworks": ["127.0.0.1/40"]}},
        ["egress", "127.0.0.1/40"],
        id="bad-cidr",
    ),
]


@pytest.mark.parametrize(("config", "expected"), BAD_CONFIGS)
def test_validate_bad_config_exits_2_naming_the_key(
    tmp_path: Path, config: dict[str, Any], expected: list[str]
) -> None:
    result = ce_gateway("validate-config", str(write_config(tmp_path / "bad.yaml", config)))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("ce-gateway: configuration error: ")
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr


def test_dead_letter_cycle_names_the_key_path(tmp_path: Path) -> None:
    """DESIGN: dead-letter cycles are refused "with a message that names the key path"; the
    message says `subscription 's1'.deadLetterTopic` rather than `subscriptions[0]...`."""
    config = {
        "topics": [{"name": "a"}, {"name": "b"}],
        "subscriptions": [
            subscription("s1", "https://example.com/1", topic="a", deadLetterTopic="b"),
            subscription("s2", "https://example.com/2", topic="b", deadLetterTopic="a"),
        ],
    }
    result = ce_gateway("validate-config", str(write_config(tmp_path / "cycle.yaml", config)))
    assert result.returncode == 2
    assert "subscriptions[1].deadLetterTopic" in result.stderr or (
        "subscriptions[0].deadLetterTopic" in result.stderr
    ), result.stderr


def test_malformed_destination_url_is_a_configuration_error(tmp_path: Path) -> None:
    """`http://[::1` makes urlsplit raise ValueError, which escapes as a traceback (exit 1)."""
    config = {"topics": [{"name": "orders"}], "subscriptions": [subscription("s1", "http://[::1")]}
    result = ce_gateway("validate-config", str(write_config(tmp_path / "url.yaml", config)))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2
    assert "subscriptions[0].destination.http.url" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "cannot read config file", id="missing-file"),
        pytest.param("topics: [unclosed", "is not valid YAML", id="bad-yaml"),
        pytest.param("- just\n- a list\n", "(top level)", id="not-a-mapping"),
    ],
)
def test_validate_unreadable_config_exits_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "config.yaml"
    if content is not None:
        path.write_text(content)
    result = ce_gateway("validate-config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("ce-gateway: configuration error: ")
    assert expected in result.stderr


def test_serve_bad_config_exits_2_without_starting(tmp_path: Path) -> None:
    data_dir = tmp_path / "never-created"
    port = free_port()
    config = {
        "server": {"dataDir": str(data_dir), "host": "127.0.0.1", "port": port},
        "topics": [{"name": "orders"}],
        "subscriptions": [subscription("s1", "http://127.0.0.1:9/")],
    }
    result = ce_gateway("serve", "--config", str(write_config(tmp_path / "bad.yaml", config)))
    assert result.returncode == 2, result.stderr
    assert "ce-gateway: configuration error: subscriptions[0].destination.http.url" in (
        result.stderr
    )
    assert "Running on" not in result.stderr
    assert not data_dir.exists()
    # Nothing listens on the port it would have used.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_serve_second_gateway_on_same_data_dir_exits_1(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir, tmp_path / "first.log") as (first, url):
        second_port = free_port()
        result = ce_gateway(
            "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(second_port)
        )
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(data_dir) in lines[0]
        assert "in use" in lines[0]
        assert f"pid {first.pid}" in lines[0]
        # The first gateway is untouched and still serving.
        assert first.poll() is None
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.get("/readyz").status_code == 200
            assert client.get("/v1/topics").json()["topics"][0]["name"] == "default"
    assert first.returncode == 0


def test_serve_stops_cleanly_on_sigterm_and_data_dir_is_reusable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir, tmp_path / "one.log") as (first, url):
        with httpx.Client(base_url=url, timeout=5) as client:
            response = client.put("/v1/topics/kept", json={"retention": "48h"})
            assert response.status_code == 201
    assert first.returncode == 0
    with serving(data_dir, tmp_path / "two.log") as (_, url):
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.get("/v1/topics/kept").json() == {"name": "kept", "retention": "48h"}


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "auth.adminTokenFile: cannot read"),
        ("short", "auth.adminTokenFile: the token in"),
    ],
)
def test_validate_config_refuses_what_serve_refuses(
    tmp_path: Path, token: str | None, expected: str
) -> None:
    """A missing or short token file: validate-config and serve give the same one line."""
    token_file = tmp_path / "admin-token"
    if token is not None:
        token_file.write_text(token)
    data_dir = tmp_path / "never-created"
    config = {
        "server": {"dataDir": str(data_dir), "port": free_port()},
        "auth": {"adminTokenFile": str(token_file)},
    }
    path = write_config(tmp_path / "gateway.yaml", config)
    validated = ce_gateway("validate-config", str(path))
    assert validated.returncode == 2, validated.stdout
    assert validated.stderr.startswith("ce-gateway: configuration error: " + expected)
    served = ce_gateway("serve", "--config", str(path))
    assert served.returncode == 2, served.stderr
    assert served.stderr.splitlines()[-1] == validated.stderr.strip()
    assert not data_dir.exists()
    token_file.write_text("a-token-of-sixteen-bytes-or-more")
    assert ce_gateway("validate-config", str(path)).returncode == 0


def test_reload_leaves_out_what_the_command_line_set(tmp_path: Path) -> None:
    """`serve --data-dir --port` override the file: a reload of the unchanged file applies
    everything (exit 0), and only a key the command line does not set is named as needing a
    restart."""
    config: dict[str, Any] = {
        "server": {"dataDir": "./elsewhere", "port": 8080},
        "topics": [{"name": "orders"}],
    }
    path = write_config(tmp_path / "gateway.yaml", config)
    with serving(tmp_path / "data", tmp_path / "serve.log", "--config", str(path)) as (_, url):
        unchanged = ce_gateway("reload", "--url", url)
        assert unchanged.returncode == 0, unchanged.stderr
        assert unchanged.stdout == "reloaded: 1 topics, 0 subscriptions, 0 pruned\n"
        config["server"] = {"dataDir": "./moved", "port": 9090, "maxBodySize": "2MiB"}
        write_config(path, config)
        changed = ce_gateway("--url", url, "reload")
        assert changed.returncode == 1, changed.stderr
        (line,) = changed.stderr.splitlines()
        assert line.startswith("ce-gateway: not applied: server.maxBodySize: "), line
