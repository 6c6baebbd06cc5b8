"""Request framing checked before any route (pure ASGI middleware).

A request with both Content-Length and Transfer-Encoding is refused, on every route, with a 400
problem naming `transfer-encoding` and the connection closed (RFC 9112 section 6.1: a server MAY
reject such a message and "ought to" close the connection). h11 (Hypercorn) passes it through and
frames the body as chunked, while a proxy in front may have framed it by its Content-Length: that
difference is how request smuggling works. httptools (uvicorn) refuses it before the app sees it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.problems import InvalidRequest, problem_response

BOTH = "a request must not have both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)"


class FramingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _both_framings(scope):
            response = problem_response(
                InvalidRequest(BOTH, field="transfer-encoding"), instance=scope["path"]
            )
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _both_framings(scope: Scope) -> bool:
    names = {name for name, _ in scope["headers"]}
    return b"transfer-encoding" in names and b"content-length" in names
