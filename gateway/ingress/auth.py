"""Inbound checks before any handler runs: request-head size (S7) and authentication (S5).

Publishers and admins present separate bearer tokens, read from files (a Kubernetes Secret
mount) and compared in constant time. An admin token may also publish; a publisher token gets
403 on every admin route. Routes are classed by method and path:

    open       GET /healthz, /readyz, /metrics, /openapi.json     (no event data in any)
    publish    POST /, POST /topics/{topic}/events, POST /v1/event (Pretry)
    console    /console and under it: its own login session (gateway/console/session.py)
    admin      everything else under /v1/

With `server.adminPort` set, admin and console routes are served only on that port (404
elsewhere), so they can be kept off the network publishers reach. Auth is checked before a
handler runs, so a refused publish stores and counts nothing.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config.settings import ConfigError, RawAuth, Settings
from gateway.problems import (
    Forbidden,
    GatewayError,
    HeadersTooLarge,
    NotFound,
    Unauthorized,
    problem_response,
)

MAX_HEADER_BYTES = 16 * 1024  # as Hypercorn's h11_max_incomplete_size
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
PUBLISH_PATH = re.compile(r"^/(topics/[^/]+/events|v1/event)?$")
CONSOLE_PATH = re.compile(r"^/console(/|$)")


@dataclass(frozen=True, slots=True)
class Tokens:
    publisher: bytes | None = None
    admin: bytes | None = None

    @property
    def enabled(self) -> bool:
        return self.publisher is not None or self.admin is not None


def check_startup(settings: Settings) -> Tokens:
    """Everything `serve` refuses in a configuration before it starts, offline; what
    `validate-config` runs too, so the two cannot disagree: the subscriptions (topics,
    destinations, egress, signing secrets, dead-letter cycles) and the token files (readable,
    at least 16 bytes)."""
    from gateway.resources.subscriptions import validate_settings

    validate_settings(settings)
    return load_tokens(settings.auth)


def load_tokens(auth: RawAuth) -> Tokens:
    return Tokens(
        publisher=_read_token("auth.publisherTokenFile", auth.publisher_token_file),
        admin=_read_token("auth.adminTokenFile", auth.admin_token_file),
    )


def _read_token(path: str, filename: str | None) -> bytes | None:
    if filename is None:
        return None
    try:
        token = Path(filename).read_bytes().strip()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {filename}: {error.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"{path}: the token in {filename} is shorter than 16 bytes")
    return token


def route_kind(method: str, path: str) -> str:
    if path in OPEN_PATHS and method in ("GET", "HEAD"):
        return "open"
    if method == "POST" and PUBLISH_PATH.match(path):
        return "publish"
    if CONSOLE_PATH.match(path):
        return "console"
    return "admin"


def authorize(kind: str, authorization: str | None, tokens: Tokens) -> None:
    """Raises Unauthorized or Forbidden; returns when the request may proceed."""
    if kind in ("open", "console") or not tokens.enabled:
        return  # the console checks its own session
    presented = _bearer(authorization)
    is_admin = _matches(presented, tokens.admin)
    is_publisher = _matches(presented, tokens.publisher)
    if kind == "publish" and tokens.publisher is None:
        return  # only the admin API is protected
    if is_admin or (kind == "publish" and is_publisher):
        return
    if is_publisher:
        raise Forbidden("a publisher token cannot use the admin API")
    raise Unauthorized("missing or wrong bearer token; send Authorization: Bearer <token>")


def _bearer(authorization: str | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip().encode()


def _matches(presented: bytes | None, expected: bytes | None) -> bool:
    # compare_digest takes time independent of where the bytes differ (timing attacks).
    return (
        presented is not None and expected is not None and hmac.compare_digest(presented, expected)
    )


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        tokens: Tokens,
        admin_port: int | None = None,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.admin_port = admin_port
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = route_kind(scope["method"], scope["path"])
        try:
            self._check_header_size(scope)
            self._check_port(kind, scope)
            if self.tokens.enabled:  # else nothing to check (and no header to look for)
                authorize(kind, _header(scope, b"authorization"), self.tokens)
        except GatewayError as error:
            response = problem_response(error, instance=scope["path"])
            if isinstance(error, Unauthorized):
                response.headers["www-authenticate"] = 'Bearer realm="ce-gateway"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check_header_size(self, scope: Scope) -> None:
        """Hypercorn (h11) limits a request head to 16 KiB only while it arrives in pieces;
        one that arrives whole in a single read is checked here, before any handler."""
        size = sum(len(key) + len(value) + 4 for key, value in scope.get("headers", ()))
        if size > self.max_header_bytes:
            raise HeadersTooLarge(f"request headers are {size} bytes, over {self.max_header_bytes}")

    def _check_port(self, kind: str, scope: Scope) -> None:
        if self.admin_port is None or kind == "open":
            return
        port = (scope.get("server") or ("", 0))[1]
        if (kind != "publish") != (port == self.admin_port):
            raise NotFound(f"no route {scope['path']} on this port")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
