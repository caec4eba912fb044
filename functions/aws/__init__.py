"""Composition root for AWS Lambda: every Lambda entry point, wiring each layer to its AWS adapter.

It mirrors :mod:`functions.local` (the composition root of ``flux dev``). Each
entry point is its own module with one role, named in the template by the
strings in :mod:`functions.aws.names`, which infra imports too:

* :mod:`~functions.aws.entry_http` — a function's HTTP route (API Gateway payload 2.0);
* :mod:`~functions.aws.entry_worker` — an async function's SQS batches;
* :mod:`~functions.aws.entry_authorizer` — the REQUEST authorizer;
* :mod:`~functions.aws.entry_engine` — migrations, schema graph and index advice;
* :mod:`~functions.aws.entry_observability` — the hosted observability API and dashboard.

The layers below (gateway, runtime, engine, queue_consumer, observability) never
import from here, and never from each other's AWS wiring.
"""
