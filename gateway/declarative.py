"""Declarative configuration: the file's topics and subscriptions, applied at start and reload.

Apply creates or updates what the file names. Resources created through the API and absent
from the file are kept, unless the file sets `prune: true` (never those of Pretry configs,
`pretry.*`, which `/v1/config` owns). Everything is validated before
anything changes, so a bad file leaves the running configuration as it was. A reload (SIGHUP,
`POST /v1/config:reload`, `ce-gateway reload`) applies the file again, so a Kubernetes
ConfigMap update takes effect without a restart; `server:` settings need a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.settings import DEFAULT_TOPIC, PRETRY_PREFIX, ConfigError, Settings, load_config
from gateway.subscriptions import SubscriptionRegistry, validate_settings
from gateway.topics import TopicRegistry

log = logging.getLogger("gateway.config")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    topics: int
    subscriptions: int
    pruned: int


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
    return ApplyResult(len(settings.topics), len(built), pruned)


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
    for section, changed in (
        ("server", settings.server != running.server),
        ("egress", settings.egress != running.egress),
        ("auth", settings.auth != running.auth),
    ):
        if changed:  # these are read once at start (the push client, the token check)
            log.warning(
                "%s settings changed in %s; they take effect at the next restart", section, source
            )
    result = await apply_config(settings, topics, subscriptions)
    log.info(
        "configuration reloaded from %s: %d topics, %d subscriptions, %d pruned",
        source,
        result.topics,
        result.subscriptions,
        result.pruned,
    )
    return result
