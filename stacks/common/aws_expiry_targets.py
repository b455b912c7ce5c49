"""The in-cloud expiry as data: which EventBridge Scheduler schedules stop what, as whom.

One function builds every schedule's target ARN and input (:func:`expiry_schedules`), and one
the execution role's policy (:func:`role_policy`); the Pulumi program
(``stacks/aws/expiry.py``), the runtime functions (``stacks/common/aws_expiry.py``) and the
tests all call these, so what is deployed and what is tested cannot drift apart.

Targets are Scheduler's universal targets (``arn:aws:scheduler:::aws-sdk:service:apiAction``):
Scheduler calls the API itself, no Lambda. Inputs use the SDK's PascalCase member names.
No SDK is imported here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stacks.common.aws_naming import physical_name
from stacks.common.tags import STACK_ID_TAG

# RDS starts a stopped instance again after 7 days; re-stop it daily from the expiry on.
RESTOP_EXPRESSION = "rate(1 day)"
TIMEZONE = "UTC"


@dataclass(frozen=True)
class StackCoordinates:
    """What bills by the hour in one stack, by resolved name or ARN (None: not in the stack)."""

    stack_id: str
    region: str
    account_id: str
    partition: str = "aws"
    cluster: str | None = None  # ECS cluster name
    services: dict[str, str] = field(default_factory=dict)  # label -> ECS service name
    db_instance: str | None = None  # RDS instance identifier
    compute_environment: str | None = None  # Batch compute environment name
    load_balancer_arn: str | None = None
    endpoints: bool = False  # SageMaker endpoints may be created at run time

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{resource}"


@dataclass(frozen=True)
class ScheduleDef:
    """One schedule: when, which API with which input, and the one IAM grant it needs."""

    name: str
    expression: str
    target_arn: str
    input: dict[str, Any]
    action: str  # the IAM action the target API needs
    resource: str  # the one resource it acts on
    description: str
    start_date: str | None = None  # recurring schedules begin at the expiry
    retry_attempts: int = 3

    def input_json(self) -> str:
        return json.dumps(self.input, sort_keys=True)

    @property
    def service(self) -> str:
        """``ecs`` of ``arn:aws:scheduler:::aws-sdk:ecs:updateService``."""
        return self.target_arn.split(":")[-2]

    @property
    def api_action(self) -> str:
        return self.target_arn.split(":")[-1]


def expiry_instant(expires_at: str | datetime) -> datetime:
    """The expiry as an aware UTC datetime, from ``2030-01-01T08:00:00Z`` or a datetime."""
    if isinstance(expires_at, datetime):
        when = expires_at
    else:
        when = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(microsecond=0)


def at_expression(expires_at: str | datetime) -> str:
    """Scheduler's one-time expression ``at(yyyy-mm-ddThh:mm:ss)`` (in :data:`TIMEZONE`)."""
    return f"at({expiry_instant(expires_at).strftime('%Y-%m-%dT%H:%M:%S')})"


def iso(expires_at: str | datetime) -> str:
    return expiry_instant(expires_at).strftime("%Y-%m-%dT%H:%M:%SZ")


def universal_target(service: str, action: str, partition: str = "aws") -> str:
    return f"arn:{partition}:scheduler:::aws-sdk:{service}:{action}"


def expiry_schedules(coords: StackCoordinates, expires_at: str | datetime) -> list[ScheduleDef]:
    """Every schedule that stops what bills by the hour once the stack expires."""
    at = at_expression(expires_at)
    p = coords.partition
    found: list[ScheduleDef] = []
    if coords.cluster:
        for label, service in sorted(coords.services.items()):
            found.append(
                ScheduleDef(
                    name=physical_name(coords.stack_id, f"stop-{label}", 64),
                    expression=at,
                    target_arn=universal_target("ecs", "updateService", p),
                    input={"Cluster": coords.cluster, "Service": service, "DesiredCount": 0},
                    action="ecs:UpdateService",
                    resource=coords.arn("ecs", f"service/{coords.cluster}/{service}"),
                    description=f"mlstack {coords.stack_id} expiry: {label} service to 0 tasks",
                )
            )
    if coords.db_instance:
        stop_db = {"DbInstanceIdentifier": coords.db_instance}
        db_arn = coords.arn("rds", f"db:{coords.db_instance}")
        found.append(
            ScheduleDef(
                name=physical_name(coords.stack_id, "stop-db", 64),
                expression=at,
                target_arn=universal_target("rds", "stopDBInstance", p),
                input=stop_db,
                action="rds:StopDBInstance",
                resource=db_arn,
                description=f"mlstack {coords.stack_id} expiry: stop the database instance",
            )
        )
        found.append(
            ScheduleDef(
                name=physical_name(coords.stack_id, "restop-db", 64),
                expression=RESTOP_EXPRESSION,
                start_date=iso(expires_at),
                target_arn=universal_target("rds", "stopDBInstance", p),
                input=stop_db,
                action="rds:StopDBInstance",
                resource=db_arn,
                description=(
                    f"mlstack {coords.stack_id} expiry: stop the database again (RDS restarts"
                    " a stopped instance after 7 days) until down"
                ),
                retry_attempts=0,  # an already stopped instance refuses: nothing to retry
            )
        )
    if coords.compute_environment:
        name = coords.compute_environment
        found.append(
            ScheduleDef(
                name=physical_name(coords.stack_id, "stop-batch", 64),
                expression=at,
                target_arn=universal_target("batch", "updateComputeEnvironment", p),
                input={"ComputeEnvironment": name, "ComputeResources": {"MaxvCpus": 0}},
                action="batch:UpdateComputeEnvironment",
                resource=coords.arn("batch", f"compute-environment/{name}"),
                description=f"mlstack {coords.stack_id} expiry: Batch max vCPUs to 0",
            )
        )
    if coords.load_balancer_arn:
        found.append(
            ScheduleDef(
                name=physical_name(coords.stack_id, "delete-lb", 64),
                expression=at,
                target_arn=universal_target("elasticloadbalancingv2", "deleteLoadBalancer", p),
                input={"LoadBalancerArn": coords.load_balancer_arn},
                action="elasticloadbalancing:DeleteLoadBalancer",
                resource=coords.load_balancer_arn,
                description=f"mlstack {coords.stack_id} expiry: delete the load balancer",
            )
        )
    return found


def endpoint_schedule_name(stack_id: str, endpoint_name: str) -> str:
    digest = hashlib.sha256(endpoint_name.encode()).hexdigest()[:12]
    return physical_name(stack_id, f"delete-ep-{digest}", 64)


def endpoint_schedule(
    coords: StackCoordinates, endpoint_name: str, expires_at: str | datetime
) -> ScheduleDef:
    """The delete schedule of one SageMaker endpoint created at run time."""
    return ScheduleDef(
        name=endpoint_schedule_name(coords.stack_id, endpoint_name),
        expression=at_expression(expires_at),
        target_arn=universal_target("sagemaker", "deleteEndpoint", coords.partition),
        input={"EndpointName": endpoint_name},
        action="sagemaker:DeleteEndpoint",
        resource=coords.arn("sagemaker", f"endpoint/{endpoint_name}"),
        description=f"mlstack {coords.stack_id} expiry: delete endpoint {endpoint_name}",
    )


def endpoint_arn_pattern(coords: StackCoordinates) -> str:
    """The stack's endpoint names (the runner names them ``mlstack-<stack id>-...``)."""
    return coords.arn("sagemaker", f"endpoint/{physical_name(coords.stack_id)}-*")


def role_policy(coords: StackCoordinates, expires_at: str | datetime) -> dict[str, Any]:
    """Allow exactly the schedules' calls on exactly their resources, nothing else."""
    grants: dict[str, list[str]] = {}
    for schedule in expiry_schedules(coords, expires_at):
        resources = grants.setdefault(schedule.action, [])
        if schedule.resource not in resources:
            resources.append(schedule.resource)
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": [action], "Resource": resources}
        for action, resources in grants.items()
    ]
    if coords.endpoints:
        # Endpoint names are only a prefix; the tag condition makes the grant exact.
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["sagemaker:DeleteEndpoint"],
                "Resource": [endpoint_arn_pattern(coords)],
                "Condition": {"StringEquals": {f"aws:ResourceTag/{STACK_ID_TAG}": coords.stack_id}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def trust_policy(account_id: str) -> dict[str, Any]:
    """Scheduler may assume the role, for schedules of this account only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ],
    }
