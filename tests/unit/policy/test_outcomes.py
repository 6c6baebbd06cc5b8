"""Classification of push results and the decision recorded after each attempt."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.policy.outcomes import (
    DEFAULT_PERMANENT_STATUS,
    DELIVERY_CODES,
    INTERNAL_ERROR,
    Ack,
    DeadLetter,
    Decision,
    RetryAt,
    Verdict,
    classify_error,
    classify_sqs_error,
    classify_status,
    decide,
    delivery_code,
)

ACK, RETRY, PERMANENT = Verdict.ACK, Verdict.RETRY, Verdict.PERMANENT


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(100, RETRY, id="100-retries"),
        pytest.param(101, RETRY, id="101-retries"),
        pytest.param(102, ACK, id="102-processing-acks"),
        pytest.param(103, RETRY, id="103-retries"),
        pytest.param(200, ACK, id="200-acks"),
        pytest.param(201, ACK, id="201-acks"),
        pytest.param(202, ACK, id="202-acks"),
        pytest.param(204, ACK, id="204-acks"),
        pytest.param(299, ACK, id="299-acks"),
        pytest.param(301, RETRY, id="301-redirect-not-followed"),
        pytest.param(302, RETRY, id="302-redirect-not-followed"),
        pytest.param(304, RETRY, id="304-retries"),
        pytest.param(307, RETRY, id="307-redirect-not-followed"),
        pytest.param(400, PERMANENT, id="400-permanent"),
        pytest.param(401, PERMANENT, id="401-permanent"),
        pytest.param(403, PERMANENT, id="403-permanent"),
        pytest.param(404, RETRY, id="404-retries-rollout"),
        pytest.param(405, PERMANENT, id="405-permanent"),
        pytest.param(408, RETRY, id="408-retries"),
        pytest.param(409, RETRY, id="409-retries-rollout"),
        pytest.param(410, PERMANENT, id="410-permanent"),
        pytest.param(413, PERMANENT, id="413-permanent"),
        pytest.param(415, PERMANENT, id="415-permanent"),
        pytest.param(422, PERMANENT, id="422-permanent"),
        pytest.param(429, RETRY, id="429-retries"),
        pytest.param(499, PERMANENT, id="499-permanent"),
        pytest.param(500, RETRY, id="500-retries"),
        pytest.param(502, RETRY, id="502-retries"),
        pytest.param(503, RETRY, id="503-retries"),
        pytest.param(504, RETRY, id="504-retries"),
        pytest.param(599, RETRY, id="599-retries"),
        pytest.param(600, RETRY, id="600-retries"),
        pytest.param(999, RETRY, id="999-retries"),
        pytest.param(0, RETRY, id="0-retries"),
    ],
)
def test_classify_status_default(status: int, expected: Verdict) -> None:
    assert classify_status(status) is expected


def test_default_permanent_set_is_4xx_minus_retried() -> None:
    assert frozenset(range(400, 500)) - DEFAULT_PERMANENT_STATUS == {404, 408, 409, 429}
    assert DEFAULT_PERMANENT_STATUS <= frozenset(range(400, 500))
    assert len(DEFAULT_PERMANENT_STATUS) == 96


@pytest.mark.parametrize(
    ("status", "codes", "expected"),
    [
        pytest.param(400, frozenset({400, 404}), PERMANENT, id="listed-400-permanent"),
        pytest.param(404, frozenset({400, 404}), PERMANENT, id="listed-404-permanent"),
        pytest.param(401, frozenset({400, 404}), RETRY, id="unlisted-401-retries"),
        pytest.param(429, frozenset({400, 404}), RETRY, id="unlisted-429-retries"),
        pytest.param(400, frozenset(), RETRY, id="empty-set-retries-all-4xx"),
        pytest.param(503, frozenset({503}), RETRY, id="5xx-never-permanent"),
        pytest.param(301, frozenset({301}), RETRY, id="3xx-never-permanent"),
        pytest.param(200, frozenset({200}), ACK, id="2xx-still-acks"),
        pytest.param(102, frozenset({102}), ACK, id="102-still-acks"),
    ],
)
def test_classify_status_override(status: int, codes: frozenset[int], expected: Verdict) -> None:
    assert classify_status(status, codes) is expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("timeout", RETRY, id="timeout-retries"),
        pytest.param("connect", RETRY, id="connect-retries"),
        pytest.param("tls", RETRY, id="tls-retries"),
        pytest.param("protocol", RETRY, id="protocol-retries"),
        pytest.param("egress-denied", PERMANENT, id="egress-denied-permanent"),
        pytest.param("invalid-request", PERMANENT, id="invalid-request-permanent"),
        pytest.param("something-new", RETRY, id="unknown-retries"),
        pytest.param("", RETRY, id="empty-retries"),
        pytest.param("EGRESS-DENIED", RETRY, id="case-sensitive"),
    ],
)
def test_classify_error(kind: str, expected: Verdict) -> None:
    assert classify_error(kind) is expected


NOW = 1_000.0
EXPIRES = 2_000.0


@pytest.mark.parametrize(
    ("verdict", "attempts", "max_attempts", "delay", "expected"),
    [
        pytest.param(ACK, 1, 5, 10.0, Ack(), id="ack"),
        pytest.param(ACK, 5, 5, 5_000.0, Ack(), id="ack-even-when-exhausted-or-expired"),
        pytest.param(PERMANENT, 1, 5, 10.0, DeadLetter("permanent"), id="permanent-first"),
        pytest.param(PERMANENT, 1, None, 10.0, DeadLetter("permanent"), id="permanent-no-max"),
        pytest.param(RETRY, 5, 5, 10.0, DeadLetter("exhausted"), id="retry-at-max-exhausted"),
        pytest.param(RETRY, 6, 5, 10.0, DeadLetter("exhausted"), id="retry-past-max-exhausted"),
        pytest.param(RETRY, 5, 5, 5_000.0, DeadLetter("exhausted"), id="exhausted-before-expired"),
        pytest.param(RETRY, 1, 1, 10.0, DeadLetter("exhausted"), id="max-one-no-retry"),
        pytest.param(RETRY, 2, 5, 1_000.0, DeadLetter("expired"), id="due-equals-expiry-expired"),
        pytest.param(RETRY, 2, None, 5_000.0, DeadLetter("expired"), id="due-past-expiry-expired"),
    ],
)
def test_decide_terminal(
    verdict: Verdict, attempts: int, max_attempts: int | None, delay: float, expected: Decision
) -> None:
    decision = decide(
        verdict,
        attempts=attempts,
        max_attempts=max_attempts,
        now=NOW,
        delay=delay,
        expires_at=EXPIRES,
    )
    assert decision == expected


@pytest.mark.parametrize(
    ("attempts", "max_attempts", "delay", "due"),
    [
        pytest.param(1, 5, 10.0, 1_010.0, id="first-retry"),
        pytest.param(4, 5, 10.0, 1_010.0, id="one-below-max"),
        pytest.param(1_000, None, 10.0, 1_010.0, id="no-max-unbounded"),
        pytest.param(2, 5, 999.5, 1_999.5, id="just-before-expiry"),
        pytest.param(2, 5, 0.0, 1_000.0, id="zero-delay"),
    ],
)
def test_decide_retry(attempts: int, max_attempts: int | None, delay: float, due: float) -> None:
    decision = decide(
        RETRY,
        attempts=attempts,
        max_attempts=max_attempts,
        now=NOW,
        delay=delay,
        expires_at=EXPIRES,
    )
    assert isinstance(decision, RetryAt)
    assert decision.due == due
    assert decision.reason
    assert len(decision.reason) <= 80
    assert str(attempts) in decision.reason


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(RetryAt(due=1.0, reason="x"), id="retry-at"),
        pytest.param(DeadLetter("expired"), id="dead-letter"),
    ],
)
def test_decisions_are_frozen(value: RetryAt | DeadLetter) -> None:
    field = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)


def test_decisions_compare_by_value() -> None:
    assert Ack() == Ack()
    assert DeadLetter("permanent") != DeadLetter("expired")
    assert RetryAt(1.0, "a") == RetryAt(1.0, "a")


@pytest.mark.parametrize(
    ("verdict", "value"),
    [
        pytest.param(ACK, "ack", id="ack"),
        pytest.param(RETRY, "retry", id="retry"),
        pytest.param(PERMANENT, "permanent", id="permanent"),
    ],
)
def test_verdict_values(verdict: Verdict, value: str) -> None:
    assert verdict.value == value
    assert Verdict(value) is verdict


@pytest.mark.parametrize(
    ("code", "status", "sender_fault", "kind", "verdict"),
    [
        pytest.param("ThrottlingException", 400, None, "sqs-throttled", RETRY, id="throttling"),
        pytest.param(
            "AWS.SimpleQueueService.RequestThrottled",
            None,
            False,
            "sqs-throttled",
            RETRY,
            id="throttled-entry",
        ),
        pytest.param("Anything", 429, None, "sqs-throttled", RETRY, id="429"),
        pytest.param("InternalError", 500, None, "sqs-server-error", RETRY, id="internal"),
        pytest.param("Whatever", 503, None, "sqs-server-error", RETRY, id="unknown-5xx"),
        pytest.param("Whatever", None, False, "sqs-server-error", RETRY, id="entry-not-sender"),
        pytest.param("AccessDenied", 403, None, "sqs-access-denied", PERMANENT, id="denied"),
        pytest.param(
            "InvalidClientTokenId", 403, None, "sqs-access-denied", PERMANENT, id="bad-key"
        ),
        pytest.param(
            "AWS.SimpleQueueService.NonExistentQueue",
            400,
            None,
            "sqs-queue-missing",
            PERMANENT,
            id="missing-queue-query",
        ),
        pytest.param(
            "com.amazonaws.sqs#QueueDoesNotExist",
            400,
            None,
            "sqs-queue-missing",
            PERMANENT,
            id="missing-queue-json",
        ),
        pytest.param(
            "InvalidParameterValue", 400, None, "sqs-invalid", PERMANENT, id="invalid-parameter"
        ),
        pytest.param("InvalidMessageContents", None, True, "sqs-invalid", PERMANENT, id="content"),
        pytest.param("Whatever", None, True, "sqs-invalid", PERMANENT, id="entry-sender-fault"),
        pytest.param("Whatever", 400, None, "sqs-error", RETRY, id="unknown-4xx-retries"),
    ],
)
def test_sqs_errors_map_to_kinds_and_verdicts(
    code: str, status: int | None, sender_fault: bool | None, kind: str, verdict: Verdict
) -> None:
    assert classify_sqs_error(code, status, sender_fault) == kind
    assert classify_error(kind) is verdict


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        pytest.param(200, None, "2xx", id="200"),
        pytest.param(204, None, "2xx", id="204"),
        pytest.param(299, None, "2xx", id="299"),
        pytest.param(102, None, "other", id="102-acks-but-is-no-2xx"),
        pytest.param(302, None, "3xx", id="302-not-followed"),
        pytest.param(404, None, "4xx", id="404-retried"),
        pytest.param(422, None, "4xx", id="422-permanent"),
        pytest.param(429, None, "4xx", id="429"),
        pytest.param(500, None, "5xx", id="500"),
        pytest.param(503, None, "5xx", id="503"),
        pytest.param(599, None, "5xx", id="599"),
        pytest.param(600, None, "other", id="600-out-of-range"),
        pytest.param(99, None, "other", id="99-out-of-range"),
        pytest.param(None, "timeout", "timeout", id="timeout"),
        pytest.param(None, "connect", "connect", id="connect"),
        pytest.param(None, "tls", "connect", id="tls-handshake"),
        pytest.param(None, "egress-denied", "egress", id="egress-denied"),
        pytest.param(None, "protocol", "other", id="protocol"),
        pytest.param(None, "invalid-request", "other", id="invalid-request"),
        pytest.param(None, INTERNAL_ERROR, "other", id="push-not-built"),
        pytest.param(None, "sqs-throttled", "other", id="sqs-error"),
        pytest.param(None, "no-such-kind", "other", id="unknown-kind"),
        pytest.param(None, None, "other", id="nothing"),
    ],
)
def test_delivery_code_label(status: int | None, error: str | None, code: str) -> None:
    assert delivery_code(status, error) == code
    assert code in DELIVERY_CODES


def test_a_push_the_gateway_could_not_build_is_retried_like_any_failure() -> None:
    """Issue 19: not given up at once (nor left pending): backoff, then dead-lettered."""
    assert classify_error(INTERNAL_ERROR) is Verdict.RETRY
