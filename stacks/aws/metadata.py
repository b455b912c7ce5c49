"""Metadata server: mlstack's own server on ECS Fargate, PostgreSQL on RDS.

This component also owns what the stack's services share: the ECS cluster, the load balancer,
the services' execution role and log group, and the database instance (smallest class from the
spec, no final snapshot, no deletion protection). The metadata server uses database
``metadata``; the tracker creates its own database ``mlflow`` on the same instance.

Its image is ``components.metadata.image``; by default ``<stack registry>:metadata-<version>``,
which ``up`` builds and pushes (:mod:`stacks.aws.image`).
The load balancer's listeners speak HTTPS only (see :mod:`stacks.aws.tls`).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.aws.artifact_store import LOGS
from stacks.aws.base import (
    LOG_RETENTION_DAYS,
    AwsContext,
    allow,
    ecr_pull,
    policy_document,
    service_role,
)
from stacks.aws.image import metadata_image
from stacks.aws.network import Network
from stacks.aws.secrets import TOKEN_SECRET, StackSecret, stack_secret
from stacks.aws.service import Container, Platform, fargate_service
from stacks.aws.tls import Tls
from stacks.spec.aws import AwsMlflowTracker, AwsStackSpec

DB_USER = "mlstack"
DB_NAME = "metadata"
DB_ENGINE_VERSION = "16"
DB_STORAGE_GIB = 20
PORT = 8080
COMMAND = ["python", "-m", "runner.metadata.server", "--host", "0.0.0.0", "--port", str(PORT)]


def database_url(
    db: aws.rds.Instance, password: pulumi.Input[str], name: str
) -> pulumi.Output[str]:
    return pulumi.Output.secret(
        pulumi.Output.format(
            "postgresql://{0}:{1}@{2}:{3}/{4}", DB_USER, password, db.address, db.port, name
        )
    )


class MetadataServer(pulumi.ComponentResource):
    """Shared service platform + database instance + the metadata server itself."""

    TYPE = "mlstack:aws:MetadataServer"

    def __init__(
        self,
        ctx: AwsContext,
        *,
        network: Network,
        repository_url: pulumi.Output[str],
        repository_arn: pulumi.Output[str],
        token_secret: StackSecret,
        db_password: pulumi.Input[str],
        artifact_uri: pulumi.Input[str],
        bucket_arn: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "metadata", None, opts)
        spec = ctx.ident.spec
        child = pulumi.ResourceOptions(parent=self)
        self.db_password = db_password

        cluster = aws.ecs.Cluster("cluster", name=ctx.name("services", 255), opts=child)
        log_group = aws.cloudwatch.LogGroup(
            "service-logs",
            name=f"/mlstack/{ctx.stack_id}/services",
            retention_in_days=LOG_RETENTION_DAYS,
            opts=child,
        )
        execution_role = service_role(
            "service-execution",
            name=ctx.name("svc-exec", 64),
            service="ecs-tasks.amazonaws.com",
            policy=policy_document(
                *ecr_pull(repository_arn),
                allow(
                    ["logs:CreateLogStream", "logs:PutLogEvents"],
                    [ctx.log_group_arn(log_group)],
                ),
                allow(["secretsmanager:GetSecretValue"], [ctx.secrets_arn_pattern()]),
            ),
            opts=child,
        )
        load_balancer = aws.lb.LoadBalancer(
            "load-balancer",
            name=ctx.name("lb", 32),
            load_balancer_type="application",
            internal=False,
            security_groups=[network.alb_sg.id],
            subnets=network.subnet_ids,
            enable_deletion_protection=False,
            drop_invalid_header_fields=True,
            opts=child,
        )
        domain = spec.network.domain
        self.platform = Platform(
            network=network,
            cluster=cluster,
            load_balancer=load_balancer,
            execution_role=execution_role,
            log_group=log_group,
            tls=Tls.create(spec, self, ctx.name("tls")),
            host=pulumi.Output.from_input(domain) if domain else load_balancer.dns_name,
        )
        self.load_balancer_dns = load_balancer.dns_name

        subnet_group = aws.rds.SubnetGroup(
            "db-subnets", name=ctx.name("db", 255), subnet_ids=network.subnet_ids, opts=child
        )
        self.db = aws.rds.Instance(
            "db",
            identifier=ctx.name("db", 63),
            engine="postgres",
            engine_version=DB_ENGINE_VERSION,
            instance_class=db_instance_class(spec),
            allocated_storage=DB_STORAGE_GIB,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=DB_NAME,
            username=DB_USER,
            password=db_password,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[network.db_sg.id],
            publicly_accessible=False,
            multi_az=False,
            backup_retention_period=0,  # short-lived stacks: no automated backups to clean up
            skip_final_snapshot=True,
            deletion_protection=False,
            delete_automated_backups=True,
            apply_immediately=True,
            opts=child,
        )
        url_secret = stack_secret(
            ctx, "metadata-database-url", database_url(self.db, db_password, DB_NAME), self
        )
        # The dashboard reads step logs from the bucket, and only those: read-only, logs/ only.
        task_role = service_role(
            "metadata-task",
            name=ctx.name("metadata", 64),
            service="ecs-tasks.amazonaws.com",
            policy=policy_document(*log_read(bucket_arn)),
            opts=child,
        )
        image = spec.components.metadata.image or metadata_image(
            repository_url, spec.components.orchestrator.base_image
        )
        self.service = fargate_service(
            ctx,
            self,
            self.platform,
            Container(
                name="metadata",
                image=image,
                port=PORT,
                listener_port=PORT,
                cpu=256,
                memory=512,
                command=COMMAND,
                environment={"MLSTACK_METADATA_ARTIFACT_ROOT": artifact_uri},
                secrets={
                    "MLSTACK_METADATA_TOKEN": token_secret.arn,
                    "MLSTACK_METADATA_DATABASE_URL": url_secret.arn,
                },
                secret_versions=[token_secret.version, url_secret.version],
            ),
            task_role_arn=task_role.arn,
        )
        self.url = self.platform.url(PORT)
        self.register_outputs({"url": self.url})

    def outputs(self) -> dict[str, object]:
        return {"url": self.url, "token_secret": TOKEN_SECRET, "ca_pem": self.platform.tls.ca_pem}


def log_read(bucket_arn: pulumi.Output[str]) -> list[dict[str, Any]]:
    """Read the step logs of this stack's bucket: GetObject under ``logs/``, and ListBucket
    there (without it S3 answers a missing log with 403, not 404)."""
    listing = allow(["s3:ListBucket"], [bucket_arn])
    listing["Condition"] = {"StringLike": {"s3:prefix": [f"{LOGS}*"]}}
    return [listing, allow(["s3:GetObject"], [bucket_arn.apply(lambda arn: f"{arn}/{LOGS}*")])]


def db_instance_class(spec: AwsStackSpec) -> str:
    """The RDS class: the mlflow tracker's setting (the database serves both), else the default."""
    tracker = spec.components.tracker
    if isinstance(tracker, AwsMlflowTracker):
        return tracker.db_instance_class
    return AwsMlflowTracker.model_fields["db_instance_class"].default
