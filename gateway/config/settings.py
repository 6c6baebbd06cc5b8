"""Configuration: the YAML file of DESIGN "Exact shapes", parsed once at the edge.

The file is decoded into msgspec structs that mirror its camelCase shape (unknown keys are
refused), then turned into frozen values with durations and sizes in plain numbers. Every error
names the key path, e.g. `subscriptions[0].retryPolicy.maximumBackoff`, and the fix.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from gateway.config.durations import DurationError, format_duration, parse_duration, parse_size
from gateway.jsonsafe import MAX_DEPTH

DEFAULT_TOPIC = "default"
PRETRY_PREFIX = "pretry."  # topics and subscriptions that Pretry configs own (gateway.pretry)
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
TOPIC_NAME = re.compile(NAME_PATTERN[1:-1])  # use fullmatch: `$` allows "\n"

# -- Ranges (README "Limits"). Each is defined once here and enforced the same way by the
# admin API, `validate-config` and start: integers and lengths by msgspec as the document is
# converted (so /openapi.json shows them too), durations and sizes by `duration_at`/`size_at`.

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MAX_NAME = 100
MAX_TEXT = 64  # characters of a duration or size string, a content mode, a region
MAX_URL = 2048
MAX_PATH = 4096  # a secret file's path
MAX_LIST = 100  # filters, schedule delays, permanent status codes, networks
MAX_DELIVERY_ATTEMPTS = 10_000
MAX_CONCURRENCY = 1000


@dataclass(frozen=True, slots=True)
class Bounds:
    """A documented range of a duration (seconds) or size (bytes), `low` and `high` included
    unless `above` says the value must be more than `low`."""

    low: float
    high: float
    above: bool = False

    def holds(self, value: float) -> bool:
        return (value > self.low if self.above else value >= self.low) and value <= self.high

    def describe(self) -> str:
        """The range of a duration, as a message says it ("at least 1s and at most 3650d")."""
        low = "more than" if self.above else "at least"
        return f"{low} {_seconds(self.low)} and at most {_seconds(self.high)}"


def _seconds(value: float) -> str:
    if value >= 2 * DAY and value % DAY == 0:
        return f"{int(value // DAY)}d"
    return format_duration(value)


RETENTION = Bounds(1.0, 3650 * DAY)  # dedup needs a window; ten years is the longest kept
ACK_DEADLINE = Bounds(0.0, 600.0, above=True)
DELAY = Bounds(0.0, 365 * DAY)  # backoffs, schedule delays, deliveryDelay
TIMEOUT = Bounds(0.0, HOUR, above=True)  # server.readTimeout, server.keepAliveTimeout
GRACE = Bounds(0.0, HOUR)  # server.gracefulTimeout, server.shutdownDelay
BODY_SIZE = Bounds(1, GIB)  # server.maxBodySize, server.maxEventSize
MAP_SIZE = Bounds(MIB, 16 * TIB)  # server.mapSize, server.maxMapSize

Name = Annotated[
    str,
    msgspec.Meta(
        # NAME_PATTERN bounds the length too; it is checked (with fullmatch) where a topic
        # or subscription is built, so the message says how to fix the name.
        extra_json_schema={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_NAME},
    ),
]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Duration = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_TEXT,
        description="a duration: 250ms, 10s, 1.5m, 24h, 2d or ISO 8601 (PT10S)",
    ),
]
Size = Annotated[
    str | Annotated[int, msgspec.Meta(ge=BODY_SIZE.low, le=MAP_SIZE.high)],
    msgspec.Meta(description="a size in bytes, or a string: 512, 64KiB, 1MiB, 10MB"),
]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]
FilePath = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PATH)]
Secret = Annotated[str, msgspec.Meta(max_length=MAX_PATH)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Network = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
StatusCode = Annotated[int, msgspec.Meta(ge=400, le=499)]  # see `_permanent_codes`


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key path and the fix."""


class _Raw(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    pass


class RawServer(_Raw, frozen=True):
    host: Annotated[str, msgspec.Meta(max_length=255)] = "127.0.0.1"
    port: Port = 8080
    data_dir: FilePath = "./data"
    max_body_size: Size = "1MiB"
    max_event_size: Size = "256KiB"
    max_extensions: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 32
    read_timeout: Duration = "30s"
    keep_alive_timeout: Duration = "10s"  # also the deadline for a new connection's request head
    graceful_timeout: Duration = "10s"
    shutdown_delay: Duration = "0s"
    map_size: Size = "256MiB"
    max_map_size: Size = "32GiB"
    fsync: bool = True
    engine: Text = "hypercorn"
    admin_port: Port | None = None


class RawEgress(_Raw, frozen=True):
    allowed_networks: Annotated[list[Network], msgspec.Meta(max_length=MAX_LIST)] = []
    denied_networks: Annotated[list[Network], msgspec.Meta(max_length=MAX_LIST)] = []


class RawAuth(_Raw, frozen=True):
    publisher_token_file: FilePath | None = None
    admin_token_file: FilePath | None = None


class RawTopic(_Raw, frozen=True):
    name: Name
    retention: Duration = "24h"


class RawBasicAuth(_Raw, frozen=True):
    username: Annotated[str, msgspec.Meta(max_length=MAX_NAME * 2)]
    password_file: FilePath | None = None
    # Inline secret (Pretry configs): stored with the subscription, masked in every view.
    password: Secret | None = None


class RawHttpDestination(_Raw, frozen=True):
    url: Url
    content_mode: Text = "binary"
    bearer_token_file: FilePath | None = None
    basic_auth: RawBasicAuth | None = None


class RawSqsDestination(_Raw, frozen=True):
    queue_url: Url
    region: Text | None = None  # default: the region in an AWS queue URL
    credentials_file: FilePath | None = None  # an AWS shared-credentials file (INI, [default])
    # Inline keys (Pretry configs): stored with the subscription, masked in every view.
    # None of the three: the environment's default chain (variables, profile, IRSA, IMDS).
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    endpoint_url: Url | None = None  # an SQS-compatible server (ElasticMQ, LocalStack)
    content_mode: Text = "structured"


class RawDestination(_Raw, frozen=True):
    http: RawHttpDestination | None = None
    sqs: RawSqsDestination | None = None


class RawRetryPolicy(_Raw, frozen=True):
    minimum_backoff: Duration = "10s"
    maximum_backoff: Duration = "600s"
    schedule: Annotated[list[Duration], msgspec.Meta(max_length=MAX_LIST)] | None = None


class RawSigning(_Raw, frozen=True):
    secret_file: FilePath


class RawSubscription(_Raw, frozen=True):
    name: Name
    topic: Name
    destination: RawDestination
    filters: Annotated[list[dict[str, Any]], msgspec.Meta(max_length=MAX_LIST)] = []
    ack_deadline: Duration = "10s"
    retry_policy: RawRetryPolicy = RawRetryPolicy()
    max_delivery_attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_DELIVERY_ATTEMPTS)] | None = (
        None
    )
    permanent_status_codes: (
        Annotated[list[StatusCode], msgspec.Meta(max_length=MAX_LIST)] | None
    ) = None
    dead_letter_topic: Name | None = None
    signing: RawSigning | None = None
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)] = 32
    # The first attempt waits this long (Pretry's retryHours[0]).
    delivery_delay: Duration | None = None


class RawConfig(_Raw, frozen=True):
    server: RawServer = RawServer()
    egress: RawEgress = RawEgress()
    auth: RawAuth = RawAuth()
    topics: list[RawTopic] = []
    subscriptions: list[RawSubscription] = []
    prune: bool = False


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    port: int
    data_dir: Path
    max_body_size: int
    max_event_size: int
    max_extensions: int
    read_timeout: float
    keep_alive_timeout: float
    graceful_timeout: float
    shutdown_delay: float
    map_size: int
    max_map_size: int
    fsync: bool
    engine: str
    admin_port: int | None


@dataclass(frozen=True, slots=True)
class TopicSettings:
    name: str
    retention: float


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings
    egress: RawEgress
    auth: RawAuth
    topics: tuple[TopicSettings, ...]
    subscriptions: tuple[RawSubscription, ...]
    prune: bool
    # The file these came from (what a reload reads again); not part of what they say.
    source: Path | None = dataclasses.field(default=None, compare=False)
    # ServerSettings fields set on the command line (`serve --port`), over the file's values.
    overridden: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)


def duration_at(path: str, text: str, bounds: Bounds) -> float:
    """Seconds in `text`, within `bounds`; raises ConfigError naming `path` and the range."""
    try:
        seconds = parse_duration(text)
    except DurationError as error:
        raise ConfigError(f"{path}: {error}") from None
    if not bounds.holds(seconds):
        raise ConfigError(f"{path}: {text!r} is out of range; use {bounds.describe()}")
    return seconds


def size_at(path: str, text: str | int, bounds: Bounds) -> int:
    """Bytes in `text`, within `bounds`; raises ConfigError naming `path` and the range."""
    try:
        size = parse_size(text)
    except DurationError as error:
        raise ConfigError(f"{path}: {error}") from None
    if not bounds.holds(size):
        raise ConfigError(
            f"{path}: {text!r} is out of range; use {_bytes(bounds.low)} to {_bytes(bounds.high)}"
        )
    return size


def _bytes(size: float) -> str:
    for unit, factor in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= factor and size % factor == 0:
            return f"{int(size // factor)}{unit}"
    return f"{int(size)} bytes"


def check_topic_name(path: str, name: str) -> str:
    if not TOPIC_NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: {name!r} is not a topic name; use 1-100 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def _server(raw: RawServer) -> ServerSettings:
    if raw.engine not in ("hypercorn", "uvicorn"):
        raise ConfigError(
            f"server.engine: {raw.engine!r} is not a server; use hypercorn or uvicorn"
        )
    return ServerSettings(
        host=raw.host,
        port=raw.port,
        data_dir=Path(raw.data_dir),
        max_body_size=size_at("server.maxBodySize", raw.max_body_size, BODY_SIZE),
        max_event_size=size_at("server.maxEventSize", raw.max_event_size, BODY_SIZE),
        max_extensions=raw.max_extensions,
        read_timeout=duration_at("server.readTimeout", raw.read_timeout, TIMEOUT),
        keep_alive_timeout=duration_at("server.keepAliveTimeout", raw.keep_alive_timeout, TIMEOUT),
        graceful_timeout=duration_at("server.gracefulTimeout", raw.graceful_timeout, GRACE),
        shutdown_delay=duration_at("server.shutdownDelay", raw.shutdown_delay, GRACE),
        map_size=size_at("server.mapSize", raw.map_size, MAP_SIZE),
        max_map_size=size_at("server.maxMapSize", raw.max_map_size, MAP_SIZE),
        fsync=raw.fsync,
        engine=raw.engine,
        admin_port=raw.admin_port,
    )


def topic_settings(raw: RawTopic, path: str) -> TopicSettings:
    return TopicSettings(
        name=check_topic_name(f"{path}.name", raw.name),
        retention=duration_at(f"{path}.retention", raw.retention, RETENTION),
    )


def _topics(raws: list[RawTopic]) -> tuple[TopicSettings, ...]:
    topics = [topic_settings(raw, f"topics[{index}]") for index, raw in enumerate(raws)]
    names = [topic.name for topic in topics]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(f"topics[{index}].name: topic {name!r} is declared twice")
    return tuple(topics)


def msgspec_path(error: msgspec.ValidationError) -> str:
    """Rewrite msgspec's `... - at `$.a[0].b`` into our `a[0].b: ...` form."""
    message = str(error)
    match = re.match(r"^(.*) - at `\$\.?(.*)`$", message)
    if not match:
        return f"(top level): {message}"
    text, path = match.groups()
    return f"{path or '(top level)'}: {text}"


def msgspec_field(error: msgspec.ValidationError) -> str:
    """The full key path an error is about, e.g. `retryPolicy.maximumBackof` for an unknown
    key, `topic` for a missing one (for a problem body's `field`)."""
    path = msgspec_path(error).split(":", 1)[0]
    parent = "" if path == "(top level)" else path
    key = re.search(r"(?:unknown|missing required) field `([^`]+)`", str(error))
    if key:
        return f"{parent}.{key.group(1)}" if parent else key.group(1)
    return parent or "(top level)"


def parse_config(data: Any) -> Settings:
    """Validate decoded YAML/JSON into Settings; raises ConfigError naming the key path."""
    if data is None:
        data = {}
    try:
        raw = msgspec.convert(data, RawConfig)
    except msgspec.ValidationError as error:
        raise ConfigError(msgspec_path(error)) from None
    return Settings(
        server=_server(raw.server),
        egress=raw.egress,
        auth=raw.auth,
        topics=_topics(raw.topics),
        subscriptions=tuple(raw.subscriptions),
        prune=raw.prune,
    )


def load_config(path: Path | None) -> Settings:
    """Read and validate the YAML file at `path` (no file: every default)."""
    if path is None:
        return parse_config({})
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{path} nests deeper than {MAX_DEPTH} levels") from None
    if _too_deep(data):
        raise ConfigError(f"{path} nests deeper than {MAX_DEPTH} levels")
    return dataclasses.replace(parse_config(data), source=path)


def _too_deep(data: Any) -> bool:
    """Whether `data` nests more than MAX_DEPTH levels of mappings and lists. Walked level by
    level, each node once per level: YAML aliases share nodes (and can make cycles)."""
    level = [data] if isinstance(data, dict | list) else []
    for _ in range(MAX_DEPTH):
        if not level:
            return False
        children = {
            id(child): child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        }
        level = list(children.values())
    return bool(level)
