"""Load seed/orders_50k.sql into the shop's database (DATABASE_URL, flux.json, or the embedded one).

    python examples/shop/seed/seed.py            # from the repository root
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg

from functions.engine.locate import locate_database
from functions.engine.migrations import apply_migrations

SHOP = Path(__file__).resolve().parent.parent


def main() -> int:
    with locate_database(SHOP) as db:
        apply_migrations(db.dsn, SHOP / "schema")
        started = time.perf_counter()
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute((SHOP / "seed" / "orders_50k.sql").read_text())
            count = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        print(f"orders: {count} ({(time.perf_counter() - started) * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
