"""What one push attempt's result means, and what the store records next.

Classification turns an HTTP status or a transport error into a `Verdict` (ack, retry or give
up); `decide` combines that verdict with the attempt count, the next delay and the retention
deadline into the `Decision` the delivery engine persists. Both are pure so the retry rules can
be tested as tables, separately from HTTP and storage.

Status rules follow Knative's data-plane spec: 404 and 409 are retried because they happen while
a target rolls out, as are 408, 429 and every 5xx; other 4xx are permanent. Pub/Sub push differs:
it retries every non-ack response. Redirects are never followed, so a 3xx is a failed attempt.

SQS answers with error codes rather than statuses: `classify_sqs_error` names the kind
(`sqs-throttled`, `sqs-access-denied`, ...), which is what a dead letter's `dlstatus` shows.
Throttling, server errors and unknown codes are retried; a denied access, a missing queue and
an invalid request will not change by waiting, so they are permanent.

`delivery_code` maps an attempt's result to the bounded `code` label of the deliveries metric.
A push the gateway could not build (`invalid-event`, issue 19) is an unknown error kind to
`classify_error`, so it is retried with backoff like any failure, then dead-lettered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias


class Verdict(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    PERMANENT = "permanent"


_RETRIED_4XX = frozenset({404, 408, 409, 429})
DEFAULT_PERMANENT_STATUS: frozenset[int] = frozenset(range(400, 500)) - _RETRIED_4XX

SQS_THROTTLED = "sqs-throttled"
SQS_SERVER_ERROR = "sqs-server-error"
SQS_ACCESS_DENIED = "sqs-access-denied"
SQS_QUEUE_MISSING = "sqs-queue-missing"
SQS_INVALID = "sqs-invalid"
SQS_CREDENTIALS = "sqs-credentials"  # none found in the default chain (yet)
SQS_ERROR = "sqs-error"  # an error code we do not know

_ERROR_VERDICTS: dict[str, Verdict] = {
    "timeout": Verdict.RETRY,
    "connect": Verdict.RETRY,
    "tls": Verdict.RETRY,
    "protocol": Verdict.RETRY,
    "egress-denied": Verdict.PERMANENT,
    "invalid-request": Verdict.PERMANENT,
    SQS_THROTTLED: Verdict.RETRY,
    SQS_SERVER_ERROR: Verdict.RETRY,
    SQS_CREDENTIALS: Verdict.RETRY,
    SQS_ERROR: Verdict.RETRY,
    SQS_ACCESS_DENIED: Verdict.PERMANENT,
    SQS_QUEUE_MISSING: Verdict.PERMANENT,
    SQS_INVALID: Verdict.PERMANENT,
}

_SQS_CODES: dict[str, str] = {
    **dict.fromkeys(
        (
            "Throttling",
            "ThrottlingException",
            "RequestThrottled",
            "TooManyRequestsException",
            "SlowDown",
            "KmsThrottled",
            "RequestLimitExceeded",
        ),
        SQS_THROTTLED,
    ),
    **dict.fromkeys(
        (
            "AccessDenied",
            "AccessDeniedException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "SignatureDoesNotMatch",
            "MissingAuthenticationToken",
            "IncompleteSignature",
            "InvalidSecurity",
            "OptInRequired",
            "KmsAccessDenied",
            "KmsDisabled",
            "KmsInvalidState",
            "KmsNotFound",
        ),
        SQS_ACCESS_DENIED,
    ),
    **dict.fromkeys(("NonExistentQueue", "QueueDoesNotExist"), SQS_QUEUE_MISSING),
    **dict.fromkeys(
        (
            "InvalidParameterValue",
            "InvalidParameterValueException",
            "InvalidParameterCombination",
            "MissingParameter",
            "InvalidMessageContents",
            "MessageTooLong",
            "BatchRequestTooLong",
            "InvalidAddress",
            "InvalidAction",
            "UnsupportedOperation",
            "ValidationError",
            "ValidationException",
            "InvalidBatchEntryId",
            "BatchEntryIdsNotDistinct",
            "EmptyBatchRequest",
            "TooManyEntriesInBatchRequest",
        ),
        SQS_INVALID,
    ),
    **dict.fromkeys(
        ("InternalError", "InternalFailure", "ServiceUnavailable", "KmsUnavailable"),
        SQS_SERVER_ERROR,
    ),
}


def classify_status(status: int, permanent_codes: frozenset[int] | None = None) -> Verdict:
    """The verdict for an HTTP response status.

    `permanent_codes` (a per-subscription override) replaces `DEFAULT_PERMANENT_STATUS`: a 4xx
    in it is permanent, any other 4xx is retried. Only 4xx codes can be permanent.
    """
    if status == 102 or 200 <= status <= 299:
        return Verdict.ACK
    permanent = DEFAULT_PERMANENT_STATUS if permanent_codes is None else permanent_codes
    if 400 <= status <= 499 and status in permanent:
        return Verdict.PERMANENT
    return Verdict.RETRY


def classify_error(kind: str) -> Verdict:
    """The verdict for a transport error kind ("timeout", "egress-denied", ...); unknown retries."""
    return _ERROR_VERDICTS.get(kind, Verdict.RETRY)


def classify_sqs_error(
    code: str, status: int | None = None, sender_fault: bool | None = None
) -> str:
    """The error kind for an SQS error `code` (either protocol's spelling: the query one,
    `AWS.SimpleQueueService.NonExistentQueue`, or the JSON one, `com.amazonaws.sqs#...`), with
    the HTTP status of the call and, for a batch entry, whether SQS blamed the sender."""
    name = code.rsplit("#", 1)[-1].removeprefix("AWS.SimpleQueueService.")
    known = _SQS_CODES.get(name)
    if known is not None:
        return known
    if status == 429:
        return SQS_THROTTLED
    if (status is not None and status >= 500) or sender_fault is False:
        return SQS_SERVER_ERROR
    if sender_fault:
        return SQS_INVALID
    return SQS_ERROR


# The `code` label of cegateway_deliveries_total (DESIGN "Delivery visibility"): a fixed set,
# whatever statuses and error kinds come back, so the series stay bounded.
DELIVERY_CODES: Final = ("2xx", "3xx", "4xx", "5xx", "timeout", "connect", "egress", "other")
_STATUS_CLASSES: Final = {2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_ERROR_CODES: Final = {
    "timeout": "timeout",
    "connect": "connect",
    "tls": "connect",  # the connection could not be set up (its handshake failed)
    "egress-denied": "egress",
}
INTERNAL_ERROR: Final = "invalid-event"  # the push could not be built from the stored event


def delivery_code(status: int | None, error: str | None) -> str:
    """The `code` label for an attempt's HTTP status, or (no status) its error kind.
    A 1xx (102 acks), an SQS error code and a failure inside the gateway are `other`."""
    if status is not None:
        return _STATUS_CLASSES.get(status // 100, "other")
    return _ERROR_CODES.get(error or "", "other")


DeadLetterReason: TypeAlias = Literal["exhausted", "permanent", "expired"]


@dataclass(frozen=True, slots=True)
class Ack:
    """The target accepted the event; delivery is done."""


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at `due` (epoch seconds on the scheduling clock)."""

    due: float
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Stop delivering and dead-letter the event."""

    reason: DeadLetterReason


Decision: TypeAlias = Ack | RetryAt | DeadLetter


def _decide_retry(
    *, attempts: int, max_attempts: int | None, now: float, delay: float, expires_at: float
) -> Decision:
    if max_attempts is not None and attempts >= max_attempts:
        return DeadLetter("exhausted")
    if now + delay >= expires_at:  # retention would end before the next attempt could run
        return DeadLetter("expired")
    return RetryAt(due=now + delay, reason=f"attempt {attempts} failed; retry in {delay:g}s")


def decide(
    verdict: Verdict,
    *,
    attempts: int,
    max_attempts: int | None,
    now: float,
    delay: float,
    expires_at: float,
) -> Decision:
    """What to record after an attempt; `attempts` counts attempts made, including this one."""
    if verdict is Verdict.ACK:
        return Ack()
    if verdict is Verdict.PERMANENT:
        return DeadLetter("permanent")
    return _decide_retry(
        attempts=attempts,
        max_attempts=max_attempts,
        now=now,
        delay=delay,
        expires_at=expires_at,
    )
