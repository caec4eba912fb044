"""The runtime Lambdas: one per user function, plus a queue consumer per async function.

Every function's Lambda runs the same code asset (the whole project is bundled,
because ``ctx.function.invoke`` runs other functions in-process) with a different
``FLUX_FUNCTION``, which is the pool it keeps warm. Entry points:

* ``functions.aws.entry_http.handler`` — API Gateway HTTP API events
  (payload 2.0); for an async function it only enqueues and answers 202;
* ``functions.aws.entry_worker.handler`` — SQS batches of an async
  function's own queue (``<name>-worker``), with partial batch responses and a
  maximum concurrency so a burst cannot exhaust the database's connections.

Permissions (each role separately), from the function's invoke closure
(infra/plan.py: itself and what it reaches through ``invokes``, whose code runs in
the same Lambda): write spans; read exactly the secrets the closure declares (none:
no Secrets Manager statement); read the database secret (when there is a
database); ``SendMessage`` on exactly the queues the closure ``pushes`` to; the
HTTP Lambda of an async function runs no user code (its route only enqueues), so it
gets no project secret and only its own queue, and its worker the closure's; the job
table's idempotency items only when it sends at all; and, for a consumer, its own
queue (granted by the event source) and the job records it settles.
``FLUX_QUEUE_URLS`` carries only the queues the Lambda may send to (a worker's also
names its own queue, whose records it deletes and delays through the event
source's grants); no Lambda gets DLQ URLs (only the CLI reads DLQs, from the stack
outputs). Reserved concurrency is the function's flux.json ``concurrency``, and its
worker's event source never runs more batches than that.
The Deno worker never sees any of it: it runs with a scrubbed environment
(functions/runtime/sandbox.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.aws import names
from infra.constructs.database import FluxDatabase
from infra.constructs.function import FluxFunction
from infra.constructs.queues import FunctionQueues
from infra.constructs.secrets import ProjectSecrets
from infra.constructs.tables import JOB_ENQUEUER, JOB_SETTLER, SPAN_WRITER, FluxTables, grant
from infra.plan import SPANS_SHARDS, FunctionPlan, StackPlan

TASK_ROOT = names.TASK_ROOT
PROJECT_IN_TASK = f"{names.TASK_ROOT}/{names.BUNDLE_PROJECT_DIR}"


@dataclass(frozen=True)
class CodeAssets:
    runtime: lambda_.Code
    control: lambda_.Code
    deno_layer: lambda_.ILayerVersion
    architecture: lambda_.Architecture


@dataclass(frozen=True)
class _Sends:
    """What one Lambda does with the queues: the ones it sends to, its job table actions, and the queue whose
    records it settles (a worker's own)."""

    to: tuple[str, ...]
    job_actions: tuple[str, ...]
    settles: str | None = None

    @property
    def known(self) -> tuple[str, ...]:
        """The queues named in its environment."""
        return tuple(sorted({*self.to, *((self.settles,) if self.settles else ())}))


def sqs_send(queue: sqs.IQueue, grantee: FluxFunction) -> None:
    """SendMessage only (``grant_send_messages`` would add GetQueueAttributes and GetQueueUrl, unused here)."""
    iam.Grant.add_to_principal(grantee=grantee.role, actions=["sqs:SendMessage"], resource_arns=[queue.queue_arn])


class RuntimeFunctions(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: StackPlan, code: CodeAssets,
                 tables: FluxTables, queues: FunctionQueues, database: FluxDatabase, secrets: ProjectSecrets,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self._plan, self._code, self._tables = plan, code, tables
        self._queues, self._database, self._secrets = queues, database, secrets
        self._removal = removal_policy
        self.http: dict[str, FluxFunction] = {}
        self.workers: dict[str, FluxFunction] = {}
        for fn in plan.functions:
            self.http[fn.name] = self._function(fn, fn.name, names.HTTP_HANDLER, fn.timeout_s, fn.http_secrets,
                                                _Sends(fn.http_sends_to, JOB_ENQUEUER if fn.http_sends_to else ()))
            queue = queues.by_function.get(fn.name)
            if fn.queue is not None and queue is not None:
                worker = self._function(fn, f"{fn.name}-worker", names.WORKER_HANDLER, fn.queue.consumer_timeout_s,
                                        fn.secrets, _Sends(fn.worker_sends_to, JOB_SETTLER, settles=fn.name))
                worker.function.add_event_source(event_sources.SqsEventSource(
                    queue.queue, batch_size=fn.queue.batch_size, report_batch_item_failures=True,
                    max_concurrency=fn.queue.max_concurrency))
                self.workers[fn.name] = worker

    def environment(self, fn: FunctionPlan, sends: _Sends | None = None) -> dict[str, str]:
        env: dict[str, str] = {
            names.PROJECT_DIR: PROJECT_IN_TASK,
            names.FUNCTION: fn.name,
            names.STAGE: self._plan.stage,
            names.DENO: names.DENO_IN_LAYER,
            names.DENO_DIR: f"{names.TASK_ROOT}/{names.BUNDLE_DENO_DIR}",
            names.SECRETS_PREFIX: self._plan.secrets_prefix,
            names.SPANS_TABLE: self._tables.spans.table_name,
            names.SPANS_SHARDS: str(SPANS_SHARDS),
            **self._database.environment(),
        }
        known = sends.known if sends is not None else ()
        queues = {name: self._queues.by_function[name] for name in known if name in self._queues.by_function}
        if queues and self._tables.jobs is not None:
            env[names.QUEUE_URLS] = _json({name: q.queue.queue_url for name, q in queues.items()}, self)
            env[names.JOBS_TABLE] = self._tables.jobs.table_name
        return env

    def _function(self, fn: FunctionPlan, construct_id: str, handler: str, timeout_s: int,
                  secrets: tuple[str, ...], sends: _Sends) -> FluxFunction:
        database = self._database
        made = FluxFunction(
            self, construct_id, code=self._code.runtime, handler=handler, environment=self.environment(fn, sends),
            timeout_s=timeout_s, memory_mb=fn.memory_mb, architecture=self._code.architecture,
            description=f"Flux {self._plan.project}/{self._plan.stage}: {construct_id} ({handler.rsplit('.', 2)[0]})",
            retention_days=self._plan.retention_days, removal_policy=self._removal,
            reserved_concurrency=fn.concurrency, layers=[self._code.deno_layer], vpc=database.vpc,
            security_groups=[database.lambda_security_group] if database.lambda_security_group else [])
        grant(self._tables.spans, made.role, SPAN_WRITER)
        self._secrets.grant_read(made.role, secrets)
        database.grant_connect(made.role)
        for name in sends.to:
            sqs_send(self._queues.by_function[name].queue, made)
        if self._tables.jobs is not None and sends.job_actions:
            grant(self._tables.jobs, made.role, sends.job_actions)
        return made


def _json(value: Mapping[str, str], scope: Construct) -> str:
    """A JSON object whose values may be CloudFormation tokens (queue URLs)."""
    return Stack.of(scope).to_json_string(dict(value))
