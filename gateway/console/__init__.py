"""The web console (issue 23, DESIGN "Console"): `GET /console` serves pages rendered here from
the gateway's own registries, store and admin operations, with templates and static assets
(htmx vendored, see `static/README.md`) inside the package and no request to any other host.

    calls     the admin API's operations, called in process (the console's only way to act)
    actions   redrive, purge and publish, each one admin operation
    history   per-minute push outcomes, differenced from the metrics counters
    charts    SVG drawn from that history
    data      an event's data as shown (JSON, text, or a hex dump)
    pages     what each page shows
    session   login cookie and CSRF tokens
    routes    the Starlette routes and their guard

`install` is the one call the app makes. The routes are classed as `console` by
`gateway.ingress.auth`, so with `server.adminPort` set they answer only on the admin port, and the
bearer check is left to the console's own login session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from gateway.console.calls import AdminCalls
from gateway.console.history import OutcomeHistory, delivery_totals, start_sampler
from gateway.console.pages import Pages
from gateway.console.routes import Console
from gateway.console.session import Sessions
from gateway.ingress.auth import load_tokens

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["Console", "install"]


def install(app: Starlette, gateway: Gateway) -> Console:
    """Add the console's routes to `app` (the console is `app.state.console`), and run its
    outcome sampler while the app runs."""
    calls = AdminCalls(lambda: gateway.operations)
    history = OutcomeHistory(lambda: delivery_totals(gateway.metrics), gateway.clock.now)
    sessions = Sessions(load_tokens(gateway.settings.auth), gateway.clock.now)
    console = Console(Pages(gateway, calls, history), calls, sessions)
    app.router.routes.extend(console.routes())
    app.state.console = console
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            sampler = start_sampler(history, gateway.clock)
            try:
                yield state
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)

    app.router.lifespan_context = lifespan
    return console
