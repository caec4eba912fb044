"""The database connection string of a Lambda, from its environment and Secrets Manager.

Three shapes reach a Lambda (infra/constructs/database.py):

* ``DATABASE_URL`` set directly (tests, or a user who sets it by hand);
* ``DATABASE_SECRET_ARN`` naming the generated RDS secret (``host``, ``port``,
  ``username``, ``password``, ``dbname``); with ``DATABASE_HOST`` the connection goes
  to the RDS Proxy instead of the cluster host written in the secret;
* ``DATABASE_SECRET_ARN`` naming a secret that holds ``{"url": "postgresql://..."}``
  (what the stack stores for ``database.url``) or the bare URL.

In a runtime Lambda ``DATABASE_SECRET_ARN`` names the application role's secret (generated
by the stack: ``username``, ``password``, and for a provisioned cluster ``dbname``; the host
is ``DATABASE_HOST`` and ``DATABASE_PORT``, or, for a ``database.url`` / ``secret_arn`` stack, written into the
secret by the engine's first migrate). The engine Lambda gets the owner's secret there and
the application secret as ``DATABASE_APP_SECRET_ARN``: :func:`app_role_secret`,
:func:`publish_connection`. :func:`login_refused` turns "role does not exist" into the
advice to migrate.

Every failure is :class:`DatabaseUnavailable` (503 with ``Retry-After``) whose
message names what is wrong but never a credential: the caller is a request that
needed the database, and the fix is an operator's.

psycopg and botocore are imported inside the functions that use them: every runtime Lambda with a
database imports this module while its state is built (INIT), and one whose function never calls
``ctx.db`` must not load the driver.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from functions.aws import names
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
    if not host and not missing:
        # The application role's secret of a database.url / secret_arn stack: the engine writes the host there
        # on the first migrate (publish_connection), which also creates the role.
        stage = env.get(names.STAGE) or "<stage>"
        raise _unavailable("the application database role is not set up yet (its secret has no host); "
                           f"run `flux db migrate --stage {stage}`")
    if not host:
        missing.insert(0, "host")
    if missing:
        raise _unavailable(f"the database secret has no {', '.join(missing)} (and no \"url\")")
    port = env.get(names.DATABASE_PORT, "").strip() or data.get("port") or 5432
    from psycopg.conninfo import make_conninfo  # here, not at import: see the module docstring

    return make_conninfo(host=str(host), port=str(port),
                         dbname=str(data.get("dbname") or data.get("database") or "postgres"),
                         user=str(data["username"]), password=str(data["password"]),
                         sslmode=env.get(names.DATABASE_SSLMODE) or data.get("sslmode") or "require")


def dsn_from_environment(env: Mapping[str, str], *, secrets_client: Any = None) -> str:
    """Read the DSN (one Secrets Manager call when the environment names a secret)."""
    url = env.get(names.DATABASE_URL, "").strip()
    if url:
        return url
    arn = env.get(names.DATABASE_SECRET_ARN, "").strip()
    if not arn:
        raise _unavailable(f"no database is configured ({names.DATABASE_URL} or {names.DATABASE_SECRET_ARN})")
    # The caller sees the error code only; the log gets the whole message (it may name the ARN).
    return dsn_from_secret(_read_secret(arn, secrets_client, "database secret"), env)


# -- the application role (DESIGN §7: user code runs as it; migrations as the owner) ---------------------------

_LOGIN_REFUSED = {"does not exist": "the role does not exist yet",
                  "password authentication failed": "its password does not match its secret",
                  "has no credentials for the role": "the RDS Proxy has no secret for it"}


def _read_secret(arn: str, secrets_client: Any, what: str) -> str:
    if secrets_client is None:
        from functions.shared.aws_clients import client

        secrets_client = client("secretsmanager")
    try:
        secret = secrets_client.get_secret_value(SecretId=arn).get("SecretString")
    except Exception as exc:  # noqa: BLE001 - any Secrets Manager failure: the database cannot be reached
        from botocore.exceptions import ClientError

        # Imported here, not at the top: aws_errors imports botocore, which a Lambda's INIT need not load.
        from functions.shared.aws_errors import describe, error_code

        _log.warning("cannot read the %s: %s", what, describe(exc))
        code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        raise _unavailable(f"cannot read the {what} ({code})") from None
    if not isinstance(secret, str):
        raise _unavailable(f"the {what} has no SecretString")
    return secret


def app_role_secret(env: Mapping[str, str], *, secrets_client: Any = None) -> dict[str, Any] | None:
    """The engine's view of the application role's secret (``username``, ``password``, ...); None without one."""
    arn = env.get(names.DATABASE_APP_SECRET_ARN, "").strip()
    if not arn:
        return None
    try:
        document = json.loads(_read_secret(arn, secrets_client, "application role's secret"))
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("username"), str) \
            or not isinstance(document.get("password"), str) or not document["password"]:
        raise _unavailable("the application role's secret is not a JSON object with username and password")
    return document


def publish_connection(env: Mapping[str, str], owner_dsn: str, document: dict[str, Any], *,
                       secrets_client: Any = None) -> bool:
    """Write host, port and database of the owner's DSN into the application role's secret, when the runtime
    needs them there (``database.url`` and ``secret_arn`` stacks: no ``DATABASE_HOST``); True when written.

    The runtime may read only the application secret, so for a database the stack does not know at synth time
    the engine, which reads the owner's secret, copies where the database is (never the owner's credentials).
    """
    if env.get(names.DATABASE_HOST, "").strip():
        return False
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(owner_dsn)
    wanted = {"host": parts.get("host"), "port": int(parts.get("port") or 5432),
              "dbname": parts.get("dbname") or "postgres"}
    # The application role connects with the owner's TLS setting; a URL that names none gets libpq's default.
    wanted["sslmode"] = parts.get("sslmode") or "prefer"
    if all(document.get(key) == value for key, value in wanted.items()):
        return False
    if secrets_client is None:
        from functions.shared.aws_clients import client

        secrets_client = client("secretsmanager")
    secrets_client.put_secret_value(SecretId=env[names.DATABASE_APP_SECRET_ARN],
                                    SecretString=json.dumps({**document, **wanted}))
    return True


def login_refused(error: BaseException | None, env: Mapping[str, str]) -> DatabaseUnavailable | None:
    """A 503 that says to migrate, when ``error`` (a login attempt's failure) is the role not being set up."""
    text = str(error or "")
    for needle, reason in _LOGIN_REFUSED.items():
        if needle in text:
            stage = env.get(names.STAGE) or "<stage>"
            return _unavailable(f"the application database role cannot log in ({reason}); migrations create it "
                                f"and set its password: run `flux db migrate --stage {stage}`")
    return None


async def explain_unavailable(engine: Any, exc: DatabaseUnavailable, env: Mapping[str, str]) -> DatabaseUnavailable:
    """``exc``, or the advice to migrate when a fresh login shows the application role is not set up."""
    probe = getattr(getattr(engine, "executor", None), "login_error", None)
    if probe is None:
        return exc
    return login_refused(await probe(), env) or exc
