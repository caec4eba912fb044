"""The benchmark's four endpoints as a Python developer would write them: FastAPI + psycopg pool.

    BENCH_DSN=postgresql://... uvicorn app:app --host 127.0.0.1 --port 8001

Same pool size as the Flux Data Engine (10), the insert body validated by a pydantic model
(as Flux validates it with the function's input_schema), dict rows serialised by FastAPI.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

pool = AsyncConnectionPool(os.environ["BENCH_DSN"], min_size=1, max_size=10, open=False,
                           kwargs={"row_factory": dict_row, "autocommit": True})


@asynccontextmanager
async def lifespan(_app: FastAPI):
    await pool.open(wait=True)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    category: str
    price: float


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


@app.post("/items")
async def insert_item(item: Item) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO items (name, category, price) VALUES (%s, %s, %s) "
            "RETURNING id, name, category, price, created_at", (item.name, item.category, item.price))
        return await cur.fetchone()


@app.get("/items")
async def select_items(category: str = "c0") -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, name, category, price, created_at FROM items WHERE category = %s LIMIT 20", (category,))
        return {"items": await cur.fetchall()}


class Order(BaseModel):
    item_id: int
    quantity: int


@app.post("/orders")
async def place_order(order: Order) -> dict[str, Any]:
    """The item, its 5 latest orders, the new order and an outbox row (Flux: ctx.queue.push) in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT id, name, price FROM items WHERE id = %s", (order.item_id,))
        item = await cur.fetchone()
        if item is None:
            raise HTTPException(404, "no such item")
        cur = await conn.execute("SELECT id, quantity, created_at FROM orders WHERE item_id = %s "
                                 "ORDER BY id DESC LIMIT 5", (order.item_id,))
        item["orders"] = await cur.fetchall()
        cur = await conn.execute("INSERT INTO orders (item_id, quantity) VALUES (%s, %s) "
                                 "RETURNING id, item_id, quantity, created_at", (order.item_id, order.quantity))
        placed = await cur.fetchone()
        await conn.execute("INSERT INTO outbox (kind, payload) VALUES ('order_placed', %s)",
                           (Jsonb({"order_id": placed["id"]}),))
        return {"item": item, "order": placed}
