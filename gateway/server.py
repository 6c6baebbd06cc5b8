"""Serving the app: Hypercorn by default, uvicorn as the high-throughput option.

The app is plain ASGI, so both serve it identically: body limits, problem bodies, auth and the
request-head check live in the app; what a server owns is set from the same settings.

- Hypercorn (default): `read_timeout` (its default is none), keep-alive (which is also its
  deadline for a new connection's request head: slow-loris), graceful timeout, h2 stream cap.
- uvicorn (`server.engine: uvicorn`, httptools): keep-alive and graceful timeouts, the same
  16 KiB incomplete-head limit. It has no deadline for a request head nor a read timeout, so
  its protocol is extended with both (`with_deadlines`): a head must be complete within the
  keep-alive timeout, as with Hypercorn (slow-loris, RELIABILITY S8), and a request that stops
  arriving for `readTimeout` is dropped.

Signals are ours on both: SIGTERM/SIGINT turn the gateway not ready at once, it keeps serving
for `shutdownDelay` (so a load balancer notices), then the server drains (RELIABILITY R17).
SIGHUP re-applies the configuration file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import ClassVar

import uvicorn
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config.settings import ServerSettings
from gateway.ops.health import SHUTTING_DOWN

log = logging.getLogger("gateway.config")
MAX_INCOMPLETE_HEAD = 16 * 1024
GC_YOUNG_THRESHOLD = 10_000  # allocations between young-generation collections (Python: 700)


def tune_gc() -> None:
    """Set the serving process's garbage collector for a server's allocation pattern; call
    once, when the app is built and before serving.

    At Python's default, the young generation is collected every 700 allocations, so the
    objects of pushes and requests in flight (alive for milliseconds) survive into the older
    generations, and the full collections they trigger traverse every object in the process.
    Collecting less often lets them die young; freezing what was built at start-up (modules,
    app, settings) keeps it out of every later collection. Measured: event-loop CPU per push
    -15 % (bench/notes/, session 5). Both are per process, so the app and tests do not
    call this."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def hypercorn_config(server: ServerSettings, bind: str | None = None) -> Config:
    config = Config()
    config.bind = [bind or f"{server.host}:{server.port}"]
    if server.admin_port is not None and bind is None:
        config.bind.append(f"{server.host}:{server.admin_port}")
    config.read_timeout = max(1, int(server.read_timeout))
    config.keep_alive_timeout = server.keep_alive_timeout
    config.graceful_timeout = server.graceful_timeout
    config.h11_max_incomplete_size = MAX_INCOMPLETE_HEAD
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our handlers (gateway.logs)
    return config


def uvicorn_config(app: Starlette, server: ServerSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        http=with_deadlines(server.keep_alive_timeout, server.read_timeout),
        ws="none",  # no WebSocket routes: an upgrade is answered as plain HTTP
        loop="asyncio",
        lifespan="on",
        timeout_keep_alive=max(1, int(server.keep_alive_timeout)),
        timeout_graceful_shutdown=max(1, int(server.graceful_timeout)),
        h11_max_incomplete_event_size=MAX_INCOMPLETE_HEAD,
        access_log=False,
        log_config=None,  # through our handlers (gateway.logs)
        server_header=False,
    )


async def run_server(
    app: Starlette, server: ServerSettings, shutdown: Callable[[], Awaitable[None]] | None = None
) -> None:
    trigger = shutdown or _signals(app, server.shutdown_delay)
    if server.engine == "uvicorn":
        await _run_uvicorn(app, server, trigger)
    else:
        await serve(app, hypercorn_config(server), shutdown_trigger=trigger)  # type: ignore[arg-type]


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the two deadlines Hypercorn has and it lacks: a
    request head must be complete `head_seconds` after the connection opened or the head's
    first byte came; a request being received is dropped after `read_seconds` of silence.
    Timers are only set while a request is incomplete after a read, so a request that comes
    in one piece (the usual case) costs none."""

    head_seconds: ClassVar[float] = 10.0
    read_seconds: ClassVar[float] = 30.0
    _head_deadline: asyncio.TimerHandle | None = None
    _read_deadline: asyncio.TimerHandle | None = None
    _in_head = False
    _in_message = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # (which stops uvicorn's keep-alive timer)
        _cancel(self._read_deadline)
        self._read_deadline = None
        if self._in_message:  # the rest must not stay away longer than read_seconds
            self._arm_read()
        # Bytes that start no request (blank lines, which the parser skips) must not keep
        # an idle connection open either: a head is then still owed.
        if self._head_deadline is None and (self._in_head or self._idle()):
            self._arm_head()

    def _idle(self) -> bool:
        return not self._in_message and (self.cycle is None or self.cycle.response_complete)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._in_message = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        _cancel(self._head_deadline)
        self._head_deadline = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        _cancel(self._head_deadline)
        _cancel(self._read_deadline)
        super().connection_lost(exc)

    def _arm_head(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _arm_read(self) -> None:
        self._read_deadline = self.loop.call_later(self.read_seconds, self._read_too_slow)

    def _head_too_slow(self) -> None:
        self._close_unless_paused(self._arm_head)

    def _read_too_slow(self) -> None:
        self._close_unless_paused(self._arm_read)

    def _close_unless_paused(self, arm_again: Callable[[], None]) -> None:
        if self.flow.read_paused:  # uvicorn stopped reading (the app is behind), not the
            arm_again()  # client: look again later
        elif not self.transport.is_closing():
            self.transport.close()


def with_deadlines(head_seconds: float, read_seconds: float) -> type[DeadlineProtocol]:
    """The protocol class uvicorn instantiates per connection, with these deadlines."""
    return type(
        "DeadlineProtocol",
        (DeadlineProtocol,),
        {"head_seconds": head_seconds, "read_seconds": read_seconds},
    )


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()


class _QuietSignalsServer(uvicorn.Server):
    """uvicorn without its own signal handlers: ours decide when and how it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _run_uvicorn(
    app: Starlette, server: ServerSettings, trigger: Callable[[], Awaitable[None]]
) -> None:
    if server.admin_port is not None:
        raise SystemExit("server.adminPort needs server.engine: hypercorn (one bind per server)")
    instance = _QuietSignalsServer(uvicorn_config(app, server))
    serving = asyncio.create_task(instance.serve())
    stopping = asyncio.ensure_future(trigger())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    instance.should_exit = True
    await serving
    stopping.cancel()


def _signals(app: Starlette, shutdown_delay: float) -> Callable[[], Awaitable[None]]:
    """SIGTERM/SIGINT: not ready at once, still serving for `shutdown_delay` (so a load
    balancer sees it and stops sending), then the server's graceful stop. SIGHUP: reload."""

    async def wait_for_signal() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        reloads: set[asyncio.Task[None]] = set()

        def reload() -> None:
            task = asyncio.create_task(_reload(app))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
        await stop.wait()
        app.state.gateway.readiness.set_not_ready(SHUTTING_DOWN)
        log.info("shutting down: not ready now, stopping in %gs", shutdown_delay)
        await asyncio.sleep(shutdown_delay)

    return wait_for_signal


async def _reload(app: Starlette) -> None:
    try:
        await app.state.gateway.reload()
    except Exception as error:  # a bad file must not take the running gateway down
        log.error("configuration reload failed; the running configuration is unchanged: %s", error)
