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
from typing import Any

import msgspec
import yaml

from gateway.durations import DurationError, parse_duration, parse_size

DEFAULT_TOPIC = "default"
PRETRY_PREFIX = "pretry."  # topics and subscriptions that Pretry configs own (gateway.pretry)
TOPIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # use fullmatch: `$` allows "\n"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key path and the fix."""


class _Raw(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    pass


class RawServer(_Raw, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./data"
    max_body_size: str | int = "1MiB"
    max_event_size: str | int = "256KiB"
    max_extensions: int = 32
    read_timeout: str = "30s"
    keep_alive_timeout: str = "10s"  # also the deadline for a new connection's request head
    graceful_timeout: str = "10s"
    shutdown_delay: str = "0s"
    map_size: str | int = "256MiB"
    max_map_size: str | int = "32GiB"
    fsync: bool = True
    engine: str = "hypercorn"
    admin_port: int | None = None


class RawEgress(_Raw, frozen=True):
    allowed_networks: list[str] = []
    denied_networks: list[str] = []


class RawAuth(_Raw, frozen=True):
    publisher_token_file: str | None = None
    admin_token_file: str | None = None


class RawTopic(_Raw, frozen=True):
    name: str
    retention: str = "24h"


class RawBasicAuth(_Raw, frozen=True):
    username: str
    password_file: str | None = None
    # Inline secret (Pretry configs): stored with the subscription, masked in every view.
    password: str | None = None


class RawHttpDestination(_Raw, frozen=True):
    url: str
    content_mode: str = "binary"
    bearer_token_file: str | None = None
    basic_auth: RawBasicAuth | None = None


class RawSqsDestination(_Raw, frozen=True):
    queue_url: str
    region: str | None = None  # default: the region in an AWS queue URL
    credentials_file: str | None = None  # an AWS shared-credentials file (INI, [default])
    # Inline keys (Pretry configs): stored with the subscription, masked in every view.
    # None of the three: the environment's default chain (variables, profile, IRSA, IMDS).
    access_key_id: str | None = None
    secret_access_key: str | None = None
    endpoint_url: str | None = None  # an SQS-compatible server (ElasticMQ, LocalStack)
    content_mode: str = "structured"


class RawDestination(_Raw, frozen=True):
    http: RawHttpDestination | None = None
    sqs: RawSqsDestination | None = None


class RawRetryPolicy(_Raw, frozen=True):
    minimum_backoff: str = "10s"
    maximum_backoff: str = "600s"
    schedule: list[str] | None = None


class RawSigning(_Raw, frozen=True):
    secret_file: str


class RawSubscription(_Raw, frozen=True):
    name: str
    topic: str
    destination: RawDestination
    filters: list[dict[str, Any]] = []
    ack_deadline: str = "10s"
    retry_policy: RawRetryPolicy = RawRetryPolicy()
    max_delivery_attempts: int | None = None
    permanent_status_codes: list[int] | None = None
    dead_letter_topic: str | None = None
    signing: RawSigning | None = None
    max_concurrency: int = 32
    delivery_delay: str | None = None  # the first attempt waits this long (Pretry's retryHours[0])


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


def duration_at(path: str, text: str) -> float:
    try:
        return parse_duration(text)
    except DurationError as error:
        raise ConfigError(f"{path}: {error}") from None


def size_at(path: str, text: str | int) -> int:
    try:
        size = parse_size(text)
    except DurationError as error:
        raise ConfigError(f"{path}: {error}") from None
    if size <= 0:
        raise ConfigError(f"{path}: {text!r} must be a positive size")
    return size


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
        max_body_size=size_at("server.maxBodySize", raw.max_body_size),
        max_event_size=size_at("server.maxEventSize", raw.max_event_size),
        max_extensions=raw.max_extensions,
        read_timeout=duration_at("server.readTimeout", raw.read_timeout),
        keep_alive_timeout=duration_at("server.keepAliveTimeout", raw.keep_alive_timeout),
        graceful_timeout=duration_at("server.gracefulTimeout", raw.graceful_timeout),
        shutdown_delay=duration_at("server.shutdownDelay", raw.shutdown_delay),
        map_size=size_at("server.mapSize", raw.map_size),
        max_map_size=size_at("server.maxMapSize", raw.max_map_size),
        fsync=raw.fsync,
        engine=raw.engine,
        admin_port=raw.admin_port,
    )


def topic_settings(raw: RawTopic, path: str) -> TopicSettings:
    return TopicSettings(
        name=check_topic_name(f"{path}.name", raw.name),
        retention=duration_at(f"{path}.retention", raw.retention),
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
    return dataclasses.replace(parse_config(data), source=path)
