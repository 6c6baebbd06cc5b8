"""A gateway as its own process (`ce-gateway serve`), for crash tests that kill it with -9."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

CE_GATEWAY = str(Path(sys.executable).with_name("ce-gateway"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def running(pid: int) -> bool:
    """Whether `pid` is a live process (an exited one may linger as a zombie until reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


class GatewayProcess:
    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        server = {
            "host": "127.0.0.1",
            "port": self.port,
            "dataDir": str(tmp_path / "data"),
            **config.get("server", {}),  # a test's own server settings (engine, timeouts)
        }
        self.config_path = tmp_path / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump({**config, "server": server}))
        self.log_path = tmp_path / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [CE_GATEWAY, "serve", "--config", str(self.config_path)], stdout=log, stderr=log
            )
        async with httpx.AsyncClient(base_url=self.url) as client:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-2000:]}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError("gateway process did not become ready")

    def children(self) -> list[int]:
        """The gateway's live child processes (its ack writer, once it has acked)."""
        assert self.process is not None
        found: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            found.extend(int(pid) for pid in task.read_text().split())
        return found

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait. Blocking: call it via asyncio.to_thread when this process pushes
        to a subscriber served on the caller's event loop."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
