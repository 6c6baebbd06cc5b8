"""Declarative configuration: the file's topics and subscriptions, applied at start and reload.

Apply creates or updates what the file names. Resources created through the API and absent
from the file are kept, unless the file sets `prune: true` (never those of Pretry configs,
`pretry.*`, which `/v1/config` owns). Everything is validated before
anything changes, so a bad file leaves the running configuration as it was. A reload (SIGHUP,
`POST /v1/config:reload`, `ce-gateway reload`) applies the file again, so a Kubernetes
ConfigMap update takes effect without a restart; `server:` settings need a restart.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from gateway.config.settings import DEFAULT_TOPIC, PRETRY_PREFIX, ConfigError, Settings, load_config
from gateway.resources.subscriptions import SubscriptionRegistry, validate_settings
from gateway.resources.topics import TopicRegistry

log = logging.getLogger("gateway.config")


# Sections read once at start: a reload cannot apply a change to them (why, per section).
RESTART_ONLY = {
    "server": "read once at start (listener, store, limits); takes effect at the next restart",
    "egress": "the push client's egress policy is built at start; takes effect at the next restart",
    "auth": "the tokens are read at start; takes effect at the next restart",
}


@dataclass(frozen=True, slots=True)
class NotApplied:
    key: str  # a key path of the file, e.g. server.port
    reason: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    topics: int
    subscriptions: int
    pruned: int
    applied: tuple[str, ...] = ()  # what the file names, as topic/NAME and subscription/NAME
    not_applied: tuple[NotApplied, ...] = ()


async def apply_config(
    settings: Settings, topics: TopicRegistry, subscriptions: SubscriptionRegistry
) -> ApplyResult:
    async with subscriptions.mutations:  # one configuration change at a time
        return await _apply(settings, topics, subscriptions)


async def _apply(
    settings: Settings, topics: TopicRegistry, subscriptions: SubscriptionRegistry
) -> ApplyResult:
    # Everything is validated before anything changes: nothing half-applied.
    validate_settings(settings)
    new_topics = [DEFAULT_TOPIC, *(topic.name for topic in settings.topics)]
    built = [
        subscriptions.build(raw, f"subscriptions[{index}]", new_topics=new_topics)
        for index, raw in enumerate(settings.subscriptions)
    ]
    for topic in settings.topics:
        await topics.put(topic)
    await topics.ensure_default()
    for subscription in built:
        await subscriptions.put(subscription)
    pruned = await _prune(settings, topics, subscriptions) if settings.prune else 0
    applied = (
        *(f"topic/{topic.name}" for topic in settings.topics),
        *(f"subscription/{subscription.name}" for subscription in built),
    )
    return ApplyResult(len(settings.topics), len(built), pruned, applied)


async def _prune(
    settings: Settings, topics: TopicRegistry, subscriptions: SubscriptionRegistry
) -> int:
    """Delete what the file does not name: subscriptions first (dropping their pending
    deliveries, counted), then topics no remaining subscription uses."""
    keep_subscriptions = {raw.name for raw in settings.subscriptions}
    keep_topics = {topic.name for topic in settings.topics} | {DEFAULT_TOPIC}
    pruned = 0
    for subscription in subscriptions.all():
        if subscription.name not in keep_subscriptions and not _pretry(subscription.name):
            dropped = await subscriptions.delete(subscription.name)
            log.info("pruned subscription %s (%d pending dropped)", subscription.name, dropped)
            pruned += 1
    for topic in topics.all():
        if topic.name in keep_topics or _pretry(topic.name):
            continue
        if not subscriptions.uses_topic(topic.name):
            await topics.delete(topic.name)
            log.info("pruned topic %s", topic.name)
            pruned += 1
    return pruned


def _pretry(name: str) -> bool:
    return name.startswith(PRETRY_PREFIX)


async def reload_config(
    source: Path | None,
    running: Settings,
    topics: TopicRegistry,
    subscriptions: SubscriptionRegistry,
) -> ApplyResult:
    if source is None:
        raise ConfigError("the gateway was started without --config; there is no file to reload")
    settings = load_config(source)
    not_applied = tuple(restart_only_changes(running, settings))
    for change in not_applied:
        log.warning("%s changed in %s but is not applied: %s", change.key, source, change.reason)
    result = await apply_config(settings, topics, subscriptions)
    log.info(
        "configuration reloaded from %s: %d topics, %d subscriptions, %d pruned",
        source,
        result.topics,
        result.subscriptions,
        result.pruned,
    )
    return dataclasses.replace(result, not_applied=not_applied)


def restart_only_changes(running: Settings, loaded: Settings) -> Iterator[NotApplied]:
    """Each key of `server:`, `egress:` and `auth:` whose value differs between the running
    settings and the file just read (these need a restart). Server settings given on the
    command line (`serve --port`) are left out: the file's value is not used for them, now or
    after a restart."""
    for section, reason in RESTART_ONLY.items():
        old, new = _fields(getattr(running, section)), _fields(getattr(loaded, section))
        skipped = running.overridden if section == "server" else frozenset()
        for name in old:
            if old[name] != new[name] and name not in skipped:
                yield NotApplied(f"{section}.{_camel(name)}", reason)


def _fields(value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    assert isinstance(value, msgspec.Struct)
    return {name: getattr(value, name) for name in value.__struct_fields__}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)
