"""Processes and measurements shared by the bench scenarios (`bench/run.py`).

Everything under test runs as its own process on 127.0.0.1: the gateway (`ce-gateway serve`),
the framework ceiling (`bench/ceiling.py`), the subscriber (`bench/sink.py`), NATS, and every
load generator. This process only starts them, scrapes them and reads /proc.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
CE_GATEWAY = str(Path(sys.executable).with_name("ce-gateway"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# One client for the harness's own polling (sink counts, metrics): `httpx.get` builds a client
# and a TLS context per call, which cost the harness about half a core while it polled a
# pushing gateway every 20 ms, taken from the gateway under test.
HTTP = httpx.Client(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of a live process, all its threads, to the nanosecond: the kernel's
    per-process CPU clock of `pid` (clock id as Linux's MAKE_PROCESS_CPUCLOCK builds it).
    /proc/PID/stat counts in 10 ms ticks, too coarse for windows of a few hundred pushes."""
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:  # not Linux, or the process is gone: fall back to ticks
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM (peak RSS), RssAnon and RssFile in MiB, from /proc/PID/status."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the gateway's: its ack writer)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(child) for child in task.read_text().split())
        except OSError:  # the thread ended meanwhile
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its live children: a gateway's cost includes its ack writer."""
    return cpu_seconds(pid) + sum(_cpu_or_zero(child) for child in children(pid))


def tree_memory(pid: int) -> dict[str, float]:
    """`memory` of `pid` plus that of its live children, field by field (VmHWM is then the sum
    of the peaks, an upper bound of the peak of the sum)."""
    total = memory(pid)
    for child in children(pid):
        try:
            for name, value in memory(child).items():
                total[name] = total.get(name, 0.0) + value
        except OSError:  # it exited meanwhile
            continue
    return total


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float  # user + system seconds of the child (from wait4's rusage)


def run_child(command: list[str], timeout: float, env: dict[str, str] | None = None) -> ChildResult:
    """Run a load generator to completion; its own CPU comes from wait4 (RUSAGE of the child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=ROOT
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            wall,
            usage.ru_utime + usage.ru_stime,
        )


def last_json(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in output: {text[-2000:]}")


# --- processes --------------------------------------------------------------------------------


class Process:
    """A server process of the bench; stopped with SIGTERM (then SIGKILL) by `stop`."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.command = command
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=out,
                cwd=ROOT,
                env={**os.environ, **(self.env or {})},
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu(self) -> float:
        """CPU seconds of the process and of its children (the gateway's ack writer)."""
        return tree_cpu_seconds(self.pid)

    def memory(self) -> dict[str, float]:
        """Memory of the process and of its children, summed (see `tree_memory`)."""
        return tree_memory(self.pid)

    def wait_http(self, url: str, timeout: float = 60.0, interval: float = 0.01) -> float:
        """Poll `url` until it answers 200; returns seconds since the process was started."""
        deadline = time.perf_counter() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if not self.alive():
                    raise RuntimeError(f"{self.command[:3]} exited: {self.tail()}")
                try:
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - self.started_at
                except httpx.TransportError:
                    pass
                time.sleep(interval)
        raise TimeoutError(f"{url} not ready within {timeout}s: {self.tail()}")

    def tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class Gateway(Process):
    """`ce-gateway serve` with a YAML configuration written from `server` and `rest`."""

    def __init__(self, workdir: Path, server: dict[str, Any], rest: dict[str, Any], name: str):
        self.port = int(server.get("port") or free_port())
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "server": {
                "host": "127.0.0.1",
                "dataDir": str(workdir / "data"),
                **server,
                "port": self.port,
            },
            **rest,
        }
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        super().__init__(
            [CE_GATEWAY, "serve", "--config", str(self.config_path)], workdir / f"{name}.log"
        )

    def ready(self, timeout: float = 300.0) -> float:
        return self.wait_http(self.url + "/readyz", timeout)

    def metrics(self) -> dict[str, float]:
        return scrape(self.url + "/metrics")

    def served_by(self) -> str:
        """Which server engine answers: its `server` header, else what its log says
        (the gateway may turn the header off)."""
        header = HTTP.get(self.url + "/healthz").headers.get("server", "").lower()
        if header:
            return header
        log = self.tail(200_000)
        if "Uvicorn running on" in log:
            return "uvicorn (from its log)"
        if "hypercorn" in log.lower():
            return "hypercorn (from its log)"
        return "unknown"


def scrape(url: str) -> dict[str, float]:
    """Prometheus text exposition: sample name with labels -> value (summed over nothing)."""
    values: dict[str, float] = {}
    for line in HTTP.get(url, timeout=10).text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def fsyncs(metrics: dict[str, float]) -> float:
    return metrics.get("cegateway_store_fsyncs_total", 0.0)


class Sink(Process):
    """`bench/sink.py` on a port of its own."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        super().__init__(
            [PYTHON, str(BENCH / "sink.py"), "--port", str(self.port)],
            workdir / f"sink-{self.port}.log",
        )

    def up(self) -> Sink:
        self.start()
        self.wait_http(self.url + "stats", timeout=30)
        return self

    def get(self, path: str, **params: Any) -> Any:
        return HTTP.get(self.url + path, params=params, timeout=30).json()

    def count(self) -> int:
        return int(self.get("stats")["count"])

    def cpu_at_count(
        self, process: Process, target: int, timeout: float, interval: float = 0.002
    ) -> tuple[float, int]:
        """`process`'s CPU seconds and the arrivals counted at the same moment, once at least
        `target` have arrived: a CPU window divided by the arrivals that really fell inside
        it, wherever the window's ends land."""
        deadline = time.perf_counter() + timeout
        while True:
            before = process.cpu()
            count = self.count()
            after = process.cpu()
            if count >= target or time.perf_counter() > deadline:
                return (before + after) / 2, count
            time.sleep(interval)

    def wait_count(self, target: int, timeout: float, interval: float = 0.1) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.count() >= target:
                return True
            time.sleep(interval)
        return False


class BlackHole:
    """A port that accepts connections and never answers: pushes to it hang until their
    ackDeadline, so a subscription pointed here holds its events pending without failing."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/"
        self.held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        for connection in self.held:
            connection.close()


# --- wrk --------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (make bench does it)")
    return path


@dataclass
class WrkResult:
    requests: int
    ok: int
    other: dict[str, int]
    errors: dict[str, int]
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu: float  # wrk's own CPU seconds
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def event_rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_share(self) -> float:
        """wrk's CPU as a fraction of one core over the run."""
        return self.cpu / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    *,
    mode: str,
    count: int,
    seconds: float,
    connections: int = 64,
    threads: int = 1,
    batch: int = 1,
    prefix: str = "w",
    expect: int = 202,
) -> WrkResult:
    """POST load from wrk (`bench/wrk.lua`), bounded by `count` requests and `seconds`."""
    command = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, int(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk.lua"),
        url,
        "--",
        mode,
        str(max(1, count // threads)),
        str(batch),
        prefix,
        str(expect),
    ]
    result = run_child(command, timeout=seconds + 30)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr[-2000:]} {result.stdout[-2000:]}")
    data = last_json(result.stdout)
    ok = int(data["ok"])
    return WrkResult(
        requests=int(data["requests"]),
        ok=ok,
        other={k: int(v) for k, v in data.get("statuses", {}).items()},
        errors={k: int(v) for k, v in data["errors"].items()},
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu=result.cpu,
        events=ok * batch,
    )


# --- misc -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory_kib = int(re.findall(r"\d+", line)[0])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on this shared machine shows here."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]
