"""One long-running container on ECS Fargate behind the stack's load balancer.

Shared by the tracker (MLflow) and the metadata server. Secrets reach the container from
Secrets Manager through the task definition (``valueFrom``), never through its command line;
the service is created only after every secret version it reads exists. Listeners speak HTTPS
only (the target groups are plain HTTP inside the VPC). The platform is linux/X86_64, which
the metadata image ``up`` builds is built for (:data:`PLATFORM`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext
from stacks.aws.network import Network
from stacks.aws.tls import SSL_POLICY, Tls

PLATFORM = "linux/amd64"  # the Docker platform of runtime_platform X86_64


@dataclass(frozen=True)
class Platform:
    """What every service runs on: cluster, load balancer, execution role, log group."""

    network: Network
    cluster: aws.ecs.Cluster
    load_balancer: aws.lb.LoadBalancer
    execution_role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    tls: Tls
    host: pulumi.Output[str]  # the name clients use: network.domain or the load balancer's

    def url(self, port: int) -> pulumi.Output[str]:
        return pulumi.Output.concat("https://", self.host, "" if port == 443 else f":{port}")


@dataclass(frozen=True)
class Container:
    """The container of one service and how the load balancer reaches it."""

    name: str
    image: pulumi.Input[str]
    port: int
    listener_port: int
    cpu: int  # Fargate CPU units (1024 = 1 vCPU)
    memory: int  # MiB
    command: list[str] = field(default_factory=list)
    entry_point: list[str] = field(default_factory=list)
    environment: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    secrets: dict[str, pulumi.Output[str]] = field(default_factory=dict)  # env name -> ARN
    # The secret versions behind ``secrets``: the service waits for them (RDS takes minutes).
    secret_versions: list[pulumi.Resource] = field(default_factory=list)
    health_path: str = "/health"
    grace_seconds: int = 60


def fargate_service(
    ctx: AwsContext,
    parent: pulumi.Resource,
    platform: Platform,
    container: Container,
    task_role_arn: pulumi.Input[str] | None = None,
) -> aws.ecs.Service:
    """Task definition, target group, listener and service for ``container``."""
    child = pulumi.ResourceOptions(parent=parent)
    definition: dict[str, Any] = {
        "name": container.name,
        "image": container.image,
        "essential": True,
        "portMappings": [{"containerPort": container.port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(container.environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(container.secrets.items())],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": platform.log_group.name,
                "awslogs-region": ctx.region,
                "awslogs-stream-prefix": container.name,
            },
        },
    }
    if container.command:
        definition["command"] = container.command
    if container.entry_point:
        definition["entryPoint"] = container.entry_point
    task = aws.ecs.TaskDefinition(
        f"{container.name}-task",
        family=ctx.name(container.name, 255),
        cpu=str(container.cpu),
        memory=str(container.memory),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
        execution_role_arn=platform.execution_role.arn,
        task_role_arn=task_role_arn,
        container_definitions=pulumi.Output.json_dumps([definition]),
        opts=child,
    )
    target = aws.lb.TargetGroup(
        f"{container.name}-target",
        name=ctx.name(container.name, 32),
        port=container.port,
        protocol="HTTP",
        target_type="ip",
        vpc_id=platform.network.vpc.id,
        deregistration_delay=10,
        health_check={"path": container.health_path, "matcher": "200", "interval": 15},
        opts=child,
    )
    listener = aws.lb.Listener(
        f"{container.name}-listener",
        load_balancer_arn=platform.load_balancer.arn,
        port=container.listener_port,
        protocol="HTTPS",
        certificate_arn=platform.tls.certificate_arn,
        ssl_policy=SSL_POLICY,
        default_actions=[{"type": "forward", "target_group_arn": target.arn}],
        opts=child,
    )
    return aws.ecs.Service(
        f"{container.name}-service",
        name=ctx.name(container.name, 255),
        cluster=platform.cluster.arn,
        task_definition=task.arn,
        desired_count=1,
        launch_type="FARGATE",
        network_configuration={
            "subnets": platform.network.subnet_ids,
            "security_groups": [platform.network.services_sg.id],
            "assign_public_ip": True,  # egress without a NAT gateway
        },
        load_balancers=[
            {
                "target_group_arn": target.arn,
                "container_name": container.name,
                "container_port": container.port,
            }
        ],
        health_check_grace_period_seconds=container.grace_seconds,
        propagate_tags="SERVICE",  # tasks carry the stack's tags too
        enable_ecs_managed_tags=True,
        wait_for_steady_state=False,
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=[listener, *container.secret_versions]
        ),
    )
