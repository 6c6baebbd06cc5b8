"""The set of topics: kept in the store, mirrored in memory so ingress can 404 without a read."""

from __future__ import annotations

from gateway.config.settings import DEFAULT_TOPIC, TopicSettings
from gateway.problems import NotFound
from gateway.store.lmdb.store import LmdbStore

DEFAULT_RETENTION = 24 * 3600.0


class TopicRegistry:
    def __init__(self, store: LmdbStore) -> None:
        self._store = store
        self._topics = {topic.name: topic for topic in store.topics()}

    def get(self, name: str) -> TopicSettings:
        topic = self._topics.get(name)
        if topic is None:
            raise NotFound(f"topic {name!r} does not exist", topic=None)
        return topic

    def exists(self, name: str) -> bool:
        return name in self._topics

    def all(self) -> list[TopicSettings]:
        return sorted(self._topics.values(), key=lambda topic: topic.name)

    async def put(self, topic: TopicSettings) -> bool:
        created = await self._store.put_topic(topic)
        self._topics[topic.name] = topic
        return created

    async def delete(self, name: str) -> None:
        await self._store.delete_topic(name)
        self._topics.pop(name, None)

    async def ensure_default(self) -> None:
        if not self.exists(DEFAULT_TOPIC):
            await self.put(TopicSettings(DEFAULT_TOPIC, DEFAULT_RETENTION))
