"""The framework ceiling: what a Starlette app under the gateway's own server settings can answer
when a publish is parsed exactly as the gateway parses it but nothing is stored.

`POST /topics/{topic}/events` (and `POST /`) reads the body with the gateway's limit
(`gateway.ingress.bodies.read_body`), parses it with `gateway.events.parse_request`, and
answers 202 with the gateway's body shape. Errors go through the gateway's problem
responses. It is served from the same YAML configuration as the gateway, by the same engine:
Hypercorn with
`gateway.server.hypercorn_config`, or uvicorn (through `gateway.server`'s uvicorn settings when
that module offers them).

    python bench/ceiling.py --config gateway.yaml [--engine hypercorn|uvicorn]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import server as gateway_server
from gateway.config.settings import ServerSettings, load_config
from gateway.events import parse_request
from gateway.ingress.bodies import read_body
from gateway.problems import GatewayError, problem_response


def create_app(max_body_size: int) -> Starlette:
    async def publish(request: Request) -> Response:
        body = await read_body(request, max_body_size)
        events = parse_request(request.headers, body)
        return Response(
            orjson.dumps({"accepted": len(events), "duplicates": 0}),
            status_code=202,
            media_type="application/json",
        )

    async def ok(request: Request) -> Response:
        return Response(b"ok")

    async def gateway_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, GatewayError)
        return problem_response(error, instance=request.url.path)

    return Starlette(
        routes=[
            Route("/topics/{topic}/events", publish, methods=["POST"]),
            Route("/", publish, methods=["POST"]),
            Route("/readyz", ok),
            Route("/healthz", ok),
        ],
        exception_handlers={GatewayError: gateway_error},
    )


async def serve_hypercorn(app: Starlette, server: ServerSettings) -> None:
    from hypercorn.asyncio import serve

    config = gateway_server.hypercorn_config(server)
    await serve(app, config)  # type: ignore[arg-type]


def serve_uvicorn(app: Starlette, server: ServerSettings) -> None:
    import uvicorn

    # Use the gateway's own uvicorn settings when `gateway.server` has them (issue 9's engine
    # option); otherwise uvicorn's defaults with httptools, the way it is usually run.
    make = getattr(gateway_server, "uvicorn_config", None)
    if make is not None:
        parameters = inspect.signature(make).parameters
        config = make(app, server) if len(parameters) >= 2 else make(server)
        if not isinstance(config, uvicorn.Config):
            config = uvicorn.Config(app, **dict(config))
        config.app = app
    else:
        config = uvicorn.Config(
            app,
            host=server.host,
            port=server.port,
            http="httptools",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=int(server.keep_alive_timeout),
        )
    uvicorn.Server(config).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--engine", choices=["hypercorn", "uvicorn"], default=None)
    options = parser.parse_args()
    settings = load_config(options.config)
    engine: Any = options.engine or getattr(settings.server, "engine", "hypercorn")
    app = create_app(settings.server.max_body_size)
    tune_gc = getattr(gateway_server, "tune_gc", None)  # benching a tree from before it
    if tune_gc is not None:
        tune_gc()  # the gateway's own process settings
    if engine == "uvicorn":
        serve_uvicorn(app, settings.server)
    else:
        asyncio.run(serve_hypercorn(app, settings.server))


if __name__ == "__main__":
    main()
