"""The admin REST API under `/v1/` (DESIGN "Admin API"): JSON, camelCase, same fields as YAML.

Request bodies are decoded into the msgspec types of `gateway.api_models` (unknown fields
refused); every error is a problem body naming the field; each route is declared once as an
`Operation`, which is also its entry in `/openapi.json`.

One module per resource: `topics`, `subscriptions`, `deadletters` (redrive and purge),
`events` (one event's deliveries and attempt logs) and `config` (reload), with what they share
in `common`. The names other modules use are re-exported here.
"""

from gateway.admin.common import (
    admin_body,
    check_resolved,
    config_error,
    decode_body,
    json_response,
)
from gateway.admin.config import ConfigApi
from gateway.admin.deadletters import DeadLettersApi, selection_from_query
from gateway.admin.events import EventsApi
from gateway.admin.subscriptions import SubscriptionsApi, subscription_json
from gateway.admin.topics import TopicsApi, topic_json

__all__ = [
    "ConfigApi",
    "DeadLettersApi",
    "EventsApi",
    "SubscriptionsApi",
    "TopicsApi",
    "admin_body",
    "check_resolved",
    "config_error",
    "decode_body",
    "json_response",
    "selection_from_query",
    "subscription_json",
    "topic_json",
]
