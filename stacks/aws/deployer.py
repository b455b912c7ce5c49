"""Model deployer: a SageMaker execution role. Endpoints are created per deployment at run time.

The role reads this stack's bucket and pulls this stack's images; its log permissions cover
only endpoints whose names start with ``mlstack-<stack id>`` (the runner names them so and tags
them with the stack id).
"""

from __future__ import annotations

import pulumi

from stacks.aws.base import (
    AwsContext,
    allow,
    bucket_access,
    ecr_pull,
    policy_document,
    service_role,
)
from stacks.spec.aws import SageMakerDeployer


class ModelDeployer(pulumi.ComponentResource):
    """SageMaker execution role with least privilege to this stack's resources."""

    TYPE = "mlstack:aws:ModelDeployer"

    def __init__(
        self,
        ctx: AwsContext,
        *,
        bucket_arn: pulumi.Output[str],
        repository_arn: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "deployer", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        endpoint_logs = pulumi.Output.format(
            "arn:{0}:logs:{1}:{2}:log-group:/aws/sagemaker/Endpoints/{3}*",
            ctx.partition,
            ctx.region,
            ctx.account_id,
            ctx.name(),
        )
        self.role = service_role(
            "sagemaker",
            name=ctx.name("sagemaker", 64),
            service="sagemaker.amazonaws.com",
            policy=policy_document(
                *bucket_access(bucket_arn, write=False),
                *ecr_pull(repository_arn),
                allow(
                    [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    [endpoint_logs, endpoint_logs.apply(lambda arn: f"{arn}:*")],
                ),
                allow(["cloudwatch:PutMetricData"], ["*"]),
            ),
            opts=child,
        )
        self.register_outputs({"role_arn": self.role.arn})

    def outputs(self, ctx: AwsContext) -> dict[str, object]:
        deployer = ctx.ident.spec.components.deployer
        assert isinstance(deployer, SageMakerDeployer)  # built only for sagemaker
        return {
            "kind": "sagemaker",
            "role_arn": self.role.arn,
            "instance_type": deployer.instance_type,
        }
