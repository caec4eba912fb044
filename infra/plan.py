"""The deployment plan: what the stack must contain, derived from a loaded project, with no CDK in sight.

The CDK constructs interpret this plan; keeping the decisions here (which routes
need the authorizer, Lambda timeouts and memory, queue settings) makes them plain
data that unit tests can check without synthesizing anything.

Authorizer placement. The REQUEST authorizer (functions/gateway) does two jobs:
authentication and rate limiting. A route needs it when its function has an auth
mode other than ``none`` *or* a rate limit; a public route without a rate limit
goes straight to its runtime Lambda. There is one authorizer, never cached and
without identity sources (see functions/gateway/authorizer.py): every request is
counted, both API key header forms work, a missing credential gets Flux's own 401
body, and a revoked key stops working at once.

Grants follow the call graph. ``ctx.function.invoke`` runs the callee in the
caller's own Lambda (the whole project is bundled), so a function's role needs the
secrets and queues of every function it can reach through ``invokes``: its invoke
closure (itself and ``invokes``, transitively). :func:`invoke_closure` computes it;
:class:`FunctionPlan` carries the union of the closure's ``secrets`` and ``pushes``,
which is everything the role is granted in Secrets Manager (besides the database
secret) and SQS.

Concurrency. Every Lambda has reserved concurrency: a function's own from flux.json
``concurrency`` (its HTTP Lambda and its worker alike; the worker's SQS event source
runs at most that many batches), the control Lambdas the constants below. Reserved
concurrency is both a floor (no hot route can starve the authorizer) and a ceiling
(no route, public or not, can take more of the account than its share).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from functions.shared.manifest import DEFAULT_CONCURRENCY, FunctionSpec, Project
from functions.shared.manifest_bundle import route_key
from infra.errors import InfraError
from infra.profile import StageProfile, stage_profile

AuthorizerKind = Literal["none", "request"]

# Over the function's own timeout_ms: cold start of Python + the Deno worker, DB connect, span flush.
TIMEOUT_HEADROOM_S = 10
LAMBDA_MAX_TIMEOUT_S = 900
HTTP_INTEGRATION_MAX_S = 29  # API Gateway HTTP APIs: 50 ms .. 29 s (CDK checks it)
# The Deno worker is capped at memory_mb of V8 heap; Python, the engine and Deno's own baseline need the rest.
MEMORY_OVERHEAD_MB = 384
MIN_MEMORY_MB = 512
MAX_MEMORY_MB = 10_240
# The queue consumer runs a batch's records one after another, so its timeout covers the whole batch.
QUEUE_BATCH_SIZE = 5
VISIBILITY_FACTOR = 6  # AWS: visibility timeout >= 6 x the consuming function's timeout
SQS_MAX_VISIBILITY_S = 43_200
SPANS_SHARDS = 8
STAGE_RATE_LIMIT = 500  # requests per second across the API (stage default)
STAGE_BURST_LIMIT = 1_000
# The unauthenticated routes that reach the observability Lambda: $default (Flux's 404 body) and /_flux (the
# dashboard and its API, which checks an admin key itself). Lower than the stage so they cannot use it all up.
DEFAULT_ROUTE_RATE_LIMIT = 10
DEFAULT_ROUTE_BURST_LIMIT = 20
FLUX_ROUTE_RATE_LIMIT = 25
FLUX_ROUTE_BURST_LIMIT = 50
RESERVED_PREFIX = "/_flux"
# Reserved concurrency of the control Lambdas. The authorizer answers in milliseconds (one DynamoDB read), so 25
# at once serve thousands of requests a second, the stage's whole rate; the observability API is an operator's
# tool; the engine runs migrations (one deploy at a time) and the dashboard's schema graph and advice.
AUTHORIZER_CONCURRENCY = 25
OBSERVABILITY_CONCURRENCY = 5
ENGINE_CONCURRENCY = 3
# AWS keeps at least this much of an account's concurrency unreserved (PutFunctionConcurrency refuses more).
UNRESERVED_MINIMUM = 100


@dataclass(frozen=True, slots=True)
class QueuePlan:
    fifo: bool
    max_receive_count: int
    visibility_timeout_s: int
    batch_size: int
    max_concurrency: int   # the event source's MaximumConcurrency: the worker's reserved concurrency, at most
    consumer_timeout_s: int


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    name: str
    method: str
    route: str
    auth: str
    rate_limited: bool
    authorizer: AuthorizerKind
    timeout_s: int
    memory_mb: int
    integration_timeout_s: int
    queue: QueuePlan | None
    internal: bool = False   # reached only by ctx.function.invoke and the queue: no API route
    concurrency: int = DEFAULT_CONCURRENCY  # reserved concurrency of its HTTP Lambda and of its worker
    invoke_closure: tuple[str, ...] = ()  # itself and every function it reaches through "invokes", sorted
    secrets: tuple[str, ...] = ()  # what the closure declares in "secrets": all its role may read by name
    pushes: tuple[str, ...] = ()   # what the closure declares in "pushes": the queues user code may send to

    @property
    def route_key(self) -> str:
        return route_key(self.method, self.route)

    @property
    def http_sends_to(self) -> tuple[str, ...]:
        """The queues the HTTP Lambda sends to: the closure's pushes; for an async function only its own queue,
        because its route only enqueues (the worker runs the code)."""
        return (self.name,) if self.queue is not None else self.pushes

    @property
    def http_secrets(self) -> tuple[str, ...]:
        """The secrets the HTTP Lambda reads: the closure's; none for an async function, whose route runs no
        user code."""
        return () if self.queue is not None else self.secrets

    @property
    def worker_sends_to(self) -> tuple[str, ...]:
        """The queues the worker Lambda sends to: the closure's pushes only (it settles its own queue's
        records through the event source's grants, never by sending)."""
        return self.pushes

    @property
    def reserved_concurrency(self) -> int:
        """What its Lambdas reserve together: the HTTP Lambda, and the worker of an async function."""
        return self.concurrency * (2 if self.queue is not None else 1)


@dataclass(frozen=True, slots=True)
class DatabasePlan:
    mode: Literal["none", "provision", "secret_arn", "url"]
    secret_arn: str | None = None
    app_role: str | None = "flux_app"   # the role user code connects as; None: as the owner (opted out)


@dataclass(frozen=True, slots=True)
class StackPlan:
    project: str
    stage: str
    functions: tuple[FunctionPlan, ...]
    database: DatabasePlan
    cors_origins: tuple[str, ...]
    cors_headers: tuple[str, ...]
    cors_max_age_s: int
    retention_days: int
    slow_query_ms: int
    n_plus_one_threshold: int
    jwt_secret_name: str | None
    profile: StageProfile

    @property
    def reserved_concurrency(self) -> int:
        """The account concurrency the stack reserves: every function's Lambdas and the control Lambdas."""
        engine = ENGINE_CONCURRENCY if self.database.mode != "none" else 0
        return sum(f.reserved_concurrency for f in self.functions) + AUTHORIZER_CONCURRENCY + \
            OBSERVABILITY_CONCURRENCY + engine

    @property
    def stack_name(self) -> str:
        return stack_name(self.project, self.stage)

    @property
    def proxy_name(self) -> str:
        return rds_name(f"{self.stack_name}-proxy")

    @property
    def cluster_name(self) -> str:
        """Fixed, so the Aurora log group (``/aws/rds/cluster/<name>/postgresql``) can be made with a retention
        before the cluster exports to it."""
        return rds_name(f"{self.stack_name}-db")

    @property
    def secrets_prefix(self) -> str:
        return f"flux/{self.project}/{self.stage}/"

    @property
    def routed_functions(self) -> tuple[FunctionPlan, ...]:
        """The functions with a public API route: all but the internal ones."""
        return tuple(f for f in self.functions if not f.internal)

    @property
    def async_functions(self) -> tuple[FunctionPlan, ...]:
        return tuple(f for f in self.functions if f.queue is not None)

    @property
    def retain_data(self) -> bool:
        """A prod-profile stage keeps its tables and database when the stack is deleted; others clean up."""
        return self.profile.retain

    def warnings(self) -> list[str]:
        notes = []
        for fn in self.functions:
            if fn.queue is None and fn.timeout_s - TIMEOUT_HEADROOM_S >= HTTP_INTEGRATION_MAX_S:
                notes.append(f"{fn.name}: timeout_ms is over API Gateway's {HTTP_INTEGRATION_MAX_S} s limit; "
                             f"HTTP callers get 503 after {HTTP_INTEGRATION_MAX_S} s (make it async for long work)")
        if self.database.mode == "none":
            notes.append("no database in flux.json (database.provision, secret_arn or url): ctx.db is unavailable")
        return notes


def stack_name(project: str, stage: str) -> str:
    return f"flux-{project}-{stage}"


RDS_NAME_MAX = 63


def rds_name(stack: str, max_length: int = RDS_NAME_MAX) -> str:
    """A physical RDS name (an RDS Proxy's) unique to ``stack``: RDS proxy names are unique per account and
    region. RDS rules: a letter first, then letters, digits and single hyphens, no trailing hyphen, at most
    63 characters; a name that does not fit keeps its start and ends with a hash of the whole stack name."""
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", stack.lower())).strip("-")
    if not name or not name[0].isalpha():
        name = f"flux-{name}".rstrip("-")
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(stack.encode("utf-8")).hexdigest()[:8]
    return f"{name[:max_length - 9].rstrip('-')}-{digest}"


def _lambda_timeout_s(timeout_ms: int) -> int:
    return min(LAMBDA_MAX_TIMEOUT_S, math.ceil(timeout_ms / 1000) + TIMEOUT_HEADROOM_S)


def _lambda_memory_mb(memory_mb: int) -> int:
    wanted = max(MIN_MEMORY_MB, memory_mb + MEMORY_OVERHEAD_MB)
    return min(MAX_MEMORY_MB, math.ceil(wanted / 64) * 64)


def invoke_closure(specs: Mapping[str, FunctionSpec], name: str) -> tuple[str, ...]:
    """``name`` and every function it reaches through ``invokes``, transitively (cycles included once), sorted.
    The loader has checked that every ``invokes`` entry is a function of the project."""
    seen = {name}
    todo = [name]
    while todo:
        for callee in specs[todo.pop()].invokes:
            if callee not in seen:
                seen.add(callee)
                todo.append(callee)
    return tuple(sorted(seen))


def closure_grants(specs: Mapping[str, FunctionSpec], name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(secrets, pushes) of ``name``'s invoke closure, each sorted and without repeats."""
    closure = [specs[member] for member in invoke_closure(specs, name)]
    secrets = sorted({secret for spec in closure for secret in spec.secrets})
    pushes = sorted({target for spec in closure for target in spec.pushes})
    return tuple(secrets), tuple(pushes)


def queue_plan(spec: FunctionSpec) -> QueuePlan:
    per_job_s = math.ceil(spec.config.timeout_ms / 1000)
    batch = max(1, min(QUEUE_BATCH_SIZE, (LAMBDA_MAX_TIMEOUT_S - TIMEOUT_HEADROOM_S) // per_job_s))
    if spec.config.ordering is not None:
        # FIFO: records skipped behind a failed one still have their receive count raised by SQS, so a
        # batch larger than one could redrive a group's later jobs to the DLQ without ever running them.
        batch = 1
    consumer_timeout = min(LAMBDA_MAX_TIMEOUT_S, batch * per_job_s + TIMEOUT_HEADROOM_S)
    return QueuePlan(
        fifo=spec.config.ordering is not None,
        max_receive_count=spec.config.retry.max_attempts,
        visibility_timeout_s=min(SQS_MAX_VISIBILITY_S, VISIBILITY_FACTOR * consumer_timeout),
        batch_size=batch,
        max_concurrency=spec.config.concurrency,
        consumer_timeout_s=consumer_timeout,
    )


def authorizer_kind(spec: FunctionSpec) -> AuthorizerKind:
    if spec.rate_limit is not None or spec.auth != "none":
        return "request"
    return "none"


def function_plan(spec: FunctionSpec, specs: Mapping[str, FunctionSpec] | None = None) -> FunctionPlan:
    """``specs`` are the project's functions, for the invoke closure (a function alone when not given)."""
    specs = specs if specs is not None else {spec.name: spec}
    timeout_s = _lambda_timeout_s(spec.config.timeout_ms)
    secrets, pushes = closure_grants(specs, spec.name)
    return FunctionPlan(
        name=spec.name, method=spec.method, route=spec.route, auth=spec.auth,
        rate_limited=spec.rate_limit is not None, authorizer=authorizer_kind(spec),
        timeout_s=timeout_s, memory_mb=_lambda_memory_mb(spec.config.memory_mb),
        integration_timeout_s=min(HTTP_INTEGRATION_MAX_S, timeout_s),
        queue=queue_plan(spec) if spec.is_async else None, internal=spec.internal,
        concurrency=spec.config.concurrency, invoke_closure=invoke_closure(specs, spec.name),
        secrets=secrets, pushes=pushes,
    )


def database_plan(project: Project) -> DatabasePlan:
    database = project.config.database
    role = database.app_role_name
    if database.provision:
        return DatabasePlan("provision", app_role=role)
    if database.secret_arn:
        return DatabasePlan("secret_arn", database.secret_arn, app_role=role)
    if database.url:
        return DatabasePlan("url", app_role=role)
    return DatabasePlan("none")


def plan_stack(project: Project, stage: str) -> StackPlan:
    """The plan for ``project`` at ``stage``; :class:`InfraError` for what no deployment could satisfy."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,19}", stage or ""):
        raise InfraError(f"stage {stage!r}: use letters, digits and '-', starting with a letter (at most 20)")
    reserved = [s.name for s in project.functions.values() if not s.internal and (
                s.route == RESERVED_PREFIX or s.route.startswith(RESERVED_PREFIX + "/"))]
    if reserved:
        raise InfraError(f"routes under {RESERVED_PREFIX} belong to the observability API; "
                         f"move function(s) {', '.join(sorted(reserved))}")
    config = project.config
    jwt = config.auth.jwt
    needs_internet = any(spec.config.allow_net for spec in project.functions.values())
    return StackPlan(
        project=config.name, stage=stage,
        functions=tuple(function_plan(spec, project.functions)
                        for spec in sorted(project.functions.values(), key=lambda s: s.name)),
        database=database_plan(project),
        cors_origins=tuple(config.cors.origins), cors_headers=tuple(config.cors.headers),
        cors_max_age_s=config.cors.max_age,
        retention_days=config.observability.retention_days,
        slow_query_ms=config.observability.slow_query_ms,
        n_plus_one_threshold=config.observability.n_plus_one_threshold,
        jwt_secret_name=jwt.secret_name if jwt is not None else None,
        profile=stage_profile(config, stage, needs_internet=needs_internet,
                              retention_days=config.observability.retention_days),
    )
