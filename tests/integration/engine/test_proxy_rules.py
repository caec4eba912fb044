"""The executor behind RDS Proxy's rules: no startup ``options``, no session state, no prepared statements.

Through :class:`ProxyFront` (refuses startup parameters RDS Proxy refuses), the
``proxy_safe`` executor every Lambda uses must run queries, cancel a slow one at its
statement timeout, and leave nothing behind on the server session that would pin a
proxied connection: ``statement_timeout`` back at the server default after each
transaction and no server-side prepared statements even for a query repeated often.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from functions.engine.executor import PsycopgExecutor, Statement
from functions.shared.errors import FunctionTimeout
from tests.integration.engine.proxy_front import ProxyFront

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def front(pg_dsn: str) -> Iterator[tuple[ProxyFront, str]]:
    params = conninfo_to_dict(pg_dsn)
    proxy = ProxyFront(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)).start()
    try:
        yield proxy, make_conninfo(pg_dsn, host="127.0.0.1", port=str(proxy.port), sslmode="disable")
    finally:
        proxy.stop()


def test_the_front_refuses_startup_options_as_rds_proxy_does(front) -> None:  # type: ignore[no-untyped-def]
    proxy, dsn = front
    refused_before = len(proxy.refused)
    with pytest.raises(psycopg.OperationalError, match="RDS Proxy currently doesn't support the option options"):
        psycopg.connect(dsn, options="-c statement_timeout=100", connect_timeout=3).close()
    assert proxy.refused[refused_before:] == ["options"]


@pytest.mark.parametrize("proxy_safe", [True, False])
def test_queries_and_the_statement_timeout_work_through_the_front(front, proxy_safe: bool) -> None:  # type: ignore[no-untyped-def]
    proxy, dsn = front
    refused_before = len(proxy.refused)

    async def scenario() -> None:
        executor = PsycopgExecutor(dsn, statement_timeout_ms=200, connect_timeout_s=3, min_size=1, max_size=1,
                                   proxy_safe=proxy_safe)
        await executor.open()
        try:
            outcome = await executor.run(Statement("SELECT current_setting('statement_timeout') AS t"))
            assert outcome.rows == [{"t": "200ms"}]
            with pytest.raises(FunctionTimeout, match="statement timeout of 200 ms"):
                await executor.run(Statement("SELECT pg_sleep(2)"))
            async with executor.transaction() as tx:
                inside = await tx.run(Statement("SELECT current_setting('statement_timeout') AS t"))
            assert inside.rows == [{"t": "200ms"}]
        finally:
            await executor.close()

    asyncio.run(scenario())
    assert len(proxy.refused) == refused_before  # no connection was refused for its startup parameters


def test_the_proxy_safe_executor_leaves_no_session_state(front) -> None:  # type: ignore[no-untyped-def]
    _proxy, dsn = front

    async def scenario() -> tuple[str, int]:
        executor = PsycopgExecutor(dsn, statement_timeout_ms=700, connect_timeout_s=3, min_size=1, max_size=1,
                                   proxy_safe=True)
        await executor.open()
        try:
            for value in range(8):   # psycopg prepares a query on its 5th run unless told not to
                await executor.run(Statement("SELECT %s::int AS n", (value,)))
            async with executor.pool.connection() as conn:   # the one pooled connection, outside any Flux call
                timeout = await (await conn.execute("SHOW statement_timeout")).fetchone()
                prepared = await (await conn.execute("SELECT count(*) AS n FROM pg_prepared_statements")).fetchone()
            return timeout["statement_timeout"], prepared["n"]
        finally:
            await executor.close()

    timeout, prepared = asyncio.run(scenario())
    assert timeout == "0"      # SET LOCAL ended with each transaction: nothing pins the session
    assert prepared == 0
