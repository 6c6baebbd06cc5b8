"""A subscriber to try the gateway with: `ce-gateway demo-receiver --port 9000`.

It prints one line per push it receives (the event's type, id, source, content mode and data)
and answers 200, or `--fail-status` (422 by default: a permanent failure, dead-lettered at
once) for events of a `--fail-type`, so a newcomer sees both a delivery and a dead letter
(README "First steps"). Standard library only; not meant for production traffic.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024
DATA_SHOWN = 200  # characters of data per line


def describe(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The event a push carries: from `ce-*` headers (binary mode) or the JSON body
    (structured mode); `data` as text, shortened."""
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/cloudevents+json"):
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        if isinstance(event, dict):
            data = event.get("data", event.get("data_base64"))
            shown = data if isinstance(data, str) else json.dumps(data)
            return {**_attributes(event), "mode": "structured", "data": shown}
    attributes = {
        name[3:]: value for name, value in headers.items() if name.lower().startswith("ce-")
    }
    mode = "binary" if attributes else "data"
    return {**_attributes(attributes), "mode": mode, "data": body.decode("utf-8", "replace")}


def _attributes(event: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(event.get(key, "-")) for key in ("type", "id", "source")}


def line(event: Mapping[str, Any], status: int) -> str:
    data = " ".join(str(event["data"]).split())
    if len(data) > DATA_SHOWN:
        data = data[:DATA_SHOWN] + "..."
    return (
        f"received {event['type']} id={event['id']} source={event['source']} "
        f"({event['mode']} mode) data={data or '-'} -> {status}"
    )


def make_handler(fail_type: str | None, fail_status: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server calls do_<METHOD>
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(min(length, MAX_BODY))
            headers = {name.lower(): value for name, value in self.headers.items()}
            event = describe(headers, body)
            status = fail_status if fail_type is not None and event["type"] == fail_type else 200
            print(line(event, status), flush=True)
            answer = b"" if status < 300 else f"demo receiver refuses {fail_type}\n".encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per push is printed above; no access log

    return Handler


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="where to listen (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="where to listen (default 9000)")
    parser.add_argument(
        "--fail-type", metavar="TYPE", help="answer --fail-status to events of this type"
    )
    parser.add_argument(
        "--fail-status",
        type=int,
        default=422,
        metavar="STATUS",
        help="the status for --fail-type (default 422: permanent, dead-lettered at once; "
        "503 is retried)",
    )


def run(args: argparse.Namespace) -> int:
    handler = make_handler(args.fail_type, args.fail_status)
    try:
        server = ThreadingHTTPServer((args.host, args.port), handler)
    except OSError as error:
        reason = error.strerror or str(error)
        print(f"demo receiver: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    with server:
        failing = f"; answering {args.fail_status} to {args.fail_type}" if args.fail_type else ""
        where = f"http://{args.host}:{server.server_port}/"
        print(f"demo receiver listening on {where}{failing}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.cli.demo_receiver", description=__doc__
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
