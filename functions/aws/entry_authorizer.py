"""Lambda entry of the REQUEST authorizer: API keys, JWTs and rate limits for every function route.

Dependencies are built once per container, at import (Lambda's INIT phase, so the
first request does not wait for the project to load or for the DynamoDB client's
service model), from the environment (names in :mod:`functions.aws.names`):

* ``FLUX_PROJECT_DIR`` — the bundled project; default ``$LAMBDA_TASK_ROOT/project``;
* ``KEYS_TABLE`` — the API key table (:mod:`functions.gateway.keys_dynamodb`);
* ``RATE_LIMIT_TABLE`` — the rate-limit table (:mod:`functions.gateway.ratelimit_dynamodb`);
* ``FLUX_SECRETS_PREFIX`` — where the HS* JWT secret lives in Secrets Manager
  (default ``flux/<project name>/``), only read when ``auth.jwt.secret_name`` is set.

If building them fails (a bad bundle, a missing variable) INIT carries on and the request is refused
with the standard 503 body by the runtime (a soft deny, see
:func:`functions.gateway.authorizer.unavailable`) and the next event tries again:
an authorizer that cannot decide must fail closed. ``flux dev`` does not come
through here; it builds :class:`Authorizer` with the local adapters and calls the
same ``authorize``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from functions.aws import names
from functions.aws.bundle import project_root
from functions.gateway.authorizer import Authorizer, unavailable
from functions.gateway.jwt_auth import JwtVerifier
from functions.shared.manifest_bundle import load_packaged_project

_log = logging.getLogger("flux.aws.authorizer")
_authorizer: Authorizer | None = None
# The authorizer sits in front of every request, and its own Lambda timeout is short.
READ_TIMEOUT_S = 2


def build_authorizer(env: Mapping[str, str], *, dynamodb: Any | None = None,
                     secretsmanager: Any | None = None) -> Authorizer:
    """The AWS-shaped :class:`Authorizer`; clients are injectable for tests."""
    from functions.gateway.keys_dynamodb import DynamoApiKeyStore
    from functions.gateway.ratelimit_dynamodb import DynamoRateLimiter

    project = load_packaged_project(project_root(env))  # the bundle's pre-validated manifest
    if dynamodb is None:
        from functions.shared.aws_clients import client

        dynamodb = client("dynamodb", read_timeout_s=READ_TIMEOUT_S)
    keys = DynamoApiKeyStore(env[names.KEYS_TABLE], dynamodb)
    limiter = DynamoRateLimiter(env[names.RATE_LIMIT_TABLE], dynamodb)
    verifier = None
    jwt_config = project.config.auth.jwt
    if jwt_config is not None:
        secrets = None
        if jwt_config.secret_name:
            from functions.runtime.aws_secrets import SecretsManagerStore

            prefix = env.get(names.SECRETS_PREFIX) or f"flux/{project.config.name}/"
            if secretsmanager is None:
                from functions.shared.aws_clients import client

                secretsmanager = client("secretsmanager", read_timeout_s=READ_TIMEOUT_S)
            secrets = SecretsManagerStore(secretsmanager, prefix)
        verifier = JwtVerifier.from_config(jwt_config, secrets=secrets)
    return Authorizer(project, keys, limiter, verifier)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    global _authorizer
    if _authorizer is None:
        try:
            _authorizer = build_authorizer(os.environ)
        except Exception:  # noqa: BLE001 - cannot decide, so refuse (fail closed) and retry on the next event
            _log.exception("authorizer: cannot start; refusing")
            return unavailable()
    return _authorizer.authorize(event)


def prepare(env: Mapping[str, str] = os.environ) -> None:
    """Build the authorizer during INIT; on failure leave it to the first event (which fails closed)."""
    global _authorizer
    if not env.get(names.LAMBDA_RUNTIME_API):
        return  # imported outside a Lambda execution environment (tests, tooling)
    try:
        _authorizer = build_authorizer(env)
    except Exception:  # noqa: BLE001 - never crash INIT; handler() retries and refuses with 503
        _log.exception("authorizer: cannot start during INIT; the first event will retry")


def reset() -> None:
    """Forget the cached dependencies (tests, or a warm container after a config change)."""
    global _authorizer
    _authorizer = None


prepare()
