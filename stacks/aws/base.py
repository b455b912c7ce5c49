"""What every AWS component shares: the stack's identity, names, tags, provider and policies.

Names are ``mlstack-<stack id>-<part>``: the stack id (``NAME-xxxxxx``) carries a random suffix
the engine draws once per stack, so two stacks never collide and a re-created stack gets fresh
names. Tags reach every taggable resource through the provider's ``default_tags``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.common.aws_naming import physical_name
from stacks.common.tags import stack_tags
from stacks.spec import AwsStackSpec as StackSpec

# Actions that AWS does not scope to a resource: the only statements allowed ``"Resource": "*"``.
UNSCOPED_ACTIONS = frozenset({"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"})
LOG_RETENTION_DAYS = 14


@dataclass(frozen=True)
class StackIdentity:
    """Who a stack is, as read from the Pulumi stack name and the ``mlstack:*`` config."""

    spec: StackSpec
    stack_id: str
    owner: str
    expires_at: str

    @classmethod
    def from_pulumi(cls, spec: StackSpec) -> StackIdentity:
        config = pulumi.Config("mlstack")
        return cls(
            spec=spec,
            stack_id=pulumi.get_stack(),
            owner=config.get("owner") or spec.owner or "unknown",
            expires_at=config.get("expiresAt") or "never",
        )

    @property
    def suffix(self) -> str:
        return self.stack_id.rsplit("-", 1)[-1]

    def name(self, part: str = "", limit: int = 63) -> str:
        """``mlstack-<stack id>[-part]``, shortened to ``mlstack-<suffix>-part`` past ``limit``."""
        return physical_name(self.stack_id, part, limit)

    def tags(self) -> dict[str, str]:
        """The tags every resource carries: stack id, owner, expiry, plus the spec's own tags."""
        return stack_tags(
            name=self.spec.name,
            stack_id=self.stack_id,
            owner=self.owner,
            expires_at=self.expires_at,
            extra=self.spec.tags,
        )


@dataclass(frozen=True)
class AwsContext:
    """The stack identity plus its AWS provider and account coordinates."""

    ident: StackIdentity
    provider: aws.Provider
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]

    @classmethod
    def create(cls, ident: StackIdentity) -> AwsContext:
        region = ident.spec.region
        assert region is not None  # the spec requires a region for aws stacks
        provider = aws.Provider(
            "aws",
            region=region,
            default_tags={"tags": ident.tags()},
        )
        invoke = pulumi.InvokeOutputOptions(provider=provider)
        identity = aws.get_caller_identity_output(opts=invoke)
        partition = aws.get_partition_output(opts=invoke)
        return cls(
            ident=ident,
            provider=provider,
            account_id=identity.account_id,
            partition=partition.partition,
        )

    @property
    def region(self) -> str:
        return self.ident.spec.region or ""

    @property
    def stack_id(self) -> str:
        return self.ident.stack_id

    def name(self, part: str = "", limit: int = 63) -> str:
        return self.ident.name(part, limit)

    def opts(self, parent: pulumi.Resource | None = None) -> pulumi.ResourceOptions:
        """Options for a component: the stack's provider (children inherit it)."""
        return pulumi.ResourceOptions(providers=[self.provider], parent=parent)

    @property
    def secrets_prefix(self) -> str:
        return f"mlstack/{self.stack_id}/"

    def secrets_arn_pattern(self) -> pulumi.Output[str]:
        """ARN pattern matching exactly this stack's secrets (Secrets Manager appends -XXXXXX)."""
        return pulumi.Output.format(
            "arn:{0}:secretsmanager:{1}:{2}:secret:{3}*",
            self.partition,
            self.region,
            self.account_id,
            self.secrets_prefix,
        )

    def log_group_arn(self, log_group: aws.cloudwatch.LogGroup) -> pulumi.Output[str]:
        return log_group.arn.apply(lambda arn: f"{arn.removesuffix(':*')}:*")


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def policy_document(*statements: dict[str, Any]) -> pulumi.Output[str]:
    """An IAM policy document; statements may hold Outputs (ARNs known after create)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def ecr_pull(repository_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """Pull images from this stack's repository (the token call has no resource scope)."""
    return [
        allow(["ecr:GetAuthorizationToken"], ["*"]),
        allow(
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            [repository_arn],
        ),
    ]


def bucket_access(bucket_arn: pulumi.Output[str], write: bool = True) -> list[dict[str, Any]]:
    """Read (and write) objects of this stack's bucket, and list it."""
    actions = ["s3:GetObject"] + (["s3:PutObject", "s3:DeleteObject"] if write else [])
    return [
        allow(["s3:ListBucket", "s3:GetBucketLocation"], [bucket_arn]),
        allow(actions, [bucket_arn.apply(lambda arn: f"{arn}/*")]),
    ]


def service_role(
    prefix: str,
    *,
    name: pulumi.Input[str],
    service: str,
    policy: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> aws.iam.Role:
    """An IAM role ``service`` may assume, with one inline policy (``PREFIX-role``/``-policy``)."""
    role = aws.iam.Role(
        f"{prefix}-role", name=name, assume_role_policy=assume_role_policy(service), opts=opts
    )
    aws.iam.RolePolicy(f"{prefix}-policy", role=role.id, policy=policy, opts=opts)
    return role
