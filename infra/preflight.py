"""Before a deployment touches anything: are there AWS credentials, a region, and a bootstrapped account?

Each problem is reported as what is missing and what to do about it, and all of
them at once (no region *and* no credentials is two lines, not two attempts).
The boto3 session is injectable so tests run against moto or against an empty
environment without any network call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.errors import InfraError

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
        identity = session.client("sts", region_name=region).get_caller_identity()
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

    client = session_factory().client("ssm", region_name=identity.region)
    try:
        client.get_parameter(Name=BOOTSTRAP_PARAMETER)
    except botocore_errors.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ParameterNotFound":
            return False
        return None
    return True
