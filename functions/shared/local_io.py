"""Small local-machine helpers several adapters share: process liveness and SQLite connections.

Every local store (spans, API keys, the queue) opens SQLite the same way: WAL so
readers (the CLI) never block the writer (`flux dev`), ``synchronous=NORMAL``
(durable across a process crash, which is what local state needs), autocommit so
each adapter states its own transactions, and usable from the thread that asks.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def open_sqlite(path: str | Path, *, timeout_s: float = 10.0) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn
