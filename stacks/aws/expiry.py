"""In-cloud expiry: EventBridge Scheduler schedules that stop what bills once the TTL is over.

A stack with a TTL gets one schedule group (``mlstack-<stack id>-expiry``) holding one-time
schedules at ``expires_at`` — each ECS service to 0 tasks, the RDS instance stopped (and
stopped again daily, since RDS restarts it after 7 days), the Batch compute environment's max
vCPUs to 0, the load balancer deleted — and a role allowed exactly those calls on exactly
those resources. They fire with the laptop off; the next ``reap`` or ``down`` finishes the job.
What each schedule calls is built by :mod:`stacks.common.aws_expiry_targets`.
"""

from __future__ import annotations

import functools
import json

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext
from stacks.common.aws_expiry_targets import (
    TIMEZONE,
    ScheduleDef,
    StackCoordinates,
    expiry_schedules,
    role_policy,
    trust_policy,
)
from stacks.common.aws_naming import expiry_group, expiry_role_name, physical_name

_PLACEHOLDER = "unresolved"


class Expiry(pulumi.ComponentResource):
    """Schedule group, execution role and one schedule per thing that bills by the hour."""

    TYPE = "mlstack:aws:Expiry"

    def __init__(
        self,
        ctx: AwsContext,
        *,
        expires_at: str,
        cluster: aws.ecs.Cluster,
        services: dict[str, aws.ecs.Service],
        db: aws.rds.Instance,
        compute: aws.batch.ComputeEnvironment,
        load_balancer: aws.lb.LoadBalancer,
        endpoints: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "expiry", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack_id = ctx.stack_id

        def coords(values: dict[str, object]) -> StackCoordinates:
            return StackCoordinates(
                stack_id=stack_id,
                region=ctx.region,
                account_id=str(values["account"]),
                partition=str(values["partition"]),
                cluster=str(values["cluster"]),
                services={k: str(v) for k, v in dict(values["services"]).items()},  # type: ignore[call-overload]
                db_instance=str(values["db"]),
                compute_environment=str(values["compute"]),
                load_balancer_arn=str(values["lb"]),
                endpoints=endpoints,
            )

        resolved = pulumi.Output.all(
            account=ctx.account_id,
            partition=ctx.partition,
            cluster=cluster.name,
            services={label: svc.name for label, svc in services.items()},
            db=db.identifier,
            compute=compute.name,
            lb=load_balancer.arn,
        ).apply(coords)
        # Which schedules exist is known now; their inputs once the names and ARNs resolve.
        shape = coords(
            {
                "account": _PLACEHOLDER,
                "partition": _PLACEHOLDER,
                "cluster": _PLACEHOLDER,
                "services": dict.fromkeys(services, _PLACEHOLDER),
                "db": _PLACEHOLDER,
                "compute": _PLACEHOLDER,
                "lb": _PLACEHOLDER,
            }
        )
        self.group = aws.scheduler.ScheduleGroup(
            "expiry-group", name=expiry_group(stack_id), opts=child
        )
        self.role = aws.iam.Role(
            "expiry-role",
            name=expiry_role_name(stack_id),
            assume_role_policy=ctx.account_id.apply(lambda a: json.dumps(trust_policy(a))),
            opts=child,
        )
        aws.iam.RolePolicy(
            "expiry-policy",
            role=self.role.id,
            policy=resolved.apply(lambda c: json.dumps(role_policy(c, expires_at))),
            opts=child,
        )
        self.schedules: list[aws.scheduler.Schedule] = []
        for planned in expiry_schedules(shape, expires_at):
            schedule = resolved.apply(functools.partial(_named, expires_at, planned.name))
            part = planned.name.removeprefix(f"{physical_name(stack_id)}-")
            self.schedules.append(
                aws.scheduler.Schedule(
                    f"expiry-{part}",
                    name=planned.name,
                    group_name=self.group.name,
                    description=planned.description,
                    schedule_expression=planned.expression,
                    schedule_expression_timezone=TIMEZONE,
                    start_date=planned.start_date,
                    flexible_time_window={"mode": "OFF"},
                    state="ENABLED",
                    target={
                        "arn": schedule.apply(lambda s: s.target_arn),
                        "role_arn": self.role.arn,
                        "input": schedule.apply(lambda s: s.input_json()),
                        "retry_policy": {"maximum_retry_attempts": planned.retry_attempts},
                    },
                    opts=child,
                )
            )
        self.register_outputs({"group": self.group.name})


def _named(expires_at: str, name: str, coords: StackCoordinates) -> ScheduleDef:
    return next(s for s in expiry_schedules(coords, expires_at) if s.name == name)
