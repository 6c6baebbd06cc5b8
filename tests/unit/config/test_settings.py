"""Table tests for the configuration file (gateway/config/settings.py): defaults, DESIGN's
example, and errors that name the key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gateway.config.settings import ConfigError, Settings, TopicSettings, load_config, parse_config
from gateway.resources.subscriptions import validate_settings

REPO = Path(__file__).resolve().parents[3]
DAY = 86400.0

# The YAML block of DESIGN.md "Exact shapes / Configuration file", verbatim.
DESIGN_EXAMPLE = """\
server: {host: 127.0.0.1, port: 8080, dataDir: ./data, maxBodySize: 1MiB}
egress: {allowedNetworks: ["10.0.0.0/8"], deniedNetworks: []}   # loopback etc. denied unless listed
auth: {publisherTokenFile: /secrets/publisher, adminTokenFile: /secrets/admin}   # optional
topics:
  - name: orders
    retention: 24h
  - name: orders-dead
subscriptions:
  - name: orders-to-billing
    topic: orders
    filters:                       # Knative subscriptions-API shape; a list means "all"
      - exact: {type: com.example.order.created}
      - any: [{prefix: {source: /shop/}}, {suffix: {subject: .pdf}}]
    destination:
      http: {url: "https://billing.internal/events", contentMode: binary}
      # or sqs: {queueUrl: ..., region: eu-west-1, credentialsFile: /secrets/aws}
    ackDeadline: 10s
    retryPolicy: {minimumBackoff: 10s, maximumBackoff: 600s}   # or {schedule: [1h, 2h, 3h]}
    maxDeliveryAttempts: 5
    permanentStatusCodes: [400, 401, 403, 405, 410, 413, 415, 422]   # default: DESIGN's classes
    deadLetterTopic: orders-dead
    signing: {secretFile: /secrets/orders-signing}   # optional, Standard Webhooks (whsec_...)
"""

SUBSCRIPTION: dict[str, Any] = {
    "name": "orders-to-billing",
    "topic": "orders",
    "destination": {"http": {"url": "https://billing.internal/events"}},
}
TOPICS: list[dict[str, Any]] = [{"name": "orders"}, {"name": "orders-dead"}]


def with_subscription(**changes: Any) -> dict[str, Any]:
    """A config with two topics and one subscription; `changes` override subscription keys."""
    return {"topics": TOPICS, "subscriptions": [{**copy.deepcopy(SUBSCRIPTION), **changes}]}


def config_error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def write(tmp_path: Path, text: str | bytes, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def attribute(settings: Settings, dotted: str) -> Any:
    value: Any = settings
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        pytest.param("server.host", "127.0.0.1", id="host"),
        pytest.param("server.port", 8080, id="port"),
        pytest.param("server.data_dir", Path("./data"), id="data-dir"),
        pytest.param("server.max_body_size", 1024 * 1024, id="max-body-size-1MiB"),
        pytest.param("server.read_timeout", 30.0, id="read-timeout-30s"),
        pytest.param("server.keep_alive_timeout", 10.0, id="keep-alive-10s"),
        pytest.param("server.graceful_timeout", 10.0, id="graceful-10s"),
        pytest.param("server.map_size", 256 * 1024**2, id="map-size-256MiB"),
        pytest.param("server.max_map_size", 32 * 1024**3, id="max-map-size-32GiB"),
        pytest.param("server.fsync", True, id="fsync-on"),
        pytest.param("server.engine", "hypercorn", id="engine-hypercorn"),
        pytest.param("egress.allowed_networks", [], id="no-allowed-networks"),
        pytest.param("egress.denied_networks", [], id="no-denied-networks"),
        pytest.param("auth.publisher_token_file", None, id="no-publisher-auth"),
        pytest.param("auth.admin_token_file", None, id="no-admin-auth"),
        pytest.param("topics", (), id="no-topics"),
        pytest.param("subscriptions", (), id="no-subscriptions"),
        pytest.param("prune", False, id="no-prune"),
    ],
)
def test_empty_config_gives_every_default(dotted: str, expected: Any) -> None:
    value = attribute(parse_config({}), dotted)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "load",
    [
        pytest.param(lambda tmp: parse_config(None), id="parse-none"),
        pytest.param(lambda tmp: load_config(None), id="no-file"),
        pytest.param(lambda tmp: load_config(write(tmp, "")), id="empty-file"),
        pytest.param(lambda tmp: load_config(write(tmp, "# nothing\n")), id="comment-only-file"),
        pytest.param(lambda tmp: load_config(write(tmp, "server: {}\n")), id="empty-server"),
    ],
)
def test_every_empty_form_gives_the_defaults(load: Any, tmp_path: Path) -> None:
    assert load(tmp_path) == parse_config({})


def test_default_topic_retention_is_24h() -> None:
    settings = parse_config({"topics": [{"name": "orders"}]})
    assert settings.topics == (TopicSettings("orders", DAY),)


# --- the full examples -------------------------------------------------------------------------


def test_design_example_parses(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, DESIGN_EXAMPLE))

    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.server.data_dir == Path("data")
    assert settings.server.max_body_size == 1048576
    assert settings.egress.allowed_networks == ["10.0.0.0/8"]
    assert settings.egress.denied_networks == []
    assert settings.auth.publisher_token_file == "/secrets/publisher"
    assert settings.auth.admin_token_file == "/secrets/admin"
    assert settings.topics == (TopicSettings("orders", DAY), TopicSettings("orders-dead", DAY))

    (subscription,) = settings.subscriptions
    assert subscription.name == "orders-to-billing"
    assert subscription.topic == "orders"
    assert subscription.filters == [
        {"exact": {"type": "com.example.order.created"}},
        {"any": [{"prefix": {"source": "/shop/"}}, {"suffix": {"subject": ".pdf"}}]},
    ]
    assert subscription.destination.sqs is None
    assert subscription.destination.http is not None
    assert subscription.destination.http.url == "https://billing.internal/events"
    assert subscription.destination.http.content_mode == "binary"
    assert subscription.ack_deadline == "10s"
    assert subscription.retry_policy.minimum_backoff == "10s"
    assert subscription.retry_policy.maximum_backoff == "600s"
    assert subscription.retry_policy.schedule is None
    assert subscription.max_delivery_attempts == 5
    assert subscription.permanent_status_codes == [400, 401, 403, 405, 410, 413, 415, 422]
    assert subscription.dead_letter_topic == "orders-dead"
    assert subscription.signing is not None
    assert subscription.signing.secret_file == "/secrets/orders-signing"


def test_design_example_alternatives_parse() -> None:
    settings = parse_config(
        with_subscription(
            destination={
                "sqs": {
                    "queueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q",
                    "region": "eu-west-1",
                    "credentialsFile": "/secrets/aws",
                }
            },
            retryPolicy={"schedule": ["1h", "2h", "3h"]},
        )
    )
    (subscription,) = settings.subscriptions
    assert subscription.destination.http is None
    assert subscription.destination.sqs is not None
    assert subscription.destination.sqs.queue_url == "https://sqs.eu-west-1.amazonaws.com/1/q"
    assert subscription.destination.sqs.region == "eu-west-1"
    assert subscription.destination.sqs.credentials_file == "/secrets/aws"
    assert subscription.retry_policy.schedule == ["1h", "2h", "3h"]


def test_repo_example_config_parses() -> None:
    settings = load_config(REPO / "config" / "example.yaml")
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.server.data_dir == Path("data")
    assert settings.server.max_body_size == 1048576
    assert settings.topics == (
        TopicSettings("orders", DAY),
        TopicSettings("orders-dead", 7 * DAY),
    )


@pytest.mark.parametrize(
    ("server", "dotted", "expected"),
    [
        pytest.param({"maxBodySize": 512}, "max_body_size", 512, id="size-as-int"),
        pytest.param({"maxBodySize": "64KiB"}, "max_body_size", 65536, id="size-kibibytes"),
        pytest.param({"maxBodySize": "10MB"}, "max_body_size", 10_000_000, id="size-megabytes"),
        pytest.param({"readTimeout": "250ms"}, "read_timeout", 0.25, id="read-timeout-ms"),
        pytest.param({"readTimeout": "PT1M"}, "read_timeout", 60.0, id="read-timeout-iso"),
        pytest.param({"fsync": False}, "fsync", False, id="fsync-off"),
        pytest.param({"engine": "uvicorn"}, "engine", "uvicorn", id="engine-uvicorn"),
        pytest.param({"engine": "hypercorn"}, "engine", "hypercorn", id="engine-hypercorn"),
        pytest.param({"dataDir": "/var/lib/ceg"}, "data_dir", Path("/var/lib/ceg"), id="data-dir"),
        pytest.param({"port": 9000}, "port", 9000, id="port"),
    ],
)
def test_server_values_are_converted(server: dict[str, Any], dotted: str, expected: Any) -> None:
    assert getattr(parse_config({"server": server}).server, dotted) == expected


# --- errors name the key path ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "key"),
    [
        pytest.param({"server": {"bogus": 1}}, "server", "bogus", id="server"),
        pytest.param({"server": {"max_body_size": "1MiB"}}, "server", "max_body_size", id="snake"),
        pytest.param({"egress": {"allowedNetwork": []}}, "egress", "allowedNetwork", id="egress"),
        pytest.param({"auth": {"tokenFile": "/x"}}, "auth", "tokenFile", id="auth"),
        pytest.param(
            {"topics": [{"name": "a", "retension": "1h"}]}, "topics[0]", "retension", id="topic"
        ),
        pytest.param(
            {"topics": [{"name": "a"}, {"name": "b", "ttl": "1h"}]},
            "topics[1]",
            "ttl",
            id="second-topic",
        ),
        pytest.param(
            with_subscription(ackDeadLine="1s"), "subscriptions[0]", "ackDeadLine", id="sub"
        ),
        pytest.param(
            with_subscription(retryPolicy={"maximumBackof": "1s"}),
            "subscriptions[0].retryPolicy",
            "maximumBackof",
            id="retry-policy",
        ),
        pytest.param(
            with_subscription(destination={"kafka": {}}),
            "subscriptions[0].destination",
            "kafka",
            id="destination",
        ),
        pytest.param(
            with_subscription(destination={"http": {"url": "https://x", "method": "PUT"}}),
            "subscriptions[0].destination.http",
            "method",
            id="http-destination",
        ),
        pytest.param(
            with_subscription(destination={"sqs": {"queueUrl": "q", "queue": "q"}}),
            "subscriptions[0].destination.sqs",
            "queue",
            id="sqs-destination",
        ),
        pytest.param(
            with_subscription(signing={"secretFile": "/s", "secret": "whsec_x"}),
            "subscriptions[0].signing",
            "secret",
            id="signing",
        ),
    ],
)
def test_unknown_key_is_refused_naming_its_path(data: dict[str, Any], path: str, key: str) -> None:
    assert config_error(data) == f"{path}: Object contains unknown field `{key}`"


def test_unknown_top_level_key_is_refused() -> None:
    assert "unknown field `subscription`" in config_error({"subscription": []})


@pytest.mark.parametrize(
    ("data", "path", "value"),
    [
        pytest.param(
            {"topics": [{"name": "a", "retention": "9x"}]},
            "topics[0].retention",
            "9x",
            id="topic-unknown-unit",
        ),
        pytest.param(
            {"topics": [{"name": "a"}, {"name": "b", "retention": "24"}]},
            "topics[1].retention",
            "24",
            id="second-topic-no-unit",
        ),
        pytest.param({"server": {"readTimeout": "30"}}, "server.readTimeout", "30", id="read"),
        pytest.param(
            {"server": {"keepAliveTimeout": "1 minute"}},
            "server.keepAliveTimeout",
            "1 minute",
            id="keep-alive",
        ),
        pytest.param(
            {"server": {"gracefulTimeout": "-1s"}}, "server.gracefulTimeout", "-1s", id="graceful"
        ),
    ],
)
def test_bad_duration_names_its_path(data: dict[str, Any], path: str, value: str) -> None:
    message = config_error(data)
    assert message.startswith(f"{path}: {value!r} is not a duration; use forms like")


@pytest.mark.parametrize(
    ("server", "path", "value"),
    [
        pytest.param({"maxBodySize": "1XB"}, "server.maxBodySize", "1XB", id="max-body-size"),
        pytest.param({"mapSize": "lots"}, "server.mapSize", "lots", id="map-size"),
        pytest.param({"maxMapSize": "1 TiB"}, "server.maxMapSize", "1 TiB", id="max-map-size"),
    ],
)
def test_bad_size_names_its_path(server: dict[str, Any], path: str, value: str) -> None:
    message = config_error({"server": server})
    assert message.startswith(f"{path}: {value!r} is not a size; use forms like")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"server": {"port": "8080"}}, "server.port: Expected `int`, got `str`", id="port"
        ),
        pytest.param(
            {"server": {"fsync": "yes"}}, "server.fsync: Expected `bool`, got `str`", id="fsync"
        ),
        pytest.param({"server": {"host": 1}}, "server.host: Expected `str`, got `int`", id="host"),
        pytest.param(
            {"server": {"readTimeout": 30}},
            "server.readTimeout: Expected `str`, got `int`",
            id="duration-as-number",
        ),
        pytest.param(
            {"server": {"maxBodySize": True}},
            "server.maxBodySize: Expected `int | str`, got `bool`",
            id="size-as-bool",
        ),
        pytest.param({"server": []}, "server: Expected `object`, got `array`", id="server-list"),
        pytest.param({"topics": "orders"}, "topics: Expected `array`, got `str`", id="topics-str"),
        pytest.param(
            {"topics": [{"name": "a", "retention": 24}]},
            "topics[0].retention: Expected `str`, got `int`",
            id="retention-as-number",
        ),
        pytest.param(
            {"topics": [{"retention": "1h"}]},
            "topics[0]: Object missing required field `name`",
            id="topic-without-name",
        ),
        pytest.param(
            {"egress": {"allowedNetworks": "10.0.0.0/8"}},
            "egress.allowedNetworks: Expected `array`, got `str`",
            id="networks-not-list",
        ),
        pytest.param(
            with_subscription(maxDeliveryAttempts="5"),
            "subscriptions[0].maxDeliveryAttempts: Expected `int | null`, got `str`",
            id="attempts-as-string",
        ),
        pytest.param(
            with_subscription(permanentStatusCodes=["400"]),
            "subscriptions[0].permanentStatusCodes[0]: Expected `int`, got `str`",
            id="status-code-as-string",
        ),
        pytest.param(
            {"subscriptions": [{"name": "s", "topic": "orders"}]},
            "subscriptions[0]: Object missing required field `destination`",
            id="subscription-without-destination",
        ),
        pytest.param(
            with_subscription(destination={"http": {}}),
            "subscriptions[0].destination.http: Object missing required field `url`",
            id="http-without-url",
        ),
        pytest.param({"prune": "yes"}, "prune: Expected `bool`, got `str`", id="prune"),
    ],
)
def test_wrong_type_names_its_path(data: dict[str, Any], expected: str) -> None:
    assert config_error(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([{"server": {}}], id="list"),
        pytest.param("server", id="string"),
        pytest.param(8080, id="number"),
    ],
)
def test_document_that_is_not_a_mapping_is_refused(data: Any) -> None:
    assert "Expected `object`" in config_error(data)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(
            ["orders", "orders"], "topics[1].name: topic 'orders' is declared twice", id="pair"
        ),
        pytest.param(
            ["a", "b", "c", "b"], "topics[3].name: topic 'b' is declared twice", id="later-repeat"
        ),
        pytest.param(
            ["default", "default"],
            "topics[1].name: topic 'default' is declared twice",
            id="default-twice",
        ),
    ],
)
def test_duplicate_topic_names_are_refused(names: list[str], expected: str) -> None:
    assert config_error({"topics": [{"name": name} for name in names]}) == expected


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("-orders", id="leading-dash"),
        pytest.param(".orders", id="leading-dot"),
        pytest.param("orders dead", id="space"),
        pytest.param("orders/eu", id="slash"),
        pytest.param("ordérs", id="non-ascii"),
        pytest.param("a" * 101, id="101-chars"),
    ],
)
def test_bad_topic_name_is_refused_naming_its_path(name: str) -> None:
    message = config_error({"topics": [{"name": "ok"}, {"name": name}]})
    assert message.startswith(f"topics[1].name: {name!r} is not a topic name;")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a", id="one-char"),
        pytest.param("9lives", id="leading-digit"),
        pytest.param("Orders.EU-1_x", id="every-allowed-char"),
        pytest.param("a" * 100, id="100-chars"),
        pytest.param("default", id="default"),
    ],
)
def test_good_topic_name_is_kept(name: str) -> None:
    assert parse_config({"topics": [{"name": name}]}).topics == (TopicSettings(name, DAY),)


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("gunicorn", id="other-server"),
        pytest.param("Hypercorn", id="wrong-case"),
        pytest.param("", id="empty"),
    ],
)
def test_engine_must_be_hypercorn_or_uvicorn(engine: str) -> None:
    assert config_error({"server": {"engine": engine}}) == (
        f"server.engine: {engine!r} is not a server; use hypercorn or uvicorn"
    )


# --- load_config -------------------------------------------------------------------------------


def test_load_config_reads_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 9999\n  fsync: no\ntopics:\n  - name: t\n")
    settings = load_config(path)
    assert settings.server.port == 9999
    assert settings.server.fsync is False
    assert settings.topics == (TopicSettings("t", DAY),)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("server: {port: [\n", id="unclosed-flow"),
        pytest.param("server:\n  port: 1\n bad indent: 2\n", id="bad-indent"),
        pytest.param("topics: [\n  - name: a\n", id="mixed-styles"),
        pytest.param("key: 'unterminated\n", id="unterminated-quote"),
    ],
)
def test_invalid_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path} is not valid YAML:")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"cannot read config file {path}: No such file or directory"


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot read config file "):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "server:\n  bogus: 1\n",
            "server: Object contains unknown field `bogus`",
            id="unknown-key",
        ),
        pytest.param(
            "topics:\n  - name: a\n    retention: 9x\n",
            "topics[0].retention: '9x' is not a duration; use forms like 250ms, 10s, 1.5m, 24h"
            " or PT10S",
            id="bad-retention",
        ),
        pytest.param(
            "- server\n", "(top level): Expected `object`, got `array`", id="list-document"
        ),
    ],
)
def test_load_config_errors_name_the_path(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value) == expected


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    # `ce-gateway` turns only ConfigError into a message; anything else is a traceback.
    path = write(tmp_path, b"server:\n  host: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path)


# --- ranges (issue 19, F4): the same as the admin API's, naming the key path -------------------

HUGE = 99_999_999_999_999_999_999_999


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"server": {"port": 0}}, "server.port: Expected `int` >= 1", id="port-0"),
        pytest.param(
            {"server": {"port": 65536}}, "server.port: Expected `int` <= 65535", id="port"
        ),
        pytest.param(
            {"server": {"adminPort": HUGE}}, "server.adminPort: Expected `int`", id="admin"
        ),
        pytest.param({"server": {"maxBodySize": 0}}, "server.maxBodySize: Expected `int`", id="0b"),
        pytest.param(
            {"server": {"maxBodySize": "2GiB"}},
            "server.maxBodySize: '2GiB' is out of range; use 1 bytes to 1GiB",
            id="body-2GiB",
        ),
        pytest.param(
            {"server": {"mapSize": "64KiB"}},
            "server.mapSize: '64KiB' is out of range; use 1MiB to 16TiB",
            id="map-64KiB",
        ),
        pytest.param(
            {"server": {"maxMapSize": "17000GiB"}},
            "server.maxMapSize: '17000GiB' is out of",
            id="map",
        ),
        pytest.param({"server": {"maxMapSize": HUGE}}, "server.maxMapSize: Expected", id="map-int"),
        pytest.param(
            {"server": {"readTimeout": "0s"}},
            "server.readTimeout: '0s' is out of range; use more than 0s and at most 1h",
            id="read-0s",
        ),
        pytest.param(
            {"server": {"keepAliveTimeout": "2h"}}, "server.keepAliveTimeout: '2h'", id="keep-2h"
        ),
        pytest.param(
            {"server": {"gracefulTimeout": "61m"}}, "server.gracefulTimeout: '61m'", id="grace"
        ),
        pytest.param({"server": {"shutdownDelay": "2h"}}, "server.shutdownDelay: '2h'", id="delay"),
        pytest.param(
            {"server": {"maxExtensions": 1001}},
            "server.maxExtensions: Expected `int` <= 1000",
            id="ext",
        ),
        pytest.param(
            {"topics": [{"name": "t", "retention": "0s"}]},
            "topics[0].retention: '0s' is out of range; use at least 1s and at most 3650d",
            id="retention-0s",
        ),
        pytest.param(
            {"topics": [{"name": "t", "retention": "3651d"}]},
            "topics[0].retention: '3651d' is out of range",
            id="retention-3651d",
        ),
        pytest.param(
            with_subscription(maxDeliveryAttempts=HUGE),
            "subscriptions[0].maxDeliveryAttempts: Expected `int` <= 10000",
            id="attempts-huge",
        ),
        pytest.param(
            with_subscription(maxConcurrency=0),
            "subscriptions[0].maxConcurrency: Expected `int` >= 1",
            id="concurrency-0",
        ),
        pytest.param(
            with_subscription(permanentStatusCodes=[600]),
            "subscriptions[0].permanentStatusCodes[0]: Expected `int` <= 499",
            id="status-600",
        ),
        pytest.param(
            with_subscription(retryPolicy={"schedule": ["1s"] * 101}),
            "subscriptions[0].retryPolicy.schedule: Expected `array` of length <= 100",
            id="schedule-101",
        ),
        pytest.param(
            {"egress": {"allowedNetworks": ["10.0.0.0/8"] * 101}},
            "egress.allowedNetworks: Expected `array` of length <= 100",
            id="networks-101",
        ),
    ],
)
def test_out_of_range_values_name_the_key_path(data: dict[str, Any], expected: str) -> None:
    assert config_error(data).startswith(expected)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"ackDeadline": "601s"},
            "subscriptions[0].ackDeadline: '601s' is out of range; use more than 0s and at most"
            " 10m",
            id="ack-deadline",
        ),
        pytest.param(
            {"retryPolicy": {"maximumBackoff": "366d"}},
            "subscriptions[0].retryPolicy.maximumBackoff: '366d' is out of range; use at least 0s"
            " and at most 365d",
            id="maximum-backoff",
        ),
        pytest.param(
            {"retryPolicy": {"schedule": ["1h", "9999999999h"]}},
            "subscriptions[0].retryPolicy.schedule[1]: '9999999999h' is out of range",
            id="schedule-entry",
        ),
        pytest.param(
            {"deliveryDelay": "400d"}, "subscriptions[0].deliveryDelay: '400d'", id="delivery-delay"
        ),
    ],
)
def test_out_of_range_durations_of_a_file_are_refused_at_validation(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    """What `validate-config` and `serve` run: load_config, then validate_settings."""
    import yaml

    path = write(tmp_path, yaml.safe_dump(with_subscription(**changes)))
    with pytest.raises(ConfigError) as info:
        validate_settings(load_config(path))
    assert str(info.value).startswith(expected)


def test_a_huge_integer_in_a_file_names_its_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "subscriptions:\n- name: s\n  topic: default\n"
        "  destination: {http: {url: 'https://example.com/'}}\n"
        f"  maxDeliveryAttempts: {HUGE}\n",
    )
    with pytest.raises(ConfigError, match=r"^subscriptions\[0\]\.maxDeliveryAttempts: "):
        load_config(path)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("topics: " + "[" * 100_000, id="100000-unclosed"),
        pytest.param("topics: " + "[" * 200 + "]" * 200, id="200"),
        pytest.param("topics: &a [*a]\n", id="cycle"),
    ],
)
def test_a_file_nested_too_deep_is_a_config_error(tmp_path: Path, text: str) -> None:
    """PyYAML composes recursively: 100,000 brackets were a RecursionError (a traceback)."""
    with pytest.raises(ConfigError, match="nests deeper than 128 levels"):
        load_config(write(tmp_path, text))


def test_yaml_aliases_are_walked_once_per_level(tmp_path: Path) -> None:
    """Shared nodes (a "billion laughs" of aliases) do not make the depth check blow up."""
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in range(1, 30):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 8) + "]")
    message = config_error_file(tmp_path, "\n".join(lines))
    assert "unknown field `a0`" in message


def config_error_file(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)
