"""The benchmark's three endpoints as a Python developer would write them: FastAPI + psycopg pool.

    BENCH_DSN=postgresql://... uvicorn app:app --host 127.0.0.1 --port 8001

Same pool size as the Flux Data Engine (10), the insert body validated by a pydantic model
(as Flux validates it with the function's input_schema), dict rows serialised by FastAPI.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from psycopg.rows import dict_row
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
