"""The HTTP API: one route per function, the observability routes, CORS, throttling and access logs.

* Function routes: ``<METHOD> <route>`` exactly as flux.json declares them (API
  Gateway's ``{param}`` syntax is Flux's), each integrated with its own runtime
  Lambda (payload 2.0) and guarded by the authorizer flavour the plan chose.
* ``GET /_flux`` and ``GET /_flux/{proxy+}``: the observability API and dashboard.
* ``$default``: also the observability Lambda, whose router answers anything it
  does not know with Flux's own 404 body (``route_not_found`` with a request id)
  instead of API Gateway's bare ``{"message": "Not Found"}``.
* CORS preflight from flux.json's ``cors`` (no CORS at all when no origin is listed).
* Throttling: a stage-wide default (``STAGE_RATE_LIMIT``/``STAGE_BURST_LIMIT``) and
  lower limits on the unauthenticated routes that reach the observability Lambda
  (``$default`` and both ``/_flux`` routes), so anonymous traffic cannot take the
  stage's whole rate; each Lambda's reserved concurrency bounds what any route can
  take of the account. Per-caller limits are the authorizer's job.
* Access logs (JSON, no headers, so no credentials) to a log group of the stack.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.gateway.cors import allowed_headers
from infra.constructs.authorizer import FluxAuthorizer
from infra.constructs.function import log_retention
from infra.plan import (
    DEFAULT_ROUTE_BURST_LIMIT,
    DEFAULT_ROUTE_RATE_LIMIT,
    FLUX_ROUTE_BURST_LIMIT,
    FLUX_ROUTE_RATE_LIMIT,
    STAGE_BURST_LIMIT,
    STAGE_RATE_LIMIT,
    StackPlan,
)

EXPOSED_HEADERS = ["x-request-id", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]
ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","time":"$context.requestTime",'
    '"routeKey":"$context.routeKey","status":"$context.status","latencyMs":"$context.responseLatency",'
    '"integrationLatencyMs":"$context.integrationLatency","authorizerError":"$context.authorizer.error",'
    '"integrationError":"$context.integrationErrorMessage","bytes":"$context.responseLength"}'
)


class FluxApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, plan: StackPlan,
                 functions: dict[str, lambda_.IFunction], authorizer: FluxAuthorizer,
                 observability: lambda_.IFunction, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        cors = None
        if plan.cors_origins:
            methods = sorted({fn.method for fn in plan.routed_functions} | {"OPTIONS"})
            cors = apigw.CorsPreflightOptions(
                allow_origins=list(plan.cors_origins), allow_headers=allowed_headers(plan.cors_headers),
                allow_methods=[apigw.CorsHttpMethod[m] for m in methods], expose_headers=EXPOSED_HEADERS,
                max_age=Duration.seconds(plan.cors_max_age_s))
        self.http_api = apigw.HttpApi(self, "HttpApi", api_name=plan.stack_name, cors_preflight=cors,
                                      create_default_stage=False,
                                      description=f"Flux {plan.project} ({plan.stage})")
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=log_retention(plan.retention_days),
                                         removal_policy=removal_policy)
        self.stage = apigw.HttpStage(self, "DefaultStage", http_api=self.http_api, stage_name="$default",
                                     auto_deploy=True,
                                     throttle=apigw.ThrottleSettings(rate_limit=STAGE_RATE_LIMIT,
                                                                     burst_limit=STAGE_BURST_LIMIT))
        cfn_stage = self.stage.node.default_child
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(  # type: ignore[union-attr]
            destination_arn=self.access_logs.log_group_arn, format=ACCESS_LOG_FORMAT)

        self.routes: dict[str, apigw.HttpRoute] = {}
        for fn in plan.routed_functions:
            integration = integrations.HttpLambdaIntegration(
                f"{fn.name}-integration", functions[fn.name], timeout=Duration.seconds(fn.integration_timeout_s))
            self.routes[fn.name] = apigw.HttpRoute(
                self, f"route-{fn.name}", http_api=self.http_api,
                route_key=apigw.HttpRouteKey.with_(fn.route, apigw.HttpMethod[fn.method]),
                integration=integration, authorizer=authorizer.for_function(fn))

        observe = integrations.HttpLambdaIntegration("observability-integration", observability,
                                                     timeout=Duration.seconds(29))
        for construct_id, key in (("route-flux-dashboard", apigw.HttpRouteKey.with_("/_flux", apigw.HttpMethod.GET)),
                                  ("route-flux-api", apigw.HttpRouteKey.with_("/_flux/{proxy+}",
                                                                              apigw.HttpMethod.GET)),
                                  ("route-default", apigw.HttpRouteKey.DEFAULT)):
            self.routes[construct_id] = apigw.HttpRoute(self, construct_id, http_api=self.http_api, route_key=key,
                                                        integration=observe)
        self._throttle_public_routes()

    def _throttle_public_routes(self) -> None:
        """Route-level limits for the unauthenticated observability routes. API Gateway refuses route settings
        for a route key that does not exist yet, so the stage waits for those routes."""
        limits = {"route-default": ("$default", DEFAULT_ROUTE_RATE_LIMIT, DEFAULT_ROUTE_BURST_LIMIT),
                  "route-flux-dashboard": ("GET /_flux", FLUX_ROUTE_RATE_LIMIT, FLUX_ROUTE_BURST_LIMIT),
                  "route-flux-api": ("GET /_flux/{proxy+}", FLUX_ROUTE_RATE_LIMIT, FLUX_ROUTE_BURST_LIMIT)}
        settings = {}
        for construct_id, (key, rate, burst) in limits.items():
            # RouteSettings is a free-form JSON map in CloudFormation: CDK writes its keys as given.
            settings[key] = {"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst}
            self.stage.node.add_dependency(self.routes[construct_id])
        cfn_stage = self.stage.node.default_child
        cfn_stage.route_settings = settings  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return self.http_api.api_endpoint
