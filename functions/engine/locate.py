"""Which database a local project uses: ``DATABASE_URL``, else flux.json ``database.url``, else embedded.

The embedded server lives under ``<project>/.flux/pg`` and is started on demand; a
server some earlier ``flux dev`` left running is reused rather than restarted.
:meth:`DatabaseLocation.stop` stops it only if *this* process started it, so
``flux db schema`` run next to a running ``flux dev`` never pulls the database from
under it.

The embedded server's DSN carries its password (see :mod:`functions.engine.embedded_pg`);
``repr`` and :attr:`DatabaseLocation.display_dsn` show it redacted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from functions.engine.embedded_pg import EmbeddedPostgres
from functions.engine.pg_cluster import redact_dsn
from functions.shared.manifest import ManifestError, ProjectConfig

Source = Literal["env", "flux.json", "embedded"]


@dataclass(slots=True)
class DatabaseLocation:
    dsn: str = field(repr=False)
    source: Source
    server: EmbeddedPostgres | None = field(default=None, repr=False)

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


def locate_database(root: str | Path, *, env: Mapping[str, str] | None = None, durable: bool = True
                    ) -> DatabaseLocation:
    """Resolve (and if needed start) the project's database."""
    env = os.environ if env is None else env
    url = env.get("DATABASE_URL", "").strip()
    if url:
        return DatabaseLocation(url, "env")
    configured = project_database_url(root)
    if configured:
        return DatabaseLocation(configured, "flux.json")
    server = EmbeddedPostgres(embedded_data_dir(root), durable=durable)
    return DatabaseLocation(server.start(), "embedded", server)


def project_database_url(root: str | Path) -> str | None:
    """``database.url`` from ``<root>/flux.json``, validated like the rest of the file; None if unset."""
    path = Path(root) / "flux.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        config = ProjectConfig.model_validate(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError([f"flux.json: cannot read: {exc}"]) from None
    except ValidationError as exc:
        problems = [f"flux.json: field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in exc.errors()]
        raise ManifestError(problems) from None
    return config.database.url or None
