"""`ce-gateway` admin commands: topics, subscriptions, dead letters, publish and reload, over
the admin API (DESIGN "CLI").

Commands talk to the API through `AdminClient`. An API problem or a connection failure becomes a
`CliError`, printed as one line on stderr with exit code 1; a bad `apply` file exits 2, as
argparse does for usage errors. httpx is imported only when a command runs, so `--help` stays
quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote

from gateway.cli import output as out

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
        if args.output is None:
            args.output = args.default_output
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


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """`--url`, `--token` and `--output`, defined once: on the top-level parser (`top`, with
    their defaults) and on every admin command (defaults suppressed, so that an option given
    before the command is not overwritten by the command's default; one given after wins)."""
    url_default = (os.environ.get("CE_GATEWAY_URL") or DEFAULT_URL) if top else argparse.SUPPRESS
    token_default = (os.environ.get("CE_GATEWAY_TOKEN") or None) if top else argparse.SUPPRESS
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--url",
        type=_base_url,
        default=url_default,
        help=f"the gateway's base URL (default: $CE_GATEWAY_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=token_default,
        help="bearer token sent as Authorization (default: $CE_GATEWAY_TOKEN)",
    )
    group.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=None if top else argparse.SUPPRESS,
        help="table for people, json for programs (default: json for show, else table)",
    )


def _global_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, top=False)
    return parent


def _command(
    group: Subcommands, name: str, summary: str, run: AdminCommand, output: str = "table"
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=summary, description=summary, parents=[_global_options()])
    parser.set_defaults(run=_admin(run), default_output=output)
    return parser


def _resource(commands: Subcommands, name: str, summary: str) -> Subcommands:
    parser = commands.add_parser(
        name, help=summary, description=summary, parents=[_global_options()]
    )
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_admin_commands(commands: Subcommands) -> None:
    _add_topic_commands(_resource(commands, "topics", "list and change topics"))
    _add_subscription_commands(
        _resource(commands, "subscriptions", "list and change subscriptions")
    )
    _add_dead_letter_commands(
        _resource(commands, "deadletters", "browse, redrive and purge dead letters")
    )
    publish = _command(commands, "publish", "publish one CloudEvent (binary mode)", _publish)
    publish.add_argument("topic", metavar="TOPIC")
    publish.add_argument("--type", required=True, help="the event's type attribute")
    publish.add_argument("--source", required=True, help="the event's source attribute")
    publish.add_argument("--id", help="the event's id (default: a new UUID)")
    publish.add_argument("--subject", help="the event's subject attribute")
    publish.add_argument("--data", type=_json_text, help="the event's data, a JSON document")
    _command(commands, "reload", "make the gateway re-read its configuration file", _reload)


def _apply_file(parser: argparse.ArgumentParser, shape: str, key: str) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        metavar="FILE",
        help=f"YAML or JSON ('-' reads stdin): {shape}, a list of them, or a configuration "
        f"file (its '{key}:' list is applied)",
    )


def _confirm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask for confirmation (needed without a terminal)",
    )


def _add_topic_commands(group: Subcommands) -> None:
    _command(group, "list", "list topics", _topics_list)
    get = _command(group, "get", "show one topic", _topics_get)
    get.add_argument("name", metavar="NAME")
    apply = _command(group, "apply", "create or replace topics from a file", _topics_apply)
    _apply_file(apply, "one topic {name, retention}", "topics")
    delete = _command(group, "delete", "delete a topic and its events", _topics_delete)
    delete.add_argument("name", metavar="NAME")
    _confirm_option(delete)


def _add_subscription_commands(group: Subcommands) -> None:
    _command(group, "list", "list subscriptions and their counts", _subs_list)
    get = _command(group, "get", "show one subscription and its delivery counts", _subs_get)
    get.add_argument("name", metavar="NAME")
    apply = _command(
        group,
        "apply",
        "create or replace subscriptions from a file (every one is checked before any is applied)",
        _subs_apply,
    )
    _apply_file(apply, "one subscription in the configuration file's shape", "subscriptions")
    delete = _command(group, "delete", "delete a subscription", _subs_delete)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--force", action="store_true", help="also drop pending deliveries")


def _add_dead_letter_commands(group: Subcommands) -> None:
    listing = _command(group, "list", "list a topic's (dead-letter) events", _dl_list)
    listing.add_argument("topic", metavar="TOPIC")
    _dl_filters(listing)
    listing.add_argument("--limit", type=_positive, help="list at most N events")
    show = _command(group, "show", "show the dead letters with one event id", _dl_show, "json")
    show.add_argument("topic", metavar="TOPIC")
    show.add_argument("id", metavar="ID")
    for name, summary, run in (
        ("redrive", "send dead letters back to their subscriptions", _dl_redrive),
        ("purge", "delete dead letters", _dl_purge),
    ):
        bulk = _command(group, name, summary, run)
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
        if name == "purge":
            _confirm_option(bulk)


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
    client.call("GET", _path("/v1/topics/{}", args.name))  # a missing topic: say so, ask nothing
    _confirm(args, f"delete topic {args.name!r} and every event it holds")
    client.call("DELETE", _path("/v1/topics/{}", args.name))
    print(f"topic/{args.name} deleted")
    return 0


def _confirm(args: argparse.Namespace, action: str) -> None:
    """Ask on the terminal before a destructive command; without a terminal, refuse unless
    --yes was given."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"refusing to {action} without confirmation: pass --yes")
    sys.stderr.write(f"{action[0].upper()}{action[1:]}? [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CliError("not confirmed; nothing was changed")


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
    """Every subscription is checked by the gateway (a dry run) before any is applied, so a
    bad one in a list applies none of them."""
    specs = _resources(args.filename, "subscriptions")
    for index, spec in enumerate(specs):
        spec.pop("status", None)  # so `get -o json` output can be applied back
        where = f"subscription {spec['name']!r} (subscriptions[{index}]): nothing was applied"
        _put(client, "subscription", _subscription_path(spec), spec, where, dry_run=True)
    for spec in specs:
        _put(client, "subscription", _subscription_path(spec), spec)
    return 0


def _subscription_path(spec: dict[str, Any]) -> str:
    return _path("/v1/subscriptions/{}", spec["name"])


def _subs_delete(client: AdminClient, args: argparse.Namespace) -> int:
    params = {"force": "true"} if args.force else {}
    client.call("DELETE", _path("/v1/subscriptions/{}", args.name), params=params)
    print(f"subscription/{args.name} deleted")
    return 0


# -- apply files ------------------------------------------------------------------------------


def _put(
    client: AdminClient,
    kind: str,
    path: str,
    document: dict[str, Any],
    where: str | None = None,
    dry_run: bool = False,
) -> None:
    """PUT one resource and print `kind/name created|updated`; an error is prefixed with
    `where` (default: `kind 'name'`). A dry run only checks, and prints nothing."""
    body = json.dumps(document, default=str).encode()
    try:
        response = client.call(
            "PUT",
            path,
            content=body,
            headers={"content-type": "application/json"},
            params={"dryRun": "true"} if dry_run else {},
        )
    except CliError as error:
        prefix = where or f"{kind} {document['name']!r}"
        raise CliError(f"{prefix}: {error}") from None
    if not dry_run:
        done = "created" if response.status_code == 201 else "updated"
        print(f"{kind}/{document['name']} {done}")


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
    return _report_missing(client, args, result, result["redriven"] + result["skipped"])


def _dl_purge(client: AdminClient, args: argparse.Namespace) -> int:
    result = _bulk(client, args, "purge", "purged")
    print(f"purged {result['purged']}")
    return _report_missing(client, args, result, result["purged"])


def _report_missing(
    client: AdminClient, args: argparse.Namespace, result: dict[str, Any], matched: int
) -> int:
    """Exit 1, saying so on stderr, when an asked-for id matched no dead letter, or when
    nothing matched a --subscription that does not exist."""
    problems = []
    not_found = result.get("notFound") or []
    if not_found:
        problems.append(
            f"no dead letter in {args.topic!r} with id {', '.join(map(repr, not_found))}"
        )
    if (
        args.subscription is not None
        and matched == 0
        and not _subscription_exists(client, args.subscription)
    ):
        problems.append(
            f"subscription {args.subscription!r} does not exist and no dead letter in "
            f"{args.topic!r} came from it"
        )
    for problem in problems:
        print(f"ce-gateway: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _subscription_exists(client: AdminClient, name: str) -> bool:
    try:
        client.call("GET", _path("/v1/subscriptions/{}", name))
    except CliError as error:
        if error.status != 404:
            raise
        return False
    return True


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
    if verb == "purge" and matching:
        _confirm(args, f"purge {matching} matching dead letters from {args.topic!r}")
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
    answer = client.json(
        "POST", _path("/topics/{}/events", args.topic), headers=headers, content=content
    )
    found = answer if isinstance(answer, dict) else {}
    print(json.dumps({**found, "id": headers["ce-id"]}, separators=(",", ":")))  # the id used
    return 0


def _reload(client: AdminClient, args: argparse.Namespace) -> int:
    """Exit 1 when the file changed something a reload cannot apply (it needs a restart)."""
    result = client.json("POST", "/v1/config:reload")
    found = result if isinstance(result, dict) else {}
    not_applied = [change for change in found.get("notApplied") or [] if isinstance(change, dict)]
    if args.output == "json":
        print(out.to_json(found))
    else:
        counts = (found.get(key, "?") for key in ("topics", "subscriptions", "pruned"))
        print("reloaded: {} topics, {} subscriptions, {} pruned".format(*counts))
    for change in not_applied:
        print(
            f"ce-gateway: not applied: {change.get('key')}: {change.get('reason')}",
            file=sys.stderr,
        )
    return 1 if not_applied else 0
