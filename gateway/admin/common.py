"""What every admin resource shares: JSON responses, body decoding into `api_models` shapes,
settings errors as 400s naming the field, page sizes, and the save-time egress check (which the
pretry API uses too).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway.config.settings import ConfigError, msgspec_field, msgspec_path
from gateway.destinations.egress import EgressDenied, PolicyResolver, literal_address, url_host
from gateway.ingress.bodies import read_body
from gateway.jsonsafe import MAX_DEPTH, depth
from gateway.openapi import Query
from gateway.problems import InvalidRequest, PayloadTooLarge
from gateway.resources.subscriptions import Subscription

S = TypeVar("S")
DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() accepts superscripts
MAX_ADMIN_BODY = 1024**2  # an admin request's JSON body; the largest spec is a few KiB
MAX_PAGE = 1000
DEFAULT_PAGE = 100
PAGE_QUERY = (
    Query("limit", "page size, 1 to 1000 (default 100)", integer=True),
    Query("after", "the `next` cursor of the previous page"),
)


def json_response(content: Any, status: int = 200) -> Response:
    # msgspec, not orjson: it encodes integers of any size, so no value that got past the
    # checks can make an answer (a listing) fail.
    return Response(msgspec.json.encode(content), status_code=status, media_type="application/json")


async def admin_body(request: Request) -> bytes:
    """An admin request's body, at most MAX_ADMIN_BODY bytes (never buffered past it)."""
    try:
        return await read_body(request, MAX_ADMIN_BODY)
    except PayloadTooLarge:
        raise PayloadTooLarge(
            f"admin request bodies are limited to {MAX_ADMIN_BODY // 1024} KiB",
            field="body",
            limit=MAX_ADMIN_BODY,
        ) from None


def decode_body(body: bytes, shape: type[S]) -> S:
    """An admin JSON body as `shape`, or a 400 naming the field: nested at most
    `jsonsafe.MAX_DEPTH` levels (100,000 levels were a RecursionError, a 500); integers of any
    size are decoded exactly, so a message names the field and the range it breaks."""
    body = body or b"{}"
    _check_nesting(body)
    try:
        return msgspec.json.decode(body, type=shape)
    except msgspec.ValidationError as error:
        raise InvalidRequest(msgspec_path(error), field=msgspec_field(error)) from None
    except msgspec.DecodeError as error:
        raise InvalidRequest(f"body is not valid JSON: {error}", field="body") from None
    except RecursionError:
        raise _too_deep() from None


def _check_nesting(body: bytes) -> None:
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:  # cannot be deeper
        return
    try:
        value = msgspec.json.decode(body)
    except RecursionError:
        raise _too_deep() from None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return  # the typed decode says what is wrong
    if depth(value) > MAX_DEPTH:
        raise _too_deep()


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"body is nested more than {MAX_DEPTH} levels deep", field="body")


def config_error(error: ConfigError) -> InvalidRequest:
    """A settings error as a 400 naming the field (`subscription.x: ...` names `x`)."""
    text = str(error)
    path = text.split(":", 1)[0]
    field = path.split(".", 1)[1] if path.startswith(("subscription.", "topic.")) else path
    return InvalidRequest(text, field=field)


def page_limit(request: Request) -> int:
    text = request.query_params.get("limit", str(DEFAULT_PAGE))
    if not DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    return int(text)


async def check_resolved(
    resolver: PolicyResolver, subscription: Subscription, path: str, field: str
) -> None:
    """Save-time DNS check of the destination's host (S1), a 400 naming `field`; the push
    path checks again where it connects (S2)."""
    url = subscription.target.egress_url
    if url is None:
        return
    host = url_host(url)
    if literal_address(host) is None:
        try:
            await resolver.check_host(host)
        except EgressDenied as error:
            raise InvalidRequest(f"{path}.{field}: {error}", field=field) from None
