"""Liveness and readiness (`/healthz`, `/readyz`).

Ready means the store is open and accepting writes and the delivery engine has loaded; it goes
not-ready first on shutdown, so a load balancer stops sending before the gateway stops taking.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api_models import Health
from gateway.openapi import Operation
from gateway.problems import NotReady, problem_response

SHUTTING_DOWN = "shutting down"
STORE_FULL = "store full"
STILL_ACCEPTING = frozenset({None, SHUTTING_DOWN, STORE_FULL})  # None: a check found nothing


class Readiness:
    def __init__(self) -> None:
        self._reasons: set[str] = {"starting"}
        self.checks: list[Callable[[], str | None]] = []

    def set_ready(self) -> None:
        self._reasons.discard("starting")

    def set_not_ready(self, reason: str) -> None:
        self._reasons.add(reason)

    def reasons(self) -> list[str]:
        dynamic = [reason for check in self.checks if (reason := check()) is not None]
        return sorted(self._reasons) + dynamic

    @property
    def ready(self) -> bool:
        return not self.reasons()

    @property
    def accepting(self) -> bool:
        """Publishes are taken while ready, while shutting down (the store is still open until
        the server has drained; refusing then would only bounce publishers), and while the
        store is full (the store answers 507 itself, and takes them again once there is room)."""
        # Asked on every publish: the set test first, the checks only then, nothing sorted.
        if not self._reasons <= STILL_ACCEPTING:
            return False
        return all(check() in STILL_ACCEPTING for check in self.checks)


def operations(readiness: Readiness) -> list[Operation]:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        reasons = readiness.reasons()
        if reasons:
            detail = "not ready: " + ", ".join(reasons)
            return problem_response(NotReady(detail, reasons=reasons), instance="/readyz")
        return JSONResponse({"status": "ready"})

    return [
        Operation(
            "GET",
            "/healthz",
            healthz,
            "Liveness: the process serves requests",
            responses={200: Health},
            problems=(),
            tag="probes",
        ),
        Operation(
            "GET",
            "/readyz",
            readyz,
            "Readiness: store open and engine loaded",
            responses={200: Health},
            problems=(503,),
            tag="probes",
        ),
    ]
