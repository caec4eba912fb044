"""Lambda entry point of the authorizer (``functions.gateway.handler.handler``).

Dependencies are built once per container, lazily on the first event, from
the environment:

* ``FLUX_PROJECT_DIR`` — the bundled project (flux.json and the function
  folders); default ``$LAMBDA_TASK_ROOT/project``;
* ``KEYS_TABLE`` — the API key table (:mod:`functions.gateway.keys_dynamodb`);
* ``RATE_LIMIT_TABLE`` — the rate-limit table (:mod:`functions.gateway.ratelimit_dynamodb`);
* ``FLUX_SECRETS_PREFIX`` — where the HS* JWT secret lives in Secrets Manager
  (default ``flux/<project name>/``), only read when ``auth.jwt.secret_name`` is set.

If building them fails (a bad bundle, a missing variable) every request is
denied and the next event tries again: an authorizer that cannot decide must
fail closed. ``flux dev`` does not come through here; it builds
:class:`Authorizer` with the local adapters and calls the same ``authorize``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from functions.gateway.authorizer import DENY, Authorizer
from functions.gateway.jwt_auth import JwtVerifier
from functions.shared.manifest import load_project

_log = logging.getLogger("flux.gateway.handler")
_authorizer: Authorizer | None = None


def build_authorizer(env: Mapping[str, str], *, dynamodb: Any | None = None,
                     secretsmanager: Any | None = None) -> Authorizer:
    """The AWS-shaped :class:`Authorizer`; clients are injectable for tests."""
    from functions.gateway.keys_dynamodb import DynamoApiKeyStore
    from functions.gateway.ratelimit_dynamodb import DynamoRateLimiter

    project_dir = env.get("FLUX_PROJECT_DIR") or str(Path(env.get("LAMBDA_TASK_ROOT", ".")) / "project")
    project = load_project(project_dir)
    if dynamodb is None:
        import boto3
        from botocore.config import Config

        # Short timeouts: the authorizer sits in front of every request, and its own Lambda timeout is short.
        dynamodb = boto3.client("dynamodb", config=Config(connect_timeout=1, read_timeout=2,
                                                          retries={"max_attempts": 3, "mode": "standard"}))
    keys = DynamoApiKeyStore(env["KEYS_TABLE"], dynamodb)
    limiter = DynamoRateLimiter(env["RATE_LIMIT_TABLE"], dynamodb)
    verifier = None
    jwt_config = project.config.auth.jwt
    if jwt_config is not None:
        secrets = None
        if jwt_config.secret_name:
            from functions.runtime.aws_secrets import SecretsManagerStore

            prefix = env.get("FLUX_SECRETS_PREFIX") or f"flux/{project.config.name}/"
            if secretsmanager is None:
                import boto3

                secretsmanager = boto3.client("secretsmanager")
            secrets = SecretsManagerStore(secretsmanager, prefix)
        verifier = JwtVerifier.from_config(jwt_config, secrets=secrets)
    return Authorizer(project, keys, limiter, verifier)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    global _authorizer
    if _authorizer is None:
        try:
            _authorizer = build_authorizer(os.environ)
        except Exception:  # noqa: BLE001 - cannot decide, so deny (fail closed) and retry on the next event
            _log.exception("authorizer: cannot start; denying")
            return dict(DENY)
    return _authorizer.authorize(event)


def reset() -> None:
    """Forget the cached dependencies (tests, or a warm container after a config change)."""
    global _authorizer
    _authorizer = None
