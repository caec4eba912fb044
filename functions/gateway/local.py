"""The authorizer as ``flux dev`` builds it: the same :class:`Authorizer`, local adapters.

* keys: SQLite at ``<project>/.flux/keys.db`` — the file ``flux keys`` writes;
* rate limits: in-process (see :mod:`functions.gateway.ratelimit_local` for why);
* JWT: the project's ``auth.jwt``, with an HS* secret read from the local
  secrets store (``flux secrets set``) and JWKS fetched over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from functions.gateway.authorizer import Authorizer
from functions.gateway.jwt_auth import JwksFetcher, JwtVerifier, SecretReader
from functions.gateway.keys_sqlite import open_project_key_store
from functions.gateway.ratelimit_local import LocalRateLimiter
from functions.shared.manifest import Project


def build_local_authorizer(project: Project, *, secrets: SecretReader | None = None,
                           jwks_fetcher: JwksFetcher | None = None,
                           clock: Callable[[], float] = time.time) -> Authorizer:
    """``secrets`` is needed only when ``auth.jwt.secret_name`` is set (a missing one refuses every token)."""
    verifier = None
    jwt_config = project.config.auth.jwt
    if jwt_config is not None:
        if jwt_config.secret_name and secrets is None:
            raise ValueError("auth.jwt.secret_name is set: pass the local secrets store")
        verifier = JwtVerifier.from_config(jwt_config, secrets=secrets, fetcher=jwks_fetcher)
    return Authorizer(project, open_project_key_store(project.root), LocalRateLimiter(clock), verifier)
