"""SQS destinations: each push becomes one message, sent with aiobotocore.

One client per (region, endpoint, credentials), created at first use in the running loop and
closed at shutdown. Clients connect through the egress `PolicyResolver`, so an `endpointUrl`
is checked on the address actually connected to, as HTTP pushes are (a literal address is
checked before sending). botocore's own retries are off: the gateway's retry policy decides.

Pushes to one queue that come due together (the engine launches a lane's due deliveries at
once) are gathered for a few milliseconds into SendMessageBatch calls of up to 10 entries. Each
entry's outcome, or the call's error, becomes a `PushResult`: 200 for a sent message, else an
error kind from `gateway.policy.outcomes.classify_sqs_error` or a transport kind (`timeout`,
`connect`, `tls`, `egress-denied`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore import exceptions as boto

from gateway.delivery.pushes import PushRequest, PushResult
from gateway.destinations.egress import (
    EgressDenied,
    EgressDeniedError,
    EgressPolicy,
    PolicyResolver,
)
from gateway.destinations.targets import AwsCredentials, SqsTarget
from gateway.policy.outcomes import SQS_CREDENTIALS, SQS_INVALID, classify_sqs_error

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger("gateway.sqs")
# botocore logs whole requests at DEBUG (the access key id in headers, event data in bodies);
# the gateway's logs carry neither (gateway.logs), whatever the level.
for _name in ("botocore", "aiobotocore"):
    logging.getLogger(_name).setLevel(logging.INFO)
MAX_BATCH = 10  # SendMessageBatch entries per call
MAX_BATCH_BYTES = 256 * 1024  # what one call may carry in all (SQS's classic limit)
LINGER = 0.005  # how long a send waits for company
SENT = PushResult(200, None, None, b"", None)


@dataclass(frozen=True, slots=True)
class ClientKey:
    region: str
    endpoint_url: str | None
    credentials: AwsCredentials | None


@dataclass(slots=True)
class Entry:
    body: str
    future: asyncio.Future[PushResult]

    @property
    def size(self) -> int:
        return len(self.body.encode())


def message_body(request: PushRequest) -> str:
    """SQS bodies are text: the push body as UTF-8, or base64 when it is not text."""
    try:
        return request.body.decode()
    except UnicodeDecodeError:
        return base64.b64encode(request.body).decode()


def take_batch(pending: list[Entry]) -> list[Entry]:
    """The first entries of `pending` that fit one call (at least one, however large)."""
    batch: list[Entry] = []
    size = 0
    for entry in pending[:MAX_BATCH]:
        if batch and size + entry.size > MAX_BATCH_BYTES:
            break
        batch.append(entry)
        size += entry.size
    return batch


def error_result(error: BaseException) -> PushResult:
    """A failed SendMessageBatch call, as the outcome every entry of it gets."""
    if isinstance(error, boto.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", "Unknown"))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        kind = classify_sqs_error(code, status if isinstance(status, int) else None)
        return PushResult.failed(kind, f"{code}: {details.get('Message', '')}")
    return PushResult.failed(_transport_kind(error), f"{error.__class__.__name__}: {error}")


def _transport_kind(error: BaseException) -> str:
    if _egress_denied(error):
        return "egress-denied"
    if isinstance(error, boto.NoCredentialsError | boto.CredentialRetrievalError):
        return SQS_CREDENTIALS
    if isinstance(error, boto.ConnectTimeoutError | boto.ReadTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(error, boto.SSLError):
        return "tls"
    if isinstance(error, boto.EndpointConnectionError | boto.ConnectionClosedError):
        return "connect"
    if isinstance(error, boto.ParamValidationError | boto.PartialCredentialsError | ValueError):
        return SQS_INVALID  # a request SQS would refuse as it is (or a bad region, endpoint)
    return "protocol"


def _egress_denied(error: BaseException) -> bool:
    """Whether the egress resolver refused the endpoint, wherever botocore wrapped it."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, EgressDeniedError):
            return True
        kwargs = getattr(current, "kwargs", None)
        inner = kwargs.get("error") if isinstance(kwargs, dict) else None
        stack += [current.__cause__, current.__context__, getattr(current, "os_error", None)]
        stack.append(inner)
    return False


def entry_result(failure: Any) -> PushResult:
    """A SendMessageBatch `Failed` entry as a push outcome."""
    code = str(failure.get("Code", "Unknown"))
    kind = classify_sqs_error(code, sender_fault=bool(failure.get("SenderFault")))
    return PushResult.failed(kind, f"{code}: {failure.get('Message', '')}")


@dataclass
class QueueBatcher:
    """Gathers sends to one queue; flushes when 10 are waiting or `linger` has passed."""

    client: SQSClient
    queue_url: str
    linger: float
    pending: list[Entry] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None

    def submit(self, body: str) -> asyncio.Future[PushResult]:
        future: asyncio.Future[PushResult] = asyncio.get_running_loop().create_future()
        self.pending.append(Entry(body, future))
        if len(self.pending) >= MAX_BATCH:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.linger, self.flush)
        return future

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while self.pending:
            batch = take_batch(self.pending)
            del self.pending[: len(batch)]
            task = asyncio.create_task(self._send(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, batch: list[Entry]) -> None:
        live = [entry for entry in batch if not entry.future.done()]  # timed out meanwhile
        if not live:
            return
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "MessageBody": entry.body} for index, entry in enumerate(live)
        ]
        try:
            answer = await self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as error:
            if not isinstance(error, boto.BotoCoreError | boto.ClientError):
                log.warning("SQS send failed unexpectedly (%s)", error.__class__.__name__)
            _settle(live, {}, error_result(error))
            return
        results = {ok["Id"]: SENT for ok in answer.get("Successful", [])}
        results.update({bad["Id"]: entry_result(bad) for bad in answer.get("Failed", [])})
        _settle(live, results, PushResult.failed("protocol", "no result for this entry"))

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        _settle(self.pending, {}, PushResult.failed("connect", "the gateway is shutting down"))


def _settle(entries: list[Entry], results: dict[str, PushResult], default: PushResult) -> None:
    for index, entry in enumerate(entries):
        if not entry.future.done():
            entry.future.set_result(results.get(str(index), default))


class SqsSink:
    def __init__(
        self, policy: EgressPolicy, resolver: PolicyResolver, linger: float = LINGER
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self._linger = linger
        self._session: AioSession | None = None
        self._clients: dict[ClientKey, SQSClient] = {}
        self._batchers: dict[tuple[ClientKey, str], QueueBatcher] = {}
        self._lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        """Nothing connects yet: clients are made at their first push."""

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()
        self._clients.clear()
        await self._stack.aclose()

    async def push(self, target: SqsTarget, request: PushRequest, deadline: float) -> PushResult:
        if target.endpoint_url is not None:
            try:
                self.policy.check_url(target.endpoint_url)  # literal addresses skip resolvers
            except EgressDenied as error:
                return PushResult.failed("egress-denied", str(error))
        try:
            async with asyncio.timeout(deadline):
                batcher = await self._batcher(target)
                return await batcher.submit(message_body(request))
        except TimeoutError:
            return PushResult.failed("timeout", f"no answer within {deadline:g}s")
        except (boto.BotoCoreError, ValueError) as error:  # the client could not be made
            return error_result(error)

    async def _batcher(self, target: SqsTarget) -> QueueBatcher:
        key = ClientKey(target.region, target.endpoint_url, target.credentials)
        batcher = self._batchers.get((key, target.queue_url))
        if batcher is None:
            client = await self._client(key)
            batcher = self._batchers.setdefault(
                (key, target.queue_url), QueueBatcher(client, target.queue_url, self._linger)
            )
        return batcher

    async def _client(self, key: ClientKey) -> SQSClient:
        async with self._lock:  # one client per key, however many pushes ask at once
            if key not in self._clients:
                created: SQSClient = await self._stack.enter_async_context(self._create(key))
                self._clients[key] = created
            return self._clients[key]

    def _create(self, key: ClientKey) -> Any:
        if self._session is None:
            self._session = get_session()
        credentials = key.credentials
        return self._session.create_client(
            "sqs",
            region_name=key.region,
            endpoint_url=key.endpoint_url,
            aws_access_key_id=credentials.access_key_id if credentials else None,
            aws_secret_access_key=credentials.secret_access_key if credentials else None,
            aws_session_token=credentials.session_token if credentials else None,
            config=AioConfig(
                connector_args={"resolver": self.resolver, "keepalive_timeout": 30},
                retries={"total_max_attempts": 1},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=64,
                user_agent_extra="ce-gateway",
            ),
        )
