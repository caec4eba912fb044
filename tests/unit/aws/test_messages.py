"""Messages a deployed stage can print or answer never send its users to a laptop-only tool.

Every module an AWS entry point loads (and the lazily imported adapters it wires) is
scanned for string literals other than docstrings; none may mention ``flux dev`` or
ask whether Postgres is running, which only make sense next to ``flux dev``.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from functions.aws import names

LAZY = ("functions.aws.lazy_db", "functions.aws.database", "functions.aws.queue", "functions.engine.service",
        "functions.engine.executor", "functions.engine.migrations", "functions.engine.advice",
        "functions.observability.dynamo_store", "functions.gateway.keys_dynamodb",
        "functions.gateway.ratelimit_dynamodb", "functions.queue_consumer.service",
        "functions.queue_consumer.sqs_queue", "functions.runtime.aws_secrets")
FORBIDDEN = ("flux dev", "is postgres running")


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_aws_reachable_messages_do_not_mention_flux_dev() -> None:
    entries = [h.rsplit(".", 1)[0] for h in (names.HTTP_HANDLER, names.WORKER_HANDLER, names.AUTHORIZER_HANDLER,
                                             names.ENGINE_HANDLER, names.OBSERVABILITY_HANDLER)]
    for module in (*entries, *LAZY):
        importlib.import_module(module)
    loaded = sorted(m for m in sys.modules if m.startswith("functions.") and not m.startswith("functions.local"))
    assert "functions.gateway.pipeline" in loaded and "functions.engine.executor" in loaded
    offending = []
    for name in loaded:
        path = Path(sys.modules[name].__file__ or "")
        if path.suffix != ".py":
            continue
        for line, text in _literals(path):
            if any(word in text.lower() for word in FORBIDDEN):
                offending.append(f"{name}:{line}: {text!r}")
    assert offending == []
