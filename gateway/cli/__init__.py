"""`ce-gateway`: serve the gateway, check a configuration file offline, and administer a
running gateway (the admin commands live in `gateway.cli.admin`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

import msgspec

from gateway.cli.admin import CliError, add_admin_commands, add_global_options
from gateway.config.settings import ConfigError, Port, Settings, load_config
from gateway.ops import logs


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as error:
        print(f"ce-gateway: configuration error: {error}", file=sys.stderr)
        return 2
    except CliError as error:
        print(f"ce-gateway: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: `python -m gateway.cli.demo_receiver` imports this
    # package first, and runpy warns when the module it runs is already imported.
    from gateway.cli import demo_receiver

    parser = argparse.ArgumentParser(prog="ce-gateway", description="CloudEvents push gateway")
    add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="YAML configuration file")
    serve.add_argument("--data-dir", type=Path, help="overrides server.dataDir")
    serve.add_argument("--host", help="overrides server.host")
    serve.add_argument("--port", type=_port, help="overrides server.port")
    serve.add_argument(
        "--server",
        choices=("hypercorn", "uvicorn"),
        help="overrides server.engine (uvicorn: higher throughput, no request-head deadline)",
    )
    serve.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default="auto",
        help="JSON lines, or text; auto is text on a terminal and JSON otherwise",
    )
    serve.set_defaults(run=_serve)
    validate = commands.add_parser("validate-config", help="check a configuration file offline")
    validate.add_argument("file", type=Path)
    validate.set_defaults(run=_validate)
    add_admin_commands(commands)
    demo = commands.add_parser(
        "demo-receiver",
        help="a local subscriber that prints what it receives (to try the gateway with)",
        description="a local subscriber that prints each push it receives and answers 200, or "
        "--fail-status for events of --fail-type",
    )
    demo_receiver.add_arguments(demo)
    demo.set_defaults(run=demo_receiver.run)
    return parser


def _port(text: str) -> int:
    """`--port` within server.port's own range (the file's values are checked on load; this
    one replaces the setting after that)."""
    try:
        return msgspec.convert(int(text), type=Port)
    except (ValueError, msgspec.ValidationError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; use 1 to 65535") from None


def _with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    changes = {
        key: value
        for key, value in (
            ("data_dir", args.data_dir),
            ("host", args.host),
            ("port", args.port),
            ("engine", args.server),
        )
        if value is not None
    }
    return dataclasses.replace(
        settings,
        server=dataclasses.replace(settings.server, **changes),
        overridden=frozenset(changes),
    )


def _serve(args: argparse.Namespace) -> int:

    from gateway.app import create_app, open_lmdb
    from gateway.ingress.auth import check_startup
    from gateway.server import run_server, tune_gc
    from gateway.store.lmdb.store import DataDirInUse

    logs.configure(args.log_format)
    settings = _with_overrides(load_config(args.config), args)
    check_startup(settings)  # refuse a bad file before anything starts, as validate-config does
    try:
        store = open_lmdb(settings)  # before serving, so a second gateway fails with one line
    except DataDirInUse as error:
        print(f"ce-gateway: {error}", file=sys.stderr)
        return 1
    app = create_app(settings, open_store=lambda _: store)
    tune_gc()
    asyncio.run(run_server(app, settings.server))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from gateway.ingress.auth import check_startup

    settings = load_config(args.file)
    check_startup(settings)  # what serve refuses
    print(
        f"{args.file}: ok ({len(settings.topics)} topics, "
        f"{len(settings.subscriptions)} subscriptions)"
    )
    return 0


# -- the admin API client ---------------------------------------------------------------------
