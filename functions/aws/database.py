"""The database connection string of a Lambda, from its environment and Secrets Manager.

Three shapes reach a Lambda (infra/constructs/database.py):

* ``DATABASE_URL`` set directly (tests, or a user who sets it by hand);
* ``DATABASE_SECRET_ARN`` naming the generated RDS secret (``host``, ``port``,
  ``username``, ``password``, ``dbname``); with ``DATABASE_HOST`` the connection goes
  to the RDS Proxy instead of the cluster host written in the secret;
* ``DATABASE_SECRET_ARN`` naming a secret that holds ``{"url": "postgresql://..."}``
  (what the stack stores for ``database.url``) or the bare URL.

Every failure is :class:`DatabaseUnavailable` (503 with ``Retry-After``) whose
message names what is wrong but never a credential: the caller is a request that
needed the database, and the fix is an operator's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from psycopg.conninfo import make_conninfo

from functions.aws import names
from functions.shared.aws_errors import describe, error_code
from functions.shared.errors import DatabaseUnavailable

_log = logging.getLogger("flux.aws.database")
RETRY_AFTER_S = 5
_URL_PREFIXES = ("postgres://", "postgresql://")


def _unavailable(message: str) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"database unavailable: {message}", headers={"Retry-After": str(RETRY_AFTER_S)})


def configured(env: Mapping[str, str]) -> bool:
    """Whether this Lambda has a database at all (without reading any secret)."""
    return bool(env.get(names.DATABASE_URL, "").strip() or env.get(names.DATABASE_SECRET_ARN, "").strip())


def dsn_from_secret(secret: str, env: Mapping[str, str]) -> str:
    """The DSN a secret's text describes: a URL, ``{"url": ...}``, or RDS secret JSON."""
    text = secret.strip()
    if text.startswith(_URL_PREFIXES):
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise _unavailable("the database secret is neither a URL nor a JSON object") from None
    if not isinstance(data, dict):
        raise _unavailable("the database secret is not a JSON object")
    url = data.get("url")
    if isinstance(url, str) and url.strip().startswith(_URL_PREFIXES):
        return url.strip()
    missing = [key for key in ("username", "password") if not isinstance(data.get(key), str | int)]
    # A provisioned cluster is reached through its RDS Proxy (DATABASE_HOST), not the host in the secret.
    host = env.get(names.DATABASE_HOST, "").strip() or data.get("host")
    if not host:
        missing.insert(0, "host")
    if missing:
        raise _unavailable(f"the database secret has no {', '.join(missing)} (and no \"url\")")
    return make_conninfo(host=str(host), port=str(data.get("port") or 5432),
                         dbname=str(data.get("dbname") or data.get("database") or "postgres"),
                         user=str(data["username"]), password=str(data["password"]),
                         sslmode=env.get(names.DATABASE_SSLMODE) or "require")


def dsn_from_environment(env: Mapping[str, str], *, secrets_client: Any = None) -> str:
    """Read the DSN (one Secrets Manager call when the environment names a secret)."""
    url = env.get(names.DATABASE_URL, "").strip()
    if url:
        return url
    arn = env.get(names.DATABASE_SECRET_ARN, "").strip()
    if not arn:
        raise _unavailable(f"no database is configured ({names.DATABASE_URL} or {names.DATABASE_SECRET_ARN})")
    if secrets_client is None:
        from functions.shared.aws_clients import client

        secrets_client = client("secretsmanager")
    try:
        secret = secrets_client.get_secret_value(SecretId=arn).get("SecretString")
    except Exception as exc:  # noqa: BLE001 - any Secrets Manager failure: the database cannot be reached
        # The caller sees the error code only; the log gets the whole message (it may name the ARN).
        _log.warning("cannot read the database secret: %s", describe(exc))
        code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        raise _unavailable(f"cannot read the database secret ({code})") from None
    if not isinstance(secret, str):
        raise _unavailable("the database secret has no SecretString")
    return dsn_from_secret(secret, env)
