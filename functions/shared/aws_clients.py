"""boto3 clients with short timeouts and bounded retries, for every AWS call Flux makes (Lambdas and CLI).

botocore's defaults (60 s connect, 60 s read, legacy retries) would let one slow
DynamoDB or SQS call eat a whole Lambda timeout in front of a user's request. Each
client here fails within a few seconds and retries at most a few times with
botocore's ``standard`` mode (jittered backoff, throttling-aware). Endpoints are never
set here: boto3 reads ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` itself,
which is how the deployed test tier points the code at its emulators.
"""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5
MAX_ATTEMPTS = 3
# Invoking the engine Lambda may run a migration: its read timeout is that function's own limit.
LONG_READ_TIMEOUT_S = 305


def config(*, read_timeout_s: float = READ_TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS) -> Any:
    """The botocore ``Config`` every Flux client uses: short connect/read timeouts, a bounded retry budget."""
    from botocore.config import Config

    return Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=read_timeout_s,
                  retries={"max_attempts": max_attempts, "mode": "standard"})


def client(service: str, *, read_timeout_s: float = READ_TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS,
           region: str | None = None) -> Any:
    """A boto3 client for ``service`` with Flux's timeouts and retry budget."""
    import boto3

    return boto3.client(service, config=config(read_timeout_s=read_timeout_s, max_attempts=max_attempts),
                        region_name=region)


def session_client(session: Any, service: str, *, region: str | None = None,
                   read_timeout_s: float = READ_TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS) -> Any:
    """The same, from an explicit ``boto3.session.Session`` (the CLI's preflight and deploy use the caller's
    profile and region)."""
    return session.client(service, region_name=region,
                          config=config(read_timeout_s=read_timeout_s, max_attempts=max_attempts))


class LazyClient:
    """A :func:`client` created on its first use, for clients a Lambda may never need.

    Creating a boto3 client loads its service model (tens to hundreds of ms on a cold
    start); a runtime Lambda whose function never reads a secret, or whose request was
    denied, should not pay that. Attribute access builds the client once and delegates.
    """

    def __init__(self, service: str, **options: Any) -> None:
        self._service = service
        self._options = options
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._client is None:
            self._client = client(self._service, **self._options)
        return getattr(self._client, name)
