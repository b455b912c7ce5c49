"""Orchestrator: AWS Batch on Fargate. Nothing runs, and nothing bills, while no job is queued.

The job role may touch only this stack's bucket, secrets and repository; the execution role
only pulls this stack's images, writes this stack's job logs and reads this stack's secrets.
Job definitions are registered per pipeline step at run time.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.aws.base import (
    LOG_RETENTION_DAYS,
    AwsContext,
    allow,
    bucket_access,
    ecr_pull,
    policy_document,
    service_role,
)
from stacks.aws.network import Network


class Orchestrator(pulumi.ComponentResource):
    """Fargate compute environment (max vCPUs from the spec), job queue, roles, log group."""

    TYPE = "mlstack:aws:Orchestrator"

    def __init__(
        self,
        ctx: AwsContext,
        *,
        bucket_arn: pulumi.Output[str],
        repository_arn: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "orchestrator", None, opts)
        spec = ctx.ident.spec.components.orchestrator
        child = pulumi.ResourceOptions(parent=self)
        self.network = Network(ctx, pulumi.ResourceOptions(parent=self))
        self.log_group = aws.cloudwatch.LogGroup(
            "job-logs",
            name=f"/mlstack/{ctx.stack_id}/jobs",
            retention_in_days=LOG_RETENTION_DAYS,
            opts=child,
        )
        log_streams = ctx.log_group_arn(self.log_group)
        self.execution_role = service_role(
            "batch-execution",
            name=ctx.name("batch-exec", 64),
            service="ecs-tasks.amazonaws.com",
            policy=policy_document(
                *ecr_pull(repository_arn),
                allow(["logs:CreateLogStream", "logs:PutLogEvents"], [log_streams]),
                allow(["secretsmanager:GetSecretValue"], [ctx.secrets_arn_pattern()]),
            ),
            opts=child,
        )
        self.job_role = service_role(
            "job",
            name=ctx.name("batch-job", 64),
            service="ecs-tasks.amazonaws.com",
            policy=policy_document(
                *bucket_access(bucket_arn),
                allow(
                    ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    [ctx.secrets_arn_pattern()],
                ),
                *ecr_pull(repository_arn),
            ),
            opts=child,
        )
        self.compute = aws.batch.ComputeEnvironment(
            "compute",
            name=ctx.name("fargate", 128),
            type="MANAGED",
            compute_resources={
                "type": "FARGATE",
                "max_vcpus": spec.max_vcpus,
                "subnets": self.network.subnet_ids,
                "security_group_ids": [self.network.jobs_sg.id],
            },
            opts=child,
        )
        self.queue = aws.batch.JobQueue(
            "queue",
            name=ctx.name("queue", 128),
            priority=1,
            state="ENABLED",
            compute_environment_orders=[{"order": 1, "compute_environment": self.compute.arn}],
            opts=child,
        )
        self.register_outputs({"job_queue": self.queue.name})

    def outputs(self, ctx: AwsContext) -> dict[str, Any]:
        spec = ctx.ident.spec.components.orchestrator
        return {
            "kind": "aws_batch",
            "max_parallel": spec.max_parallel,
            "job_queue": self.queue.name,
            "job_role_arn": self.job_role.arn,
            "execution_role_arn": self.execution_role.arn,
            "log_group": self.log_group.name,
            "base_image": spec.base_image,
        }
