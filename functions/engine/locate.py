"""Which database a local project uses: ``DATABASE_URL``, else flux.json ``database.url``, else embedded.

The embedded server lives under ``<project>/.flux/pg`` and is started on demand; a
server some earlier ``flux dev`` left running is reused rather than restarted.
:meth:`DatabaseLocation.stop` stops it only if *this* process started it, so
``flux db schema`` run next to a running ``flux dev`` never pulls the database from
under it.

The embedded server's DSN carries its password (see :mod:`functions.engine.embedded_pg`);
``repr`` and :attr:`DatabaseLocation.display_dsn` show it redacted.

**Two roles.** :attr:`DatabaseLocation.dsn` is the owner's: migrations, the schema graph and
the index advisor use it. The Data Engine that serves ``ctx.db`` uses :attr:`DatabaseLocation.app_dsn`,
the same server as the application role (flux.json ``database.app_role``, ``flux_app`` by
default) with the password in ``.flux/pg.app.password`` (mode 0600, generated on first use), which
every migrate sets on the role. That holds for the embedded server and for a ``DATABASE_URL`` /
``database.url`` alike: the URL's user must be allowed to create the role (``CREATEROLE``, or the
role created beforehand), otherwise the first migrate fails naming the fix. Only
``"app_role": false`` runs user code as the URL's user, and ``flux dev`` says so at start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import ValidationError

from functions.engine.app_role import AppRole, derived_password
from functions.engine.embedded_pg import EmbeddedPostgres
from functions.engine.embedded_pg_auth import ensure_password_file
from functions.engine.pg_cluster import redact_dsn
from functions.shared.manifest import Database, ManifestError, ProjectConfig

Source = Literal["env", "flux.json", "embedded"]


@dataclass(slots=True)
class DatabaseLocation:
    dsn: str = field(repr=False)       # the owner's: migrations, schema graph, advice
    source: Source
    server: EmbeddedPostgres | None = field(default=None, repr=False)
    app_role: AppRole | None = field(default=None, repr=False)   # None: user code runs as the owner (opted out)

    @property
    def app_dsn(self) -> str:
        """The DSN ``ctx.db`` connects with: the application role's, or the owner's when opted out."""
        if self.app_role is None:
            return self.dsn
        return make_conninfo(self.dsn, user=self.app_role.name, password=self.app_role.password)

    @property
    def display_dsn(self) -> str:
        """The DSN with any password replaced by ``***``: the only form to print or log."""
        return redact_dsn(self.dsn)

    def __repr__(self) -> str:
        return f"DatabaseLocation(dsn={self.display_dsn!r}, source={self.source!r})"

    @property
    def started_here(self) -> bool:
        return self.server is not None and self.server.started_here

    def stop(self) -> None:
        """Stop the embedded server if this process started it; otherwise leave everything running."""
        if self.server is not None and self.server.started_here:
            self.server.stop()

    def __enter__(self) -> DatabaseLocation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def embedded_data_dir(root: str | Path) -> Path:
    return Path(root).resolve() / ".flux" / "pg"


def app_password_file(root: str | Path) -> Path:
    return Path(root).resolve() / ".flux" / "pg.app.password"


def project_app_role(root: str | Path, url: str | None = None) -> AppRole | None:
    """The application role of the project at ``root``; None if opted out.

    Its password: for a server of its own (embedded), generated into ``.flux/pg.app.password`` on
    first use; for a ``url`` whose owner has a password, derived from it (a role is shared by every
    database of the server, see :func:`~functions.engine.app_role.derived_password`).
    """
    name = project_database(root).app_role_name
    if name is None:
        return None
    owner_password = _password_of(url) if url else None
    if owner_password:
        return AppRole(name, derived_password(owner_password, name))
    path = app_password_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return AppRole(name, ensure_password_file(path)[0])


def locate_database(root: str | Path, *, env: Mapping[str, str] | None = None, durable: bool = True
                    ) -> DatabaseLocation:
    """Resolve (and if needed start) the project's database."""
    env = os.environ if env is None else env
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return DatabaseLocation(url, "env", app_role=project_app_role(root, url))
    configured = project_database(root).url
    if configured:
        return DatabaseLocation(configured, "flux.json", app_role=project_app_role(root, configured))
    server = EmbeddedPostgres(embedded_data_dir(root), durable=durable)
    return DatabaseLocation(server.start(), "embedded", server, app_role=project_app_role(root))


def _password_of(dsn: str) -> str | None:
    try:
        return conninfo_to_dict(dsn).get("password") or None
    except Exception:  # noqa: BLE001 - a DSN libpq cannot read fails later, at connect, with libpq's message
        return None


def project_database_url(root: str | Path) -> str | None:
    """``database.url`` from ``<root>/flux.json``, validated like the rest of the file; None if unset."""
    return project_database(root).url or None


def project_database(root: str | Path) -> Database:
    """``database`` of ``<root>/flux.json``, validated like the rest of the file (defaults without a file)."""
    path = Path(root) / "flux.json"
    if not path.is_file():
        return Database()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        config = ProjectConfig.model_validate(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError([f"flux.json: cannot read: {exc}"]) from None
    except ValidationError as exc:
        problems = [f"flux.json: field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors()]
        raise ManifestError(problems) from None
    return config.database
