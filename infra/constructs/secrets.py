"""The project's secrets in Secrets Manager: ``flux/<project>/<stage>/<NAME>``.

The stack does not create them: `flux secrets set NAME --stage <stage>` does
(functions/runtime/aws_secrets.py), and ``ctx.secrets.get`` reads them through the
same port. The stack only decides who may read what:

* runtime Lambdas: ``GetSecretValue`` on exactly the secrets their function's
  invoke closure declares in flux.json ``secrets`` (infra/plan.py), one ARN each,
  never a prefix wildcard; a function that declares none gets no statement at all
  (the database secret is granted separately, by infra/constructs/database.py);
  nothing else in Secrets Manager (no List, no Put);
* the authorizer: only the one HS* JWT secret named by ``auth.jwt.secret_name``,
  when there is one.

Secrets Manager appends ``-XXXXXX`` to every secret's ARN, hence the ``-??????``
suffix when one secret is meant.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct


class ProjectSecrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.prefix = prefix

    def _arn(self, resource_name: str) -> str:
        return Stack.of(self).format_arn(service="secretsmanager", resource="secret", resource_name=resource_name,
                                         arn_format=ArnFormat.COLON_RESOURCE_NAME)

    def arn_of(self, name: str) -> str:
        """The ARN pattern of the one secret ``NAME`` of this stage (any random suffix, nothing longer)."""
        return self._arn(f"{self.prefix}{name}-??????")

    def grant_read(self, grantee: iam.IGrantable, names: tuple[str, ...] | list[str]) -> None:
        """GetSecretValue on each named secret; nothing at all for no names."""
        if names:
            iam.Grant.add_to_principal(grantee=grantee, actions=["secretsmanager:GetSecretValue"],
                                       resource_arns=[self.arn_of(name) for name in sorted(set(names))])

    def grant_read_one(self, grantee: iam.IGrantable, name: str) -> None:
        self.grant_read(grantee, [name])
