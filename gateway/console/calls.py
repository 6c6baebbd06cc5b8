"""The console acts through the admin API's own operations, in process (issue 23: "the same
operations as the admin API, no second implementation of redrive or purge").

Each call finds the `Operation` the app declared for a method and path template, hands its
handler a request built here, and decodes the JSON answer; a `GatewayError` the handler raises
becomes the problem body the API would have sent. Authentication is the console's own (its
session), so these calls skip the bearer check the API's middleware makes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.types import Message

from gateway.openapi import Operation
from gateway.problems import GatewayError

_PARAM = re.compile(r"{([a-z]+)}")


@dataclass(frozen=True)
class Answer:
    """What the API answered: its status and decoded JSON body (a problem dict on errors)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def detail(self) -> str:
        """The problem's detail, for an error shown on a page."""
        if isinstance(self.body, dict):
            return str(self.body.get("detail", self.body))
        return str(self.body)


class NotServed(LookupError):
    """No operation with that method and path (the gateway is still starting)."""


class AdminCalls:
    def __init__(self, operations: Callable[[], Iterable[Operation]]) -> None:
        self._operations = operations

    def find(self, method: str, template: str) -> Operation:
        for operation in self._operations():
            if operation.method == method and operation.path == template:
                return operation
        raise NotServed(f"{method} {template} is not served (yet)")

    async def call(
        self,
        method: str,
        template: str,
        params: dict[str, str] | None = None,
        *,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Answer:
        operation = self.find(method, template)
        params = params or {}
        content = b"" if body is None else orjson.dumps(body)
        request = _request(method, template, params, content, content_type)
        try:
            response = await operation.handler(request)
        except GatewayError as error:
            return Answer(error.status, error.to_problem(instance=request.url.path))
        raw = bytes(response.body)
        return Answer(response.status_code, orjson.loads(raw) if raw else None)


def _request(
    method: str, template: str, params: dict[str, str], content: bytes, content_type: str
) -> Request:
    path = _PARAM.sub(lambda match: params[match.group(1)], template)
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(content)).encode()),
    ]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "path_params": params,
        "server": ("console", 0),
        "client": ("console", 0),
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    return Request(scope, receive)
