"""`/v1/subscriptions`: list, read (with delivery counts), create or replace, and delete
subscriptions; what users read back has inline secrets masked.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway import api_models as shapes
from gateway.admin.common import (
    admin_body,
    check_resolved,
    config_error,
    decode_body,
    json_response,
)
from gateway.config.settings import ConfigError, RawSubscription, msgspec_field, msgspec_path
from gateway.destinations.egress import PolicyResolver
from gateway.destinations.targets import HttpTarget, mask_secrets
from gateway.openapi import Operation, Query
from gateway.policy.deadletters import rfc3339_utc
from gateway.problems import Conflict, InvalidRequest, NotFound
from gateway.resources.subscriptions import Subscription, SubscriptionRegistry
from gateway.store.lmdb.keys import LastOutcome
from gateway.store.lmdb.store import LmdbStore


def subscription_json(subscription: Subscription, status: dict[str, Any] | None) -> Any:
    """A subscription as users read it back: its spec, inline secrets masked."""
    document: dict[str, Any] = mask_secrets(_without_nulls(msgspec.to_builtins(subscription.spec)))
    if status is not None:
        document["status"] = status
    return document


def last_outcome_json(last: LastOutcome) -> dict[str, Any]:
    """The status fields of the last success and failure; those never seen are left out.
    `lastStatus` is the last failed attempt's HTTP status (an integer) or error kind."""
    found: dict[str, Any] = {}
    if last.success_time is not None:
        found["lastSuccessTime"] = rfc3339_utc(last.success_time)
    if last.failure_time is not None:
        found["lastFailureTime"] = rfc3339_utc(last.failure_time)
    if last.status is not None:
        found["lastStatus"] = (
            int(last.status) if last.status.isascii() and last.status.isdigit() else last.status
        )
    if last.error is not None:
        found["lastError"] = last.error
    return found


def _without_nulls(value: Any) -> Any:
    """Unset optional fields are left out of what users read back."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


class SubscriptionsApi:
    def __init__(
        self, store: LmdbStore, subscriptions: SubscriptionRegistry, resolver: PolicyResolver
    ) -> None:
        self._store = store
        self._subscriptions = subscriptions
        self._resolver = resolver

    def operations(self) -> list[Operation]:
        one = "/v1/subscriptions/{name}"
        return [
            Operation(
                "GET",
                "/v1/subscriptions",
                self.list,
                "List subscriptions",
                responses={200: shapes.SubscriptionList},
                problems=(),
            ),
            Operation(
                "GET",
                one,
                self.get,
                "Get a subscription and its delivery counts",
                responses={200: shapes.Subscription},
                problems=(404,),
            ),
            Operation(
                "PUT",
                one,
                self.put,
                "Create or replace a subscription",
                request=shapes.SubscriptionBody,
                responses={200: shapes.Subscription, 201: shapes.Subscription},
                problems=(400, 413),
                query=(Query("dryRun", "true to check the subscription and change nothing"),),
            ),
            Operation(
                "DELETE",
                one,
                self.delete,
                "Delete a subscription (?force=true drops pending deliveries)",
                responses={204: None},
                problems=(404, 409),
                query=(Query("force", "true to drop pending deliveries"),),
            ),
        ]

    def status(self, name: str) -> dict[str, Any]:
        counters = self._store.deliveries.counters(name)
        settled = counters["acked"] + counters["deadlettered"] + counters["dropped"]
        return {
            **{key: counters[key] for key in ("published", "acked", "deadlettered", "dropped")},
            "pending": counters["published"] - settled,
            **last_outcome_json(self._store.deliveries.last_outcome(name)),
        }

    def _existing(self, name: str) -> Subscription:
        subscription = self._subscriptions.get(name)
        if subscription is None:
            raise NotFound(f"subscription {name!r} does not exist")
        return subscription

    async def list(self, request: Request) -> Response:
        return json_response(
            {"subscriptions": [subscription_json(s, None) for s in self._subscriptions.all()]}
        )

    async def get(self, request: Request) -> Response:
        subscription = self._existing(request.path_params["name"])
        return json_response(subscription_json(subscription, self.status(subscription.name)))

    async def put(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._put_serialized(request)

    async def _put_serialized(self, request: Request) -> Response:
        name = request.path_params["name"]
        document = decode_body(await admin_body(request), dict[str, Any])
        if document.setdefault("name", name) != name:
            raise InvalidRequest(f"name {document['name']!r} differs from the path", field="name")
        try:
            raw = msgspec.convert(document, RawSubscription)
            subscription = self._subscriptions.build(raw, path="subscription")
        except msgspec.ValidationError as error:
            raise InvalidRequest(msgspec_path(error), field=msgspec_field(error)) from None
        except ConfigError as error:
            raise config_error(error) from None
        await self._check_resolved(subscription)
        if request.query_params.get("dryRun") == "true":  # checked as a save is; nothing saved
            return json_response(subscription_json(subscription, None))
        created = await self._subscriptions.put(subscription)
        body = subscription_json(subscription, self.status(subscription.name))
        return json_response(body, status=201 if created else 200)

    async def _check_resolved(self, subscription: Subscription) -> None:
        field = "destination.http.url"
        if not isinstance(subscription.target, HttpTarget):
            field = "destination.sqs.endpointUrl"
        await check_resolved(self._resolver, subscription, "subscription", field)

    async def delete(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._delete_serialized(request)

    async def _delete_serialized(self, request: Request) -> Response:
        subscription = self._existing(request.path_params["name"])
        pending = self.status(subscription.name)["pending"]
        if pending and request.query_params.get("force") != "true":
            raise Conflict(
                f"subscription {subscription.name!r} has {pending} pending deliveries; "
                "delete with ?force=true to drop them",
                pending=pending,
            )
        await self._subscriptions.delete(subscription.name)
        return Response(status_code=204)
