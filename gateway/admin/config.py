"""`/v1/config:reload`: re-apply the configuration file over the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from gateway import api_models as shapes
from gateway.admin.common import config_error, json_response
from gateway.config.settings import ConfigError
from gateway.openapi import Operation
from gateway.resources.declarative import ApplyResult


class ConfigApi:
    """Re-apply the configuration file (what SIGHUP and `ce-gateway reload` do)."""

    def __init__(self, reload: Callable[[], Awaitable[ApplyResult]]) -> None:
        self._reload = reload

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "POST",
                "/v1/config:reload",
                self.reload,
                "Re-read the configuration file and apply it",
                responses={200: shapes.ReloadResult},
                problems=(400,),
            ),
        ]

    async def reload(self, request: Request) -> Response:
        try:
            result = await self._reload()
        except ConfigError as error:
            raise config_error(error) from None
        return json_response(
            {
                "topics": result.topics,
                "subscriptions": result.subscriptions,
                "pruned": result.pruned,
                "applied": list(result.applied),
                "notApplied": [
                    {"key": change.key, "reason": change.reason} for change in result.not_applied
                ],
            }
        )
