"""Outbound signing (Standard Webhooks) and destination credentials: pure functions.

A signed push carries `webhook-id` (stable across every retry of one event to one
subscription, so subscribers can deduplicate), `webhook-timestamp` (this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. During key rotation the
secret file holds two secrets and both signatures are sent, space-separated. Secrets are
`whsec_` + base64 of at least 24 random bytes, read from files (a Kubernetes Secret mount);
they are never logged, exposed by the API, or copied into dead letters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from gateway.config.settings import ConfigError

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24


def load_signing_secrets(path: str, key: str) -> tuple[bytes, ...]:
    """The secrets in the file at `path` (one, or two during rotation), decoded."""
    text = _read(path, key)
    secrets = tuple(_decode_secret(word, key) for word in text.split())
    if not 1 <= len(secrets) <= 2:
        raise ConfigError(f"{key}: {path} must hold one secret, or two while rotating keys")
    return secrets


def _decode_secret(word: str, key: str) -> bytes:
    if not word.startswith(SECRET_PREFIX):
        raise ConfigError(
            f"{key}: a signing secret starts with {SECRET_PREFIX} (Standard Webhooks)"
        )
    try:
        secret = base64.b64decode(word[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ConfigError(f"{key}: a signing secret is {SECRET_PREFIX} + base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{key}: a signing secret must hold at least 24 random bytes")
    return secret


def read_credential(path: str, key: str) -> str:
    return _read(path, key).strip()


def _read(path: str, key: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{key}: cannot read {path}: {reason}") from None


def webhook_id(subscription: str, source: str, event_id: str) -> str:
    """The same for every attempt of one event to one subscription, across restarts."""
    digest = hashlib.sha256("\0".join((subscription, source, event_id)).encode()).digest()
    return "msg_" + base64.b32encode(digest[:20]).decode().rstrip("=").lower()


def signature_headers(
    secrets: tuple[bytes, ...], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
        for secret in secrets
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
