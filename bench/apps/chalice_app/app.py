"""The benchmark's four endpoints as a Chalice app, served by ``chalice local`` (the closest Python peer).

    BENCH_DSN=postgresql://... chalice local --no-autoreload --host 127.0.0.1 --port 8002

``chalice local`` is a threaded ``http.server``; the app shares one psycopg pool (10
connections, as the Flux Data Engine) across its threads.
"""

import os
from decimal import Decimal

from chalice import Chalice, NotFoundError
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

app = Chalice(app_name="bench")
pool = ConnectionPool(os.environ["BENCH_DSN"], min_size=1, max_size=10,
                      kwargs={"row_factory": dict_row, "autocommit": True})
COLUMNS = "id, name, category, price, created_at"


def _jsonable(row):
    return {k: (str(v) if isinstance(v, Decimal) else v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in row.items()}


@app.route("/hello", methods=["GET"])
def hello():
    return {"message": "hello"}


@app.route("/items", methods=["POST"])
def insert_item():
    body = app.current_request.json_body or {}
    with pool.connection() as conn:
        row = conn.execute(f"INSERT INTO items (name, category, price) VALUES (%s, %s, %s) RETURNING {COLUMNS}",
                           (body.get("name"), body.get("category"), body.get("price"))).fetchone()
    return _jsonable(row)


@app.route("/items", methods=["GET"])
def select_items():
    category = (app.current_request.query_params or {}).get("category", "c0")
    with pool.connection() as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM items WHERE category = %s LIMIT 20", (category,)).fetchall()
    return {"items": [_jsonable(r) for r in rows]}


@app.route("/orders", methods=["POST"])
def place_order():
    body = app.current_request.json_body or {}
    item_id, quantity = body.get("item_id"), body.get("quantity")
    with pool.connection() as conn, conn.transaction():
        item = conn.execute("SELECT id, name, price FROM items WHERE id = %s", (item_id,)).fetchone()
        if item is None:
            raise NotFoundError("no such item")
        recent = conn.execute("SELECT id, quantity, created_at FROM orders WHERE item_id = %s ORDER BY id DESC LIMIT 5",
                              (item_id,)).fetchall()
        placed = conn.execute("INSERT INTO orders (item_id, quantity) VALUES (%s, %s) "
                              "RETURNING id, item_id, quantity, created_at", (item_id, quantity)).fetchone()
        conn.execute("INSERT INTO outbox (kind, payload) VALUES ('order_placed', %s)",
                     (Jsonb({"order_id": placed["id"]}),))
    return {"item": {**_jsonable(item), "orders": [_jsonable(r) for r in recent]}, "order": _jsonable(placed)}
