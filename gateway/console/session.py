"""Console sessions and CSRF tokens (issue 23, DESIGN "Console").

With auth on, a login form takes the admin token (checked by `gateway.ingress.auth.authorize`, so a
publisher token is refused with 403 exactly as on the API) and answers with an opaque random
session id in an HttpOnly, SameSite=Strict cookie scoped to `/console`; the token itself is
never stored in the browser. With auth off every visitor gets a session at once, so forms still
carry a CSRF token. Sessions live in memory (a restart logs everyone out), expire after
`IDLE` seconds unused, and are capped in number (the oldest goes first).

Every state-changing form carries the session's CSRF token in a hidden field, compared in
constant time on POST. The login form, which has no session yet, uses a double-submit token:
a random value in a short-lived cookie that the form must repeat.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from gateway.ingress.auth import Tokens, authorize

COOKIE = "cegateway_console"
LOGIN_COOKIE = "cegateway_console_login"
PATH = "/console"
IDLE = 8 * 3600.0
MAX_SESSIONS = 1000


@dataclass
class Session:
    id: str
    csrf: str
    last_used: float


class Sessions:
    def __init__(self, tokens: Tokens, now: Callable[[], float]) -> None:
        self.tokens = tokens
        self._now = now
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @property
    def login_required(self) -> bool:
        return self.tokens.enabled

    def check_token(self, token: str) -> None:
        """Raises Unauthorized (wrong or no token) or Forbidden (a publisher token)."""
        authorize("admin", f"Bearer {token.strip()}", self.tokens)

    def create(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._now())
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def find(self, request: Request) -> Session | None:
        """The request's live session, refreshed; None when absent or expired."""
        session = self._sessions.get(request.cookies.get(COOKIE, ""))
        if session is None:
            return None
        now = self._now()
        if now - session.last_used > IDLE:
            del self._sessions[session.id]
            return None
        session.last_used = now
        self._sessions.move_to_end(session.id)
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf, presented)


def set_session_cookie(response: Response, session: Session, secure: bool) -> None:
    response.set_cookie(
        COOKIE, session.id, httponly=True, samesite="strict", secure=secure, path=PATH
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def set_login_cookie(response: Response, token: str, secure: bool) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=secure,
        path=PATH + "/login",
    )


def login_token_matches(request: Request, presented: str | None) -> bool:
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or presented is None:
        return False
    return hmac.compare_digest(expected, presented)
