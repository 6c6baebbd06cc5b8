"""The log lines of delivery failures (DESIGN "Delivery visibility"; issue 19).

A failed attempt, a dead letter and a drop each write one JSON line: the subscription, the
event's id and source, the attempt, the HTTP status or error kind, the error text (redacted
like the dead letter's), and the next attempt time or the reason given up. Lines are rate
limited per subscription (`LineBudget`: a burst of `BURST`, then `PER_MINUTE` a minute); a
line written after some were left out says how many (`suppressed`). So one failing
subscription writes at most BURST + PER_MINUTE lines in its first minute and PER_MINUTE a
minute after that, however many events it fails.

A failure inside the gateway (an attempt whose outcome could not be recorded) goes through the
same budget, its traceback only on the lines written.

The event's id and source are read from its stored form only for a line that is written:
nothing of this costs a parse per attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from gateway.clock import Clock
from gateway.ops.logs import LineBudget
from gateway.policy.deadletters import MAX_DL_ERROR, Failure, rfc3339_utc
from gateway.policy.outcomes import Ack, DeadLetter, RetryAt
from gateway.store.lmdb.deliveries import Settlement

log = logging.getLogger("gateway.delivery")
BURST = 10
PER_MINUTE = 6


class DeliveryLog:
    """One subscription's failure lines, within its budget."""

    def __init__(
        self,
        subscription: str,
        clock: Clock,
        now: Callable[[], float],
        budget: LineBudget | None = None,
    ) -> None:
        self._subscription = subscription
        self._clock = clock
        self._now = now  # the scheduling clock due times are on
        self._budget = budget or LineBudget(BURST, PER_MINUTE)

    def settled(self, settlement: Settlement, payload: bytes | None) -> None:
        """An attempt that did not ack, as recorded: retried, dead-lettered or dropped."""
        decision = settlement.decision
        if isinstance(decision, Ack):
            return
        suppressed = self._budget.take(self._clock.monotonic())
        if suppressed is None:
            return
        fields = self._fields(payload, suppressed)
        fields.update(attempt=settlement.attempts, **_failure_fields(settlement.failure))
        if isinstance(decision, RetryAt):
            self._retried(fields, decision)
        else:
            self._gave_up(fields, decision, settlement.dead_letter_topic)

    def internal(self, payload: bytes | None, error: BaseException) -> None:
        """An attempt whose outcome could not be recorded: it stays pending."""
        self._error(payload, error, "an attempt failed inside the gateway; it stays pending")

    def lane_failed(self, error: BaseException, pause: float) -> None:
        """The lane could not read what is due; it carries on after `pause` seconds."""
        self._error(None, error, f"the lane failed; it carries on in {pause:g}s")

    def _error(self, payload: bytes | None, error: BaseException, what: str) -> None:
        suppressed = self._budget.take(self._clock.monotonic())
        if suppressed is None:
            return
        fields = self._fields(payload, suppressed)
        fields.update(outcome="error", error=f"{error.__class__.__name__}: {error}"[:MAX_DL_ERROR])
        log.error(
            "%s: %s%s",
            self._subscription,
            what,
            _left_out(suppressed),
            extra=fields,
            exc_info=error,
        )

    def _fields(self, payload: bytes | None, suppressed: int) -> dict[str, Any]:
        event_id, source = _identity(payload)
        fields: dict[str, Any] = {
            "subscription": self._subscription,
            "eventId": event_id,
            "eventSource": source,
        }
        if suppressed:
            fields["suppressed"] = suppressed
        return fields

    def _retried(self, fields: dict[str, Any], decision: RetryAt) -> None:
        wall = self._clock.now() + max(0.0, decision.due - self._now())
        fields.update(outcome="retried", nextAttemptTime=rfc3339_utc(wall))
        log.warning(
            "%s: attempt %d of event %s failed (%s); next attempt at %s%s",
            self._subscription,
            fields["attempt"],
            fields["eventId"],
            fields.get("error"),
            fields["nextAttemptTime"],
            _left_out(fields.get("suppressed", 0)),
            extra=fields,
        )

    def _gave_up(self, fields: dict[str, Any], decision: DeadLetter, topic: str | None) -> None:
        fields.update(reason=decision.reason)
        if topic is not None:
            fields.update(outcome="deadlettered", deadLetterTopic=topic)
            where = f"dead-lettered to {topic}"
        else:
            fields.update(outcome="dropped")
            where = "dropped (no dead-letter topic can take it)"
        log.log(
            logging.WARNING if topic is not None else logging.ERROR,
            "%s: event %s %s after %d attempts (%s; %s)%s",
            self._subscription,
            fields["eventId"],
            where,
            fields["attempt"],
            decision.reason,
            fields.get("error"),
            _left_out(fields.get("suppressed", 0)),
            extra=fields,
        )


def _failure_fields(failure: Failure | None) -> dict[str, Any]:
    if failure is None:
        return {}
    status: int | str | None = failure.status
    if failure.status is not None and failure.status.isascii() and failure.status.isdigit():
        status = int(failure.status)
    return {"status": status, "error": (failure.error or "")[:MAX_DL_ERROR] or None}


def _identity(payload: bytes | None) -> tuple[str | None, str | None]:
    """The stored event's id and source; None for what cannot be read (a poison event)."""
    if payload is None:
        return None, None
    try:
        document = orjson.loads(payload)
        return str(document["id"]), str(document["source"])
    except (ValueError, TypeError, KeyError):
        return None, None


def _left_out(suppressed: int) -> str:
    return f" ({suppressed} similar lines left out)" if suppressed else ""
