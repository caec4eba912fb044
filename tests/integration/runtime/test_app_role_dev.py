"""`flux dev`'s wiring of the application role: ctx.db really runs as ``flux_app`` on the project's embedded Postgres.

A LocalStack with its database (the embedded server under the project's ``.flux/pg``), real Deno
workers, requests through the local gateway in-process: the engine's connections belong to the
application role, its password file is private, and a statement the role may not run is a 403.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from functions.shared.apigw import HttpRequest, HttpResponse
from tests.integration.runtime.conftest import Harness, write_project

pytestmark = pytest.mark.integration

FUNCTIONS = {
    "things": ({"route": "/things"}, """
        export default async function handler(input, ctx) {
          await ctx.db.query({ table: "things", operation: "insert", data: { name: input.name ?? "x" } });
          return { count: (await ctx.db.query({ table: "things", operation: "select", columns: ["id"] })).length };
        }"""),
}


class DbHarness(Harness):
    def __init__(self, root: Path) -> None:  # Harness with the database on
        import asyncio

        from functions.local.stack import LocalStack
        from functions.shared.spans import MemorySink

        self.loop = asyncio.new_event_loop()
        self.stack = LocalStack(root, min_warm=1, max_workers=1, use_database=True)
        self.memory = MemorySink()
        self.stack.sink = self.memory
        self.stack.pipeline.sink = self.memory
        self.run(self.stack.start())


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHarness]:
    root = write_project(tmp_path_factory.mktemp("approle"), {"name": "approle"}, FUNCTIONS)
    (root / "schema").mkdir()
    (root / "schema" / "001_things.sql").write_text("CREATE TABLE things (id serial PRIMARY KEY, name text);\n")
    h = DbHarness(root)
    yield h
    h.close()


def call(h: DbHarness, body: object) -> HttpResponse:
    request = HttpRequest("POST", "/things", headers=(("content-type", "application/json"),),
                          body=json.dumps(body).encode())
    return h.run(h.stack.gateway.handle(request))


def test_ctx_db_connects_as_the_application_role(dev: DbHarness) -> None:
    response = call(dev, {"name": "a"})
    assert response.status == 200, response.body
    assert dev.stack.database is not None and dev.stack.database.source == "embedded"
    with psycopg.connect(dev.stack.database.dsn) as owner:
        assert owner.execute("SELECT current_user").fetchone() == ("postgres",)   # migrations: the owner
        users = {row[0] for row in owner.execute(
            "SELECT usename FROM pg_stat_activity WHERE application_name = 'flux-engine'").fetchall()}
    assert users == {"flux_app"}
    engine = dev.stack.engine
    assert engine is not None

    async def whoami() -> str:
        async with engine.executor.pool.connection() as conn:  # type: ignore[attr-defined]
            row = await (await conn.execute("SELECT current_user AS u")).fetchone()
            return str(row["u"])

    assert dev.run(whoami()) == "flux_app"


def test_the_application_password_is_its_own_private_file(dev: DbHarness) -> None:
    state = dev.stack.paths.root
    app, owner = state / "pg.app.password", state / "pg.password"
    assert stat.S_IMODE(app.stat().st_mode) == 0o600
    assert app.read_text().strip() and app.read_text() != owner.read_text()
    assert app.read_text().strip() not in repr(dev.stack.database)


def test_a_statement_the_role_may_not_run_is_a_403_then_migrate_repairs_it(dev: DbHarness) -> None:
    assert dev.stack.database is not None
    with psycopg.connect(dev.stack.database.dsn, autocommit=True) as owner:
        owner.execute("REVOKE INSERT ON things FROM flux_app")
    denied = call(dev, {"name": "b"})
    assert denied.status == 403, denied.body
    body = denied.json()
    assert body["error"] == "permission_denied" and set(body) == {"error", "message", "request_id"}
    assert "insert things: permission denied for table things" in body["message"]
    dev.run(dev.stack.migrate())   # every migrate puts the role's rights back in line with the schema
    assert call(dev, {"name": "c"}).status == 200
