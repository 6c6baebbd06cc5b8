"""The gateway's one exception tree, and how every error reaches a client: RFC 9457 problems.

    GatewayError                         500 gateway-error
    ├── InvalidEvent                     400 invalid-event        (field, index in a batch)
    ├── InvalidRequest                   400 invalid-request      (field)
    ├── Unauthorized                     401 unauthorized
    ├── Forbidden                        403 forbidden
    ├── NotFound                         404 not-found
    ├── MethodNotAllowed                 405 method-not-allowed
    ├── Conflict                         409 conflict
    ├── PayloadTooLarge                  413 payload-too-large
    ├── UnsupportedMediaType             415 unsupported-media-type
    ├── HeadersTooLarge                  431 headers-too-large
    ├── NotReady                         503 not-ready
    ├── StoreFailure                     503 store-failure        (commit failed; retry is safe)
    └── StoreFull                        507 store-full

Errors from LMDB, the CloudEvents SDK and msgspec are translated into these where they enter our
code; `problem_response` renders any of them, and the app installs it as the only handler.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from starlette.responses import Response

PROBLEM_TYPE_PREFIX = "urn:ce-gateway:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class GatewayError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "gateway-error"
    title: ClassVar[str] = "Internal gateway error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = {key: value for key, value in extensions.items() if value is not None}

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extensions)
        return problem


class InvalidEvent(GatewayError):
    status, slug, title = 400, "invalid-event", "Invalid CloudEvent"

    def __init__(self, detail: str, *, field: str | None, index: int | None = None) -> None:
        super().__init__(detail, field=field, index=index)
        self.field = field
        self.index = index


class InvalidRequest(GatewayError):
    status, slug, title = 400, "invalid-request", "Invalid request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.field = field


class Unauthorized(GatewayError):
    status, slug, title = 401, "unauthorized", "Missing or wrong credentials"


class Forbidden(GatewayError):
    status, slug, title = 403, "forbidden", "Not allowed with these credentials"


class NotFound(GatewayError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(GatewayError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(GatewayError):
    status, slug, title = 409, "conflict", "Conflict with the current state"


class PayloadTooLarge(GatewayError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(GatewayError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported content type"


class HeadersTooLarge(GatewayError):
    status, slug, title = 431, "headers-too-large", "Request headers too large"


class NotReady(GatewayError):
    status, slug, title = 503, "not-ready", "Gateway not ready"


class StoreFailure(GatewayError):
    status, slug, title = 503, "store-failure", "The event store could not commit; retry"


class StoreFull(GatewayError):
    status, slug, title = 507, "store-full", "The event store is full"


def problem_response(error: GatewayError, instance: str | None = None) -> Response:
    headers = {"retry-after": "1"} if error.status in (503, 507) else None
    return Response(
        orjson.dumps(error.to_problem(instance)),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )
