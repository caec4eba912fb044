"""Names the stack and the Lambda code must agree on: handler strings and environment variables.

infra/ writes them into the template and functions/aws/ reads them back, both from
this one module, so a renamed variable cannot leave one side behind. Nothing here
imports boto3 or the CDK: it is plain data.
"""

from __future__ import annotations

from typing import Final

# -- entry points (the Lambda ``Handler`` property) -------------------------------------------------------
HTTP_HANDLER: Final = "functions.aws.entry_http.handler"
WORKER_HANDLER: Final = "functions.aws.entry_worker.handler"
AUTHORIZER_HANDLER: Final = "functions.aws.entry_authorizer.handler"
ENGINE_HANDLER: Final = "functions.aws.entry_engine.handler"
OBSERVABILITY_HANDLER: Final = "functions.aws.entry_observability.handler"

# -- where the bundle puts things ----------------------------------------------------------------------------
TASK_ROOT: Final = "/var/task"
BUNDLE_PROJECT_DIR: Final = "project"
BUNDLE_DENO_DIR: Final = "deno_dir"
DENO_IN_LAYER: Final = "/opt/bin/deno"
# Set by Lambda in every execution environment (and only there): entry modules build their state at import
# (INIT) when it is present, and stay inert when a test or a tool imports them.
LAMBDA_RUNTIME_API: Final = "AWS_LAMBDA_RUNTIME_API"

# -- the project and the function a container serves --------------------------------------------------------
PROJECT_DIR: Final = "FLUX_PROJECT_DIR"
FUNCTION: Final = "FLUX_FUNCTION"
STAGE: Final = "FLUX_STAGE"
DENO: Final = "FLUX_DENO"
DENO_DIR: Final = "FLUX_DENO_DIR"
STATE_DIR: Final = "FLUX_STATE_DIR"
EXPOSE_ERRORS: Final = "FLUX_EXPOSE_ERRORS"
STATEMENT_TIMEOUT_MS: Final = "FLUX_STATEMENT_TIMEOUT_MS"

# -- AWS resources -------------------------------------------------------------------------------------------
SECRETS_PREFIX: Final = "FLUX_SECRETS_PREFIX"
SPANS_TABLE: Final = "SPANS_TABLE"
SPANS_SHARDS: Final = "SPANS_SHARDS"
KEYS_TABLE: Final = "KEYS_TABLE"
RATE_LIMIT_TABLE: Final = "RATE_LIMIT_TABLE"
QUEUE_URLS: Final = "FLUX_QUEUE_URLS"
DLQ_URLS: Final = "FLUX_DLQ_URLS"
JOBS_TABLE: Final = "FLUX_JOBS_TABLE"
ENGINE_FUNCTION: Final = "ENGINE_FUNCTION"

# -- the database --------------------------------------------------------------------------------------------
DATABASE_URL: Final = "DATABASE_URL"
# The runtime's DATABASE_SECRET_ARN is the application role's secret (DML only); the engine's is the owner's
# (master) secret, and the engine alone also gets DATABASE_APP_SECRET_ARN, to create the role and set its password.
DATABASE_SECRET_ARN: Final = "DATABASE_SECRET_ARN"  # noqa: S105 - a variable name, not a secret
DATABASE_APP_SECRET_ARN: Final = "DATABASE_APP_SECRET_ARN"  # noqa: S105 - a variable name, not a secret
DATABASE_HOST: Final = "DATABASE_HOST"
DATABASE_PORT: Final = "DATABASE_PORT"   # with DATABASE_HOST: the cluster's port (the application secret has none)
DATABASE_SSLMODE: Final = "DATABASE_SSLMODE"
SCHEMA_DIR: Final = "FLUX_SCHEMA_DIR"

# -- observability and engine settings -----------------------------------------------------------------------
SLOW_QUERY_MS: Final = "SLOW_QUERY_MS"
N_PLUS_ONE_THRESHOLD: Final = "N_PLUS_ONE_THRESHOLD"
RETENTION_DAYS: Final = "RETENTION_DAYS"
API_PREFIX: Final = "API_PREFIX"
DASHBOARD_PATH: Final = "DASHBOARD_PATH"

# -- stack outputs the CLI reads (``flux db migrate --stage``, ``flux queue ... --stage``) ----------------------
OUTPUT_ENGINE_FUNCTION: Final = "EngineFunctionName"
OUTPUT_QUEUE_URLS: Final = "QueueUrls"
OUTPUT_DLQ_URLS: Final = "DlqUrls"
OUTPUT_JOBS_TABLE: Final = "JobsTableName"
OUTPUT_KEYS_TABLE: Final = "KeysTableName"
OUTPUT_API_URL: Final = "ApiUrl"
