"""Where a subscription delivers: an HTTP endpoint or an SQS queue, and with which secrets.

`build_target` turns a spec's `destination` into a frozen target when the subscription is saved:
URLs checked against the egress policy, secrets read from files (or taken inline, as Pretry
configs give them). Secrets stay out of `repr`; `redact` removes them from what is stored in
dead letters, and `mask_secrets` from every view of a spec (API, CLI): inline secrets are kept
in the store's meta table with the spec, so the data directory must be protected like the
Secret they would otherwise come from.
"""

from __future__ import annotations

import base64
import configparser
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gateway.config.settings import (
    ConfigError,
    RawHttpDestination,
    RawSqsDestination,
    RawSubscription,
)
from gateway.destinations.egress import EgressDenied, EgressPolicy, url_host
from gateway.destinations.signing import basic_authorization, load_signing_secrets, read_credential

HTTP_CONTENT_MODES = ("binary", "structured", "data")
SQS_CONTENT_MODES = ("structured", "data")
MASK = "[redacted]"
# botocore's own rule for a region name; AWS queue URLs name theirs in the host.
REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
AWS_QUEUE_HOST = re.compile(r"(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?")
# Fields of a spec that hold secrets: (destination kind, path under it).
SECRET_FIELDS = (
    ("http", ("basicAuth", "password")),
    ("sqs", ("accessKeyId",)),
    ("sqs", ("secretAccessKey",)),
)


def _redact(data: bytes, forms: list[bytes]) -> bytes:
    for secret in sorted((form for form in forms if len(form) >= 4), key=len, reverse=True):
        data = data.replace(secret, MASK.encode())
    return data


@dataclass(frozen=True, slots=True)
class HttpTarget:
    url: str
    content_mode: str
    # Secrets, read when the subscription is built; never in `spec` views or responses.
    authorization: str | None = field(default=None, repr=False)
    signing_secrets: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def egress_url(self) -> str:
        """The URL the egress policy applies to."""
        return self.url

    def redact(self, data: bytes) -> bytes:
        """`data` (a subscriber's answer) without this target's credentials in it, in case
        the subscriber echoes them: what is stored in dead letters must not carry secrets."""
        forms: list[bytes] = []
        if self.authorization:
            credential = self.authorization.split(" ", 1)[-1].encode()
            forms.append(credential)
            if self.authorization.startswith("Basic "):
                forms.append(base64.b64decode(credential).split(b":", 1)[-1])
        forms.extend(base64.b64encode(secret) for secret in self.signing_secrets)
        return _redact(data, forms)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SqsTarget:
    queue_url: str
    region: str
    content_mode: str
    endpoint_url: str | None = None
    credentials: AwsCredentials | None = field(default=None, repr=False)  # None: default chain

    @property
    def egress_url(self) -> str | None:
        """The URL the egress policy applies to (AWS's own endpoints are resolved and checked
        where the connection is made)."""
        return self.endpoint_url

    def redact(self, data: bytes) -> bytes:
        """An SQS error text without the keys (a signature error may quote the key id)."""
        credentials = self.credentials
        if credentials is None:
            return data
        forms = [credentials.access_key_id, credentials.secret_access_key]
        forms += [credentials.session_token] if credentials.session_token else []
        return _redact(data, [form.encode() for form in forms])


Target = HttpTarget | SqsTarget


def build_target(raw: RawSubscription, path: str, egress: EgressPolicy) -> Target:
    """The target of `raw`'s destination; `path` is the subscription's key path."""
    destination = raw.destination
    where = f"{path}.destination"
    if (destination.http is None) == (destination.sqs is None):
        raise ConfigError(
            f"{where}: set exactly one of http: {{url: ...}} or sqs: {{queueUrl: ...}}"
        )
    if destination.sqs is not None:
        if raw.signing is not None:
            raise ConfigError(f"{path}.signing: signing applies to http destinations only")
        return _sqs_target(destination.sqs, f"{where}.sqs", egress)
    http = destination.http
    assert http is not None
    _check_mode(http.content_mode, HTTP_CONTENT_MODES, f"{where}.http.contentMode")
    _check_egress(http.url, f"{where}.http.url", egress)
    return HttpTarget(
        http.url,
        http.content_mode,
        authorization=_authorization(http, f"{where}.http"),
        signing_secrets=_signing(raw, path),
    )


def _check_egress(url: str, path: str, egress: EgressPolicy) -> None:
    try:
        egress.check_url(url)
    except EgressDenied as error:  # also a malformed URL
        raise ConfigError(f"{path}: {error}") from None


def _check_mode(mode: str, allowed: tuple[str, ...], path: str) -> None:
    if mode not in allowed:
        raise ConfigError(f"{path}: {mode!r} is not one of {', '.join(allowed)}")


def _authorization(http: RawHttpDestination, path: str) -> str | None:
    if http.bearer_token_file and http.basic_auth:
        raise ConfigError(f"{path}: set bearerTokenFile or basicAuth, not both")
    if http.bearer_token_file:
        token = read_credential(http.bearer_token_file, f"{path}.bearerTokenFile")
        return f"Bearer {token}"
    if http.basic_auth is None:
        return None
    basic = http.basic_auth
    if (basic.password is None) == (basic.password_file is None):
        raise ConfigError(f"{path}.basicAuth: set exactly one of passwordFile or password")
    password = basic.password
    if basic.password_file is not None:
        password = read_credential(basic.password_file, f"{path}.basicAuth.passwordFile")
    assert password is not None
    return basic_authorization(basic.username, password)


def _signing(raw: RawSubscription, path: str) -> tuple[bytes, ...]:
    if raw.signing is None:
        return ()
    return load_signing_secrets(raw.signing.secret_file, f"{path}.signing.secretFile")


def _sqs_target(sqs: RawSqsDestination, path: str, egress: EgressPolicy) -> SqsTarget:
    _check_mode(sqs.content_mode, SQS_CONTENT_MODES, f"{path}.contentMode")
    try:
        url_host(sqs.queue_url)
    except EgressDenied as error:
        raise ConfigError(f"{path}.queueUrl: {error}") from None
    if sqs.endpoint_url is not None:
        _check_egress(sqs.endpoint_url, f"{path}.endpointUrl", egress)
    return SqsTarget(
        queue_url=sqs.queue_url,
        region=_region(sqs, path),
        content_mode=sqs.content_mode,
        endpoint_url=sqs.endpoint_url,
        credentials=_aws_credentials(sqs, path),
    )


def queue_url_region(url: str) -> str | None:
    """The region an AWS queue URL names (https://sqs.eu-west-1.amazonaws.com/...)."""
    match = AWS_QUEUE_HOST.fullmatch((urlsplit(url).hostname or "").lower())
    return None if match is None else match.group(1) or match.group(2)


def _region(sqs: RawSqsDestination, path: str) -> str:
    region = sqs.region or queue_url_region(sqs.queue_url)
    if region is None:
        raise ConfigError(f"{path}.region: set the queue's region, e.g. eu-west-1")
    if not REGION.fullmatch(region):
        raise ConfigError(f"{path}.region: {region!r} is not a region name, e.g. eu-west-1")
    return region


def _aws_credentials(sqs: RawSqsDestination, path: str) -> AwsCredentials | None:
    inline = (sqs.access_key_id, sqs.secret_access_key)
    if sqs.credentials_file is not None:
        if inline != (None, None):
            raise ConfigError(
                f"{path}: set credentialsFile or accessKeyId/secretAccessKey, not both"
            )
        return _credentials_file(sqs.credentials_file, f"{path}.credentialsFile")
    if inline == (None, None):
        return None
    if sqs.access_key_id is None or sqs.secret_access_key is None:
        missing = "accessKeyId" if sqs.access_key_id is None else "secretAccessKey"
        raise ConfigError(f"{path}.{missing}: set accessKeyId and secretAccessKey together")
    if not sqs.access_key_id or not sqs.secret_access_key:
        empty = "accessKeyId" if not sqs.access_key_id else "secretAccessKey"
        raise ConfigError(f"{path}.{empty}: must not be empty")
    return AwsCredentials(sqs.access_key_id, sqs.secret_access_key)


def _credentials_file(filename: str, path: str) -> AwsCredentials:
    """An AWS shared-credentials file: profile `[default]` (or its only profile) with
    aws_access_key_id, aws_secret_access_key and optionally aws_session_token."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(read_credential(filename, path))
    except configparser.Error:
        raise ConfigError(f"{path}: {filename} is not an AWS credentials file (INI)") from None
    sections = parser.sections()
    name = "default" if "default" in sections else (sections[0] if len(sections) == 1 else None)
    if name is None:
        raise ConfigError(f"{path}: {filename} needs a [default] profile")
    profile = parser[name]
    key_id = profile.get("aws_access_key_id", "").strip()
    secret = profile.get("aws_secret_access_key", "").strip()
    if not key_id or not secret:
        raise ConfigError(
            f"{path}: {filename} must set aws_access_key_id and aws_secret_access_key"
        )
    return AwsCredentials(key_id, secret, profile.get("aws_session_token", "").strip() or None)


def mask_secrets(spec: dict[str, Any]) -> dict[str, Any]:
    """A subscription spec (builtins) with its inline secrets replaced by MASK, for views."""
    destination = spec.get("destination")
    if not isinstance(destination, dict):
        return spec
    for kind, keys in SECRET_FIELDS:
        holder = destination.get(kind)
        for key in keys[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and holder.get(keys[-1]) is not None:
            holder[keys[-1]] = MASK
    return spec
