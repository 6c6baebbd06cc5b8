"""A real SQS-compatible server for tests: moto in server mode on 127.0.0.1 (a Werkzeug server
in a thread), and boto3 as the independent client that creates queues and reads them back."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "eu-west-1"
KEYS = {"aws_access_key_id": "AKIDTESTING0000", "aws_secret_access_key": "moto-secret-testing"}
_names = itertools.count()


@dataclass
class SqsServer:
    endpoint: str
    client: Any = field(repr=False)

    def create_queue(self, prefix: str = "q", **attributes: str) -> str:
        """A new queue with a name no other test uses; returns its URL."""
        name = f"{prefix}-{next(_names)}"
        return str(self.client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])

    def missing_queue_url(self) -> str:
        return f"{self.endpoint}/123456789012/no-such-queue-{next(_names)}"

    def receive_all(self, queue_url: str) -> list[str]:
        """Every message body in the queue (each read once: they stay invisible after)."""
        bodies: list[str] = []
        while True:
            answer = self.client.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600
            )
            messages = answer.get("Messages", [])
            if not messages:
                return bodies
            bodies.extend(message["Body"] for message in messages)


@contextlib.contextmanager
def run_sqs_server() -> Iterator[SqsServer]:
    from moto.server import ThreadedMotoServer  # imported here: only SQS tests pay for it

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint, **KEYS)
    try:
        yield SqsServer(endpoint, client)
    finally:
        client.close()
        server.stop()
