"""Serving the app: Hypercorn by default, with the limits Hypercorn leaves off.

Hypercorn has no read timeout by default (slow-loris) and no body limit (the receiver counts);
we set `read_timeout`, keep-alive and graceful timeouts from settings. On SIGTERM/SIGINT the
gateway turns not-ready first, then Hypercorn drains in-flight requests (RELIABILITY R17).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette

from gateway.health import SHUTTING_DOWN
from gateway.settings import ServerSettings

log = logging.getLogger("gateway.config")


def hypercorn_config(server: ServerSettings, bind: str | None = None) -> Config:
    config = Config()
    config.bind = [bind or f"{server.host}:{server.port}"]
    if server.admin_port is not None and bind is None:
        config.bind.append(f"{server.host}:{server.admin_port}")
    config.read_timeout = max(1, int(server.read_timeout))
    config.keep_alive_timeout = server.keep_alive_timeout
    config.graceful_timeout = server.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our handlers (gateway.logs)
    return config


async def run_server(
    app: Starlette, server: ServerSettings, shutdown: Callable[[], Awaitable[None]] | None = None
) -> None:
    trigger = shutdown or _signals(app, server.shutdown_delay)
    await serve(app, hypercorn_config(server), shutdown_trigger=trigger)  # type: ignore[arg-type]


def _signals(app: Starlette, shutdown_delay: float) -> Callable[[], Awaitable[None]]:
    """SIGTERM/SIGINT: not ready at once, still serving for `shutdown_delay` (so a load
    balancer sees it and stops sending), then Hypercorn's graceful stop. SIGHUP: reload."""

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
