"""Before a deployment touches anything: are there AWS credentials, a region, a bootstrapped account, and
room in the account's Lambda concurrency for what the stack reserves?

Each problem is reported as what is missing and what to do about it, and all of
them at once (no region *and* no credentials is two lines, not two attempts).
The boto3 session is injectable so tests run against moto or against an empty
environment without any network call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.shared.aws_clients import session_client
from infra.errors import InfraError
from infra.plan import UNRESERVED_MINIMUM

BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_REJECTED = {"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "AccessDenied",
             "AuthFailure", "InvalidAccessKeyId"}


class PreflightFailed(InfraError):
    """The deployment cannot start; ``problems`` are (what is missing, what to do) pairs."""

    status, code = 400, "aws_not_ready"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(what for what, _ in problems))


@dataclass(frozen=True, slots=True)
class Identity:
    account: str
    arn: str
    region: str


def _default_session() -> Any:
    import boto3

    return boto3.session.Session()


def check_identity(session_factory: Callable[[], Any] = _default_session) -> Identity:
    """Who deploys where: STS ``GetCallerIdentity`` with the default credential chain."""
    from botocore import exceptions as botocore_errors

    try:
        session = session_factory()
    except botocore_errors.ProfileNotFound as exc:
        raise PreflightFailed([(f"AWS profile {exc.kwargs.get('profile')!r} does not exist",
                                "check AWS_PROFILE, or create the profile with `aws configure --profile NAME`")]) \
            from None
    problems: list[tuple[str, str]] = []
    region = session.region_name
    if not region:
        problems.append(("no AWS region is set",
                         "set AWS_REGION (or AWS_DEFAULT_REGION), or `region` in your AWS profile"))
    try:
        credentials = session.get_credentials()
    except (botocore_errors.TokenRetrievalError, botocore_errors.SSOTokenLoadError,
            botocore_errors.UnauthorizedSSOTokenError) as exc:
        raise PreflightFailed([*problems, ("your AWS SSO session has expired or was never started",
                                           f"run `aws sso login` for this profile ({exc.__class__.__name__})")]) \
            from None
    if credentials is None:
        problems.append(("no AWS credentials were found",
                         "set AWS_PROFILE (after `aws configure` or `aws sso login`), or AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary credentials)"))
    if problems:
        raise PreflightFailed(problems)
    try:
        identity = session_client(session, "sts", region=region).get_caller_identity()
    except botocore_errors.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _EXPIRED:
            raise PreflightFailed([("your AWS credentials have expired",
                                    "refresh them (`aws sso login`, or new temporary keys) and run this again")]) \
                from None
        if code in _REJECTED:
            raise PreflightFailed([(f"AWS rejected the credentials ({code})",
                                    "check the access key, secret and session token, or the profile in use")]) \
                from None
        raise PreflightFailed([(f"AWS STS refused GetCallerIdentity ({code})", "check the credentials")]) from None
    except (botocore_errors.TokenRetrievalError, botocore_errors.SSOTokenLoadError,
            botocore_errors.UnauthorizedSSOTokenError):
        raise PreflightFailed([("your AWS SSO session has expired", "run `aws sso login` for this profile")]) \
            from None
    except botocore_errors.EndpointConnectionError as exc:
        raise PreflightFailed([(f"cannot reach AWS STS in {region}",
                                f"check the network and the region name ({exc})")]) from None
    return Identity(account=str(identity["Account"]), arn=str(identity["Arn"]), region=str(region))


def check_bootstrap(identity: Identity, session_factory: Callable[[], Any] = _default_session) -> bool | None:
    """True when the CDK bootstrap stack's version parameter exists; None when we may not read it."""
    from botocore import exceptions as botocore_errors

    client = session_client(session_factory(), "ssm", region=identity.region)
    try:
        client.get_parameter(Name=BOOTSTRAP_PARAMETER)
    except botocore_errors.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ParameterNotFound":
            return False
        return None
    return True


@dataclass(frozen=True, slots=True)
class ConcurrencyRoom:
    """The account's Lambda concurrency (GetAccountSettings) against what a stack reserves."""

    limit: int
    unreserved: int
    reserving: int

    @property
    def reservable(self) -> int:
        """The most all functions of the account may reserve together: AWS keeps a minimum unreserved."""
        return max(0, self.limit - UNRESERVED_MINIMUM)

    def problems(self) -> list[tuple[str, str]]:
        """Fatal: the stack reserves more than the account could ever hold."""
        if self.reserving <= self.reservable:
            return []
        return [(f"this stack reserves {self.reserving} concurrent Lambda executions, but the account's limit is "
                 f"{self.limit} and AWS keeps {UNRESERVED_MINIMUM} of it unreserved, so at most {self.reservable} "
                 "can be reserved",
                 "lower \"concurrency\" in the functions' flux.json files (default 10 per function, twice for an "
                 "async one: its route and its worker), or ask AWS for more (Service Quotas: AWS Lambda, "
                 "'Concurrent executions'; new accounts start at 10)")]

    def warnings(self) -> list[str]:
        """Not fatal: the free part of the account looks too small, unless this stack already holds the
        reservations (a redeploy) or other stacks give some back."""
        free = self.unreserved - UNRESERVED_MINIMUM
        if self.reserving <= free or self.problems():
            return []
        return [f"the account has {self.unreserved} unreserved concurrent executions; reserving {self.reserving} "
                f"would leave fewer than AWS's minimum of {UNRESERVED_MINIMUM}: the deployment fails unless this "
                "stack already holds most of them (a redeploy)"]


def check_concurrency(identity: Identity, reserving: int,
                      session_factory: Callable[[], Any] = _default_session) -> ConcurrencyRoom | None:
    """The account's concurrency against ``reserving``; :class:`PreflightFailed` when it can never fit, None
    when we may not read the account settings (the deployment then finds out itself)."""
    from botocore import exceptions as botocore_errors

    client = session_client(session_factory(), "lambda", region=identity.region)
    try:
        limits = client.get_account_settings()["AccountLimit"]
    except (botocore_errors.ClientError, botocore_errors.EndpointConnectionError, KeyError):
        return None
    room = ConcurrencyRoom(limit=int(limits["ConcurrentExecutions"]),
                           unreserved=int(limits["UnreservedConcurrentExecutions"]), reserving=reserving)
    if room.problems():
        raise PreflightFailed(room.problems())
    return room
