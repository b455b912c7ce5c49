"""Secrets backend: AWS Secrets Manager under the stack's prefix ``mlstack/<stack id>/``.

Every secret is created with ``recovery_window_in_days=0``: ``down`` really deletes it, and a
re-created stack can reuse the names at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext

TOKEN_SECRET = "mlstack-metadata-token"
TRACKER_PASSWORD_SECRET = "mlstack-tracker-password"


@dataclass(frozen=True)
class StackSecret:
    """A secret and its (first) version: readers depend on the version, not just the name."""

    secret: aws.secretsmanager.Secret
    version: aws.secretsmanager.SecretVersion

    @property
    def arn(self) -> pulumi.Output[str]:
        return self.secret.arn


def stack_secret(
    ctx: AwsContext, key: str, value: pulumi.Input[str], parent: pulumi.Resource
) -> StackSecret:
    """A secret named ``<prefix><key>`` holding ``value`` (kept secret in Pulumi's state)."""
    secret = aws.secretsmanager.Secret(
        key,
        name=f"{ctx.secrets_prefix}{key}",
        recovery_window_in_days=0,
        description=f"mlstack stack {ctx.stack_id}: {key}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
    version = aws.secretsmanager.SecretVersion(
        f"{key}-value",
        secret_id=secret.id,
        secret_string=pulumi.Output.secret(value),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return StackSecret(secret, version)


class SecretsBackend(pulumi.ComponentResource):
    """The stack's prefix in Secrets Manager, seeded with the metadata server's token."""

    TYPE = "mlstack:aws:SecretsBackend"

    def __init__(
        self,
        ctx: AwsContext,
        metadata_token: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "secrets", None, opts)
        self.token = stack_secret(ctx, TOKEN_SECRET, metadata_token, self)
        self.register_outputs({"prefix": ctx.secrets_prefix})

    def outputs(self, ctx: AwsContext) -> dict[str, object]:
        return {"kind": "aws_secrets_manager", "prefix": ctx.secrets_prefix, "region": ctx.region}
