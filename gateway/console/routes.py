"""The console's Starlette routes (issue 23, DESIGN "Console"): each handler reads one page's
figures from `Pages` or runs one action from `actions`, and renders a Jinja2 template.

Every route goes through `_guarded`: it finds the session (or, with auth off, makes one),
sends a visitor without one to the login form, checks the CSRF token of every POST, and adds
the security headers (a Content-Security-Policy without inline script, `X-Frame-Options:
DENY`) to every answer. Errors a browser sees are HTML pages; other clients get the usual
problem+json body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from gateway.console import actions, pages
from gateway.console.actions import ACTIONS, Choice, TestEvent
from gateway.console.calls import AdminCalls
from gateway.console.data import pretty
from gateway.console.session import (
    Session,
    Sessions,
    clear_session_cookie,
    csrf_matches,
    login_token_matches,
    new_login_token,
    set_login_cookie,
    set_session_cookie,
)
from gateway.ingress.bodies import read_body
from gateway.problems import (
    Forbidden,
    GatewayError,
    InvalidRequest,
    NotFound,
    Unauthorized,
    problem_response,
)
from gateway.resources.subscriptions import Subscription

HERE = Path(__file__).parent
STATIC = {p.name: p for p in (HERE / "static").iterdir() if p.suffix in (".js", ".css", ".svg")}
FORM_LIMIT = 256 * 1024
REFRESH_SECONDS = 3
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
Handler = Callable[[Request, Session], Awaitable[Response]]
Form = dict[str, list[str]]


class Console:
    """The console's parts: its pages, the admin calls behind its actions, its sessions."""

    def __init__(self, pages: pages.Pages, calls: AdminCalls, sessions: Sessions) -> None:
        self.pages = pages
        self.calls = calls
        self.sessions = sessions
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True
        )
        self.templates = Jinja2Templates(env=environment)

    def render(
        self, request: Request, name: str, session: Session | None, status: int = 200, **values: Any
    ) -> Response:
        context = {
            "csrf": session.csrf if session else "",
            "login_required": self.sessions.login_required,
            "refresh_seconds": REFRESH_SECONDS,
            **values,
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def routes(self) -> list[BaseRoute]:
        guarded = self._guarded
        return [
            Route("/console", guarded(self.overview), methods=["GET"]),
            Route("/console/live", guarded(self.live), methods=["GET"]),
            Route("/console/login", self.login_form, methods=["GET"]),
            Route("/console/login", self.login, methods=["POST"]),
            Route("/console/logout", guarded(self.logout), methods=["POST"]),
            Route("/console/static/{file}", self.static, methods=["GET"]),
            Route("/console/subscriptions/{name}", guarded(self.subscription), methods=["GET"]),
            Route("/console/subscriptions/{name}/confirm", guarded(self.confirm), methods=["GET"]),
            Route(
                "/console/subscriptions/{name}/{action}",
                guarded(self.dead_letter_action),
                methods=["POST"],
            ),
            Route("/console/topics/{name}", guarded(self.topic), methods=["GET"]),
            Route("/console/topics/{name}/events/{seq:int}", guarded(self.event), methods=["GET"]),
            Route(
                "/console/topics/{name}/publish",
                guarded(self.publish),
                methods=["GET", "POST"],
            ),
        ]

    # -- the guard --------------------------------------------------------------------------

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session, created = self.sessions.find(request), False
            if session is None and not self.sessions.login_required:
                session, created = self.sessions.create(), True
            if session is None:
                response = self._to_login(request)
            elif request.method == "POST" and not csrf_matches(
                session, _first(await _form(request), "csrf")
            ):
                response = self._refuse(
                    request, Forbidden("the form's CSRF token is missing or stale; reload it")
                )
            else:
                response = await self._handle(handler, request, session)
            if created and session is not None:
                set_session_cookie(response, session, request.url.scheme == "https")
            return _secured(response)

        return endpoint

    async def _handle(self, handler: Handler, request: Request, session: Session) -> Response:
        try:
            return await handler(request, session)
        except GatewayError as error:
            return self._refuse(request, error, session)

    def _to_login(self, request: Request) -> Response:
        if request.method != "GET" or "hx-request" in request.headers:
            return self._refuse(request, Unauthorized("log in to the console first"))
        return RedirectResponse("/console/login", status_code=303)

    def _refuse(
        self, request: Request, error: GatewayError, session: Session | None = None
    ) -> Response:
        if "text/html" not in request.headers.get("accept", ""):
            return problem_response(error, instance=request.url.path)
        return self.render(request, "error.html", session, error.status, error=error)

    # -- login ------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        if not self.sessions.login_required:
            return _secured(RedirectResponse("/console", status_code=303))
        return self._login_page(request, None, 200)

    def _login_page(self, request: Request, error: GatewayError | None, status: int) -> Response:
        token = new_login_token()
        response = self.render(request, "login.html", None, status, login=token, error=error)
        set_login_cookie(response, token, request.url.scheme == "https")
        return _secured(response)

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        if not login_token_matches(request, _first(form, "csrf")):
            error: GatewayError = Forbidden("the login form is stale; try again")
            return self._login_page(request, error, 403)
        try:
            self.sessions.check_token(_first(form, "token") or "")
        except (Unauthorized, Forbidden) as refused:
            return self._login_page(request, refused, refused.status)
        session = self.sessions.create()
        response = RedirectResponse("/console", status_code=303)
        set_session_cookie(response, session, request.url.scheme == "https")
        return _secured(response)

    async def logout(self, request: Request, session: Session) -> Response:
        self.sessions.end(session)
        response = RedirectResponse("/console/login", status_code=303)
        clear_session_cookie(response)
        return response

    async def static(self, request: Request) -> Response:
        path = STATIC.get(request.path_params["file"])
        if path is None:
            return _secured(problem_response(NotFound("no such console asset")))
        response = FileResponse(path, headers={"cache-control": "public, max-age=3600"})
        return _secured(response)

    # -- reading pages ----------------------------------------------------------------------

    async def overview(self, request: Request, session: Session) -> Response:
        overview = await self.pages.overview()
        return self.render(request, "overview.html", session, overview=overview)

    async def live(self, request: Request, session: Session) -> Response:
        overview = await self.pages.overview()
        return self.render(request, "_live.html", session, overview=overview)

    async def subscription(self, request: Request, session: Session) -> Response:
        subscription = self._subscription(request)
        page = await self.pages.subscription_page(subscription, request.query_params.get("before"))
        done = {
            key: request.query_params[key]
            for key in ("redriven", "purged", "skipped")
            if request.query_params.get(key, "").isdecimal()
        }
        return self.render(request, "subscription.html", session, page=page, done=done)

    def _subscription(self, request: Request) -> Subscription:
        name = request.path_params["name"]
        subscription = self.pages.subscription(name)
        if subscription is None:
            raise NotFound(f"subscription {name!r} does not exist")
        return subscription

    async def topic(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        events = self.pages.events(name, request.query_params.get("before"))
        return self.render(request, "topic.html", session, topic=name, events=events)

    async def event(self, request: Request, session: Session) -> Response:
        name, seq = request.path_params["name"], request.path_params["seq"]
        page = self.pages.event_page(name, seq)
        if page is None:
            raise NotFound(f"topic {name!r} holds no event {seq}")
        return self.render(request, "event.html", session, page=page)

    # -- actions ----------------------------------------------------------------------------

    async def confirm(self, request: Request, session: Session) -> Response:
        subscription = self._subscription(request)
        action, choice = self._choice(request, parse_qs(request.url.query), subscription)
        ids = None if choice.all else frozenset(choice.ids)
        affected = self.pages.dead_letters(subscription, ids)
        return self.render(
            request,
            "confirm.html",
            session,
            subscription=subscription,
            action=action,
            choice=choice,
            affected=affected,
        )

    def _choice(
        self, request: Request, form: Form, subscription: Subscription
    ) -> tuple[str, Choice]:
        action = _first(form, "action") or request.path_params.get("action", "")
        if action not in ACTIONS:
            raise NotFound(f"no console action {action!r}; use redrive or purge")
        if subscription.dead_letter_topic is None:
            raise NotFound(f"subscription {subscription.name!r} has no dead-letter topic")
        everything = _first(form, "all") == "true"
        ids = tuple(dict.fromkeys(form.get("id", [])))
        if not everything and not ids:
            raise _nothing_chosen()
        return action, Choice(subscription.name, () if everything else ids, everything)

    async def dead_letter_action(self, request: Request, session: Session) -> Response:
        subscription = self._subscription(request)
        action, choice = self._choice(request, await _form(request), subscription)
        assert subscription.dead_letter_topic is not None  # `_choice` checked
        answer = await actions.act_on_dead_letters(
            self.calls, action, subscription.dead_letter_topic, choice
        )
        if not answer.ok:
            return self.render(request, "error.html", session, answer.status, error=answer)
        done = {key: str(value) for key, value in answer.body.items()}
        query = urlencode(done)
        return RedirectResponse(
            f"/console/subscriptions/{subscription.name}?{query}", status_code=303
        )

    async def publish(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        if name not in self.pages.topic_names():
            raise NotFound(f"topic {name!r} does not exist")
        form = await _form(request)
        values = {key: _first(form, key) or "" for key in ("type", "source", "subject", "data")}
        answer, event = None, None
        if request.method == "POST":
            event = TestEvent(**values).document()
            answer = await actions.publish(self.calls, name, event)
        return self.render(
            request,
            "publish.html",
            session,
            topic=name,
            values=values,
            event=event,
            answer=answer,
            answer_text="" if answer is None else pretty(answer.body),
        )


def _nothing_chosen() -> GatewayError:
    return InvalidRequest("choose at least one dead letter, or all", field="id")


async def _form(request: Request) -> Form:
    """The urlencoded form body, read once per request (the guard and the handler share it)."""
    if request.method != "POST":
        return {}
    form: Form | None = getattr(request.state, "console_form", None)
    if form is None:
        body = await read_body(request, FORM_LIMIT)
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        request.state.console_form = form
    return form


def _first(form: Form, key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("cache-control", "no-store")
    return response
