"""`ce-gateway` admin commands: topics, subscriptions, dead letters, publish and reload, over
the admin API (DESIGN "CLI").

Commands talk to the API through `AdminClient`. An API problem or a connection failure becomes a
`CliError`, printed as one line on stderr with exit code 1; a bad `apply` file exits 2, as
argparse does for usage errors. httpx is imported only when a command runs, so `--help` stays
quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote

from gateway import cli_output as out

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
PAGE = 1000  # the admin API's largest page
TIMEOUT = 30.0
BULK_TIMEOUT = 600.0  # redrive/purge of a whole topic runs in one request
REASONS = ("exhausted", "permanent", "expired")
CONFIG_KEYS = {"server", "egress", "auth", "topics", "subscriptions", "prune"}


class CliError(Exception):
    """What a command prints as `ce-gateway: <message>` before exiting with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status  # the API's HTTP status, when it answered with an error


class AdminClient:
    """A sync httpx client for one gateway; API problems and transport failures raise CliError."""

    def __init__(self, url: str, token: str | None) -> None:
        import httpx

        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self._client = httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._client.close()

    def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        import httpx

        try:
            response = self._client.request(method, path, **options)
        except httpx.TimeoutException:
            raise CliError(f"timed out waiting for the gateway at {self.url}") from None
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            raise CliError(f"cannot reach the gateway at {self.url}: {reason}") from None
        if response.is_error:
            raise CliError(problem_line(response), status=response.status_code)
        return response

    def json(self, method: str, path: str, **options: Any) -> Any:
        response = self.call(method, path, **options)
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{method} {response.url} answered something other than JSON") from None


def problem_line(response: httpx.Response) -> str:
    """`<detail> (<field>)` from an RFC 9457 problem body; the status line otherwise."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict) or not isinstance(problem.get("detail"), str):
        request = response.request
        return f"{request.method} {request.url} answered HTTP {response.status_code}"
    detail = " ".join(problem["detail"].split())
    field = problem.get("field")
    return f"{detail} ({field})" if field else detail


def _path(template: str, *names: str) -> str:
    return template.format(*(quote(name, safe="") for name in names))


AdminCommand = Callable[[AdminClient, argparse.Namespace], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _admin(command: AdminCommand) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with AdminClient(args.url, args.token) as client:
            return command(client, args)

    return run


def _emit(document: Any, output: str, render: Callable[[Any], str]) -> None:
    print(out.to_json(document) if output == "json" else render(document))


# -- the admin command line -------------------------------------------------------------------


def _base_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _json_text(text: str) -> str:
    try:
        json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--data is not valid JSON: {error}") from None
    return text


@dataclasses.dataclass(frozen=True)
class _Options:
    """The parent parsers every admin command shares."""

    connection: argparse.ArgumentParser
    table_output: argparse.ArgumentParser
    json_output: argparse.ArgumentParser


def _options() -> _Options:
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("gateway connection")
    group.add_argument(
        "--url",
        type=_base_url,
        default=os.environ.get("CE_GATEWAY_URL") or DEFAULT_URL,
        help=f"the gateway's base URL (default: $CE_GATEWAY_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=os.environ.get("CE_GATEWAY_TOKEN") or None,
        help="bearer token sent as Authorization (default: $CE_GATEWAY_TOKEN)",
    )
    outputs = []
    for default in ("table", "json"):
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument(
            "-o",
            "--output",
            choices=("table", "json"),
            default=default,
            help=f"table for people, json for programs (default: {default})",
        )
        outputs.append(parent)
    return _Options(connection, outputs[0], outputs[1])


def _command(
    group: Subcommands,
    name: str,
    summary: str,
    run: AdminCommand,
    *parents: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=summary, description=summary, parents=list(parents))
    parser.set_defaults(run=_admin(run))
    return parser


def _resource(commands: Subcommands, name: str, summary: str) -> Subcommands:
    parser = commands.add_parser(name, help=summary, description=summary)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_admin_commands(commands: Subcommands) -> None:
    options = _options()
    _add_topic_commands(_resource(commands, "topics", "list and change topics"), options)
    _add_subscription_commands(
        _resource(commands, "subscriptions", "list and change subscriptions"), options
    )
    _add_dead_letter_commands(
        _resource(commands, "deadletters", "browse, redrive and purge dead letters"), options
    )
    publish = _command(
        commands, "publish", "publish one CloudEvent (binary mode)", _publish, options.connection
    )
    publish.add_argument("topic", metavar="TOPIC")
    publish.add_argument("--type", required=True, help="the event's type attribute")
    publish.add_argument("--source", required=True, help="the event's source attribute")
    publish.add_argument("--id", help="the event's id (default: a new UUID)")
    publish.add_argument("--subject", help="the event's subject attribute")
    publish.add_argument("--data", type=_json_text, help="the event's data, a JSON document")
    _command(
        commands,
        "reload",
        "make the gateway re-read its configuration file",
        _reload,
        options.connection,
    )


def _apply_file(parser: argparse.ArgumentParser, shape: str, key: str) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        metavar="FILE",
        help=f"YAML or JSON ('-' reads stdin): {shape}, a list of them, or a configuration "
        f"file (its '{key}:' list is applied)",
    )


def _add_topic_commands(group: Subcommands, options: _Options) -> None:
    connection, table = options.connection, options.table_output
    _command(group, "list", "list topics", _topics_list, connection, table)
    get = _command(group, "get", "show one topic", _topics_get, connection, table)
    get.add_argument("name", metavar="NAME")
    apply = _command(
        group, "apply", "create or replace topics from a file", _topics_apply, connection
    )
    _apply_file(apply, "one topic {name, retention}", "topics")
    delete = _command(group, "delete", "delete a topic and its events", _topics_delete, connection)
    delete.add_argument("name", metavar="NAME")


def _add_subscription_commands(group: Subcommands, options: _Options) -> None:
    connection, table = options.connection, options.table_output
    _command(group, "list", "list subscriptions and their counts", _subs_list, connection, table)
    get = _command(
        group, "get", "show one subscription and its delivery counts", _subs_get, connection, table
    )
    get.add_argument("name", metavar="NAME")
    apply = _command(
        group, "apply", "create or replace subscriptions from a file", _subs_apply, connection
    )
    _apply_file(apply, "one subscription in the configuration file's shape", "subscriptions")
    delete = _command(group, "delete", "delete a subscription", _subs_delete, connection)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--force", action="store_true", help="also drop pending deliveries")


def _add_dead_letter_commands(group: Subcommands, options: _Options) -> None:
    connection = options.connection
    listing = _command(
        group,
        "list",
        "list a topic's (dead-letter) events",
        _dl_list,
        connection,
        options.table_output,
    )
    listing.add_argument("topic", metavar="TOPIC")
    _dl_filters(listing)
    listing.add_argument("--limit", type=_positive, help="list at most N events")
    show = _command(
        group,
        "show",
        "show the dead letters with one event id",
        _dl_show,
        connection,
        options.json_output,
    )
    show.add_argument("topic", metavar="TOPIC")
    show.add_argument("id", metavar="ID")
    for name, summary, run in (
        ("redrive", "send dead letters back to their subscriptions", _dl_redrive),
        ("purge", "delete dead letters", _dl_purge),
    ):
        bulk = _command(group, name, summary, run, connection)
        bulk.add_argument("topic", metavar="TOPIC")
        chosen = bulk.add_mutually_exclusive_group(required=True)
        chosen.add_argument(
            "--id",
            dest="ids",
            action="append",
            metavar="ID",
            help="a CloudEvent id; repeat for more (--id A --id B)",
        )
        chosen.add_argument("--all", action="store_true", help="every (matching) dead letter")
        _dl_filters(bulk)


def _dl_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription", help="only dead letters of this subscription")
    parser.add_argument("--reason", choices=REASONS, help="only dead letters with this dlreason")


# -- topics -----------------------------------------------------------------------------------


def _topics_list(client: AdminClient, args: argparse.Namespace) -> int:
    _emit(client.json("GET", "/v1/topics"), args.output, out.topics_table)
    return 0


def _topics_get(client: AdminClient, args: argparse.Namespace) -> int:
    topic = client.json("GET", _path("/v1/topics/{}", args.name))
    _emit(topic, args.output, lambda topic: out.topics_table({"topics": [topic]}))
    return 0


def _topics_apply(client: AdminClient, args: argparse.Namespace) -> int:
    for topic in _resources(args.filename, "topics"):
        _put(client, "topic", _path("/v1/topics/{}", topic["name"]), topic)
    return 0


def _topics_delete(client: AdminClient, args: argparse.Namespace) -> int:
    client.call("DELETE", _path("/v1/topics/{}", args.name))
    print(f"topic/{args.name} deleted")
    return 0


# -- subscriptions ----------------------------------------------------------------------------


def _subs_list(client: AdminClient, args: argparse.Namespace) -> int:
    listed = client.json("GET", "/v1/subscriptions")["subscriptions"]
    document = {"subscriptions": [_with_status(client, spec) for spec in listed]}
    _emit(document, args.output, out.subscriptions_table)
    return 0


def _with_status(client: AdminClient, spec: dict[str, Any]) -> dict[str, Any]:
    """The listing carries no counts: fetch each subscription (one deleted meanwhile keeps
    its listed form)."""
    try:
        found: dict[str, Any] = client.json("GET", _path("/v1/subscriptions/{}", spec["name"]))
    except CliError as error:
        if error.status != 404:
            raise
        return spec
    return found


def _subs_get(client: AdminClient, args: argparse.Namespace) -> int:
    subscription = client.json("GET", _path("/v1/subscriptions/{}", args.name))
    _emit(subscription, args.output, out.details)
    return 0


def _subs_apply(client: AdminClient, args: argparse.Namespace) -> int:
    for spec in _resources(args.filename, "subscriptions"):
        spec.pop("status", None)  # so `get -o json` output can be applied back
        _put(client, "subscription", _path("/v1/subscriptions/{}", spec["name"]), spec)
    return 0


def _subs_delete(client: AdminClient, args: argparse.Namespace) -> int:
    params = {"force": "true"} if args.force else {}
    client.call("DELETE", _path("/v1/subscriptions/{}", args.name), params=params)
    print(f"subscription/{args.name} deleted")
    return 0


# -- apply files ------------------------------------------------------------------------------


def _put(client: AdminClient, kind: str, path: str, document: dict[str, Any]) -> None:
    body = json.dumps(document, default=str).encode()
    try:
        response = client.call(
            "PUT", path, content=body, headers={"content-type": "application/json"}
        )
    except CliError as error:
        raise CliError(f"{kind} {document['name']!r}: {error}") from None
    print(f"{kind}/{document['name']} {'created' if response.status_code == 201 else 'updated'}")


def _resources(filename: str, key: str) -> list[dict[str, Any]]:
    """The resources of an apply file: one mapping, a list, or under `key`, in any number of
    YAML documents. A file that is unreadable or of another shape is a usage error (exit 2)."""
    import yaml

    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
        documents = list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {filename}: {error}", exit_code=2) from None
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise CliError(f"{filename} is not valid YAML or JSON: {reason}", exit_code=2) from None
    items = list(_items(documents, key))
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise CliError(
                f"{filename}: {key}[{index}] is not a mapping with a name; expected "
                f"{key[:-1]} objects, a list of them, or a '{key}:' key",
                exit_code=2,
            )
    if not items:
        raise CliError(f"{filename}: no {key} found", exit_code=2)
    return items


def _items(documents: list[Any], key: str) -> Iterator[Any]:
    """A configuration file's `key` list (none when it has only other sections), a list,
    or one resource, per document."""
    for document in documents:
        if isinstance(document, dict) and "name" not in document and CONFIG_KEYS & set(document):
            document = document.get(key) or []
        if isinstance(document, list):
            yield from document
        elif document is not None:
            yield document


# -- dead letters and events ------------------------------------------------------------------


def _dl_query(args: argparse.Namespace) -> dict[str, str]:
    chosen = {"subscription": args.subscription, "reason": args.reason}
    return {key: value for key, value in chosen.items() if value is not None}


def _pages(
    client: AdminClient, topic: str, query: dict[str, str], limit: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Pages of a topic's events, following `next` until the end or `limit` events."""
    path = _path("/v1/topics/{}/events", topic)
    cursor: str | None = None
    left = limit
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        params = {**query, "limit": str(size), **({"after": cursor} if cursor else {})}
        page = client.json("GET", path, params=params)
        events: list[dict[str, Any]] = page["events"][:size]
        yield events
        left = None if left is None else left - len(events)
        cursor = page["next"]
        if cursor is None:
            return


def _dl_list(client: AdminClient, args: argparse.Namespace) -> int:
    pages = _pages(client, args.topic, _dl_query(args), args.limit)
    document = {"events": [event for page in pages for event in page]}
    _emit(document, args.output, out.events_table)
    return 0


def _dl_show(client: AdminClient, args: argparse.Namespace) -> int:
    pages = _pages(client, args.topic, {"id": args.id})
    document = {"events": [event for page in pages for event in page]}
    if not document["events"]:
        raise CliError(f"no event with id {args.id!r} in topic {args.topic!r}")
    _emit(document, args.output, out.events_details)
    return 0


def _dl_redrive(client: AdminClient, args: argparse.Namespace) -> int:
    result = _bulk(client, args, "redrive", "redriven")
    print(f"redriven {result['redriven']}, skipped {result['skipped']}")
    return 0


def _dl_purge(client: AdminClient, args: argparse.Namespace) -> int:
    result = _bulk(client, args, "purge", "purged")
    print(f"purged {result['purged']}")
    return 0


def _bulk(client: AdminClient, args: argparse.Namespace, verb: str, done: str) -> Any:
    """POST a redrive or purge; with --all, count the matching events first so that progress
    can say "N of M" on stderr."""
    body: dict[str, Any] = {"all": True} if args.all else {"ids": args.ids}
    body.update(_dl_query(args))
    path = _path("/v1/topics/{}/events:" + verb, args.topic)
    if not args.all:
        return client.json("POST", path, json=body, timeout=BULK_TIMEOUT)
    progress = out.Progress(sys.stderr)
    matching = 0
    for page in _pages(client, args.topic, _dl_query(args)):
        matching += len(page)
        progress.update(f"counting: {matching} matching events in {args.topic}")
    progress.update(f"{verb}: {matching} matching events in {args.topic}...")
    result = client.json("POST", path, json=body, timeout=BULK_TIMEOUT)
    progress.done(f"{done} {result[done]} of {matching} matching events in {args.topic}")
    return result


# -- publish and reload -----------------------------------------------------------------------


def _publish(client: AdminClient, args: argparse.Namespace) -> int:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": args.id or str(uuid.uuid4()),
        "ce-type": args.type,
        "ce-source": args.source,
    }
    if args.subject is not None:
        headers["ce-subject"] = args.subject
    content = b""
    if args.data is not None:
        headers["content-type"] = "application/json"
        content = args.data.encode()
    response = client.call(
        "POST", _path("/topics/{}/events", args.topic), headers=headers, content=content
    )
    print(response.text)
    return 0


def _reload(client: AdminClient, args: argparse.Namespace) -> int:
    result = client.json("POST", "/v1/config:reload")
    found = result if isinstance(result, dict) else {}
    counts = (found.get(key, "?") for key in ("topics", "subscriptions", "pruned"))
    print("reloaded: {} topics, {} subscriptions, {} pruned".format(*counts))
    return 0
