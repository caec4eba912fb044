"""The Data Engine: structured ``ctx.db`` queries in, SQL on Postgres out, every call traced.

The pipeline is deliberately a chain of small, separately testable steps:

    raw JSON from user code
      → :mod:`model`     validated frozen query objects (shape errors → 400 invalid_query)
      → :mod:`compiler`  ``compile(q, schema) -> (sql, params)``, pure; identifiers checked against
                         the introspected :mod:`schema`, values only as bound parameters
      → :mod:`executor`  the psycopg_pool adapter (statement_timeout → 504, unreachable → 503)
      → :mod:`values`    rows made JSON-safe
    :mod:`service` (``DataEngine``) ties them together, emits one db span per query and keeps the
    opt-in result :mod:`cache`.

Around that: :mod:`detectors` (N+1, slow queries) and :mod:`advice` (planner-checked index
suggestions, schema graph) read spans; :mod:`migrations`, :mod:`embedded_pg` (with its pure rules
in :mod:`pg_cluster` and, for root, :mod:`runas_userns`), :mod:`locate` and :mod:`handler` (the
engine Lambda) manage the database itself.
"""
