"""The expiry schedules at run time (boto3): endpoint delete schedules, ``extend``, ``down``.

Every schedule of a stack lives in its group ``mlstack-<stack id>-expiry``; a group is used
only when it carries the stack's exact ``mlstack:stack-id`` tag. The schedules the Pulumi
program declares and the ones created here come from :mod:`stacks.common.aws_expiry_targets`.
boto3 is imported inside the functions; clients honour ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stacks.common.aws_expiry_targets import (
    TIMEZONE,
    ScheduleDef,
    StackCoordinates,
    at_expression,
    endpoint_schedule,
    endpoint_schedule_name,
    expiry_instant,
)
from stacks.common.aws_naming import expiry_group, expiry_role_name
from stacks.common.tags import STACK_ID_TAG


class ExpiryError(Exception):
    """A stack's schedule group is missing or is not the stack's."""


def _session(session: Any, region: str | None) -> Any:
    if session is not None:
        return session
    import boto3

    return boto3.session.Session(region_name=region)


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("ResourceNotFoundException", "NoSuchEntity")


def ensure_group(stack_id: str, *, session: Any = None, region: str | None = None) -> str:
    """The stack's schedule group name; created (tagged) when absent, refused when not ours."""
    scheduler = _session(session, region).client("scheduler", region_name=region)
    name = expiry_group(stack_id)
    try:
        arn = scheduler.get_schedule_group(Name=name)["Arn"]
    except Exception as exc:
        if not _missing(exc):
            raise
        scheduler.create_schedule_group(Name=name, Tags=[{"Key": STACK_ID_TAG, "Value": stack_id}])
        return name
    tags = scheduler.list_tags_for_resource(ResourceArn=arn).get("Tags", [])
    if not any(t["Key"] == STACK_ID_TAG and t["Value"] == stack_id for t in tags):
        raise ExpiryError(f"schedule group {name} does not carry {STACK_ID_TAG}={stack_id}")
    return name


def create_schedule(
    schedule: ScheduleDef,
    *,
    group: str,
    role_arn: str,
    session: Any = None,
    region: str | None = None,
    delete_after: bool = False,
) -> str:
    """Create one schedule from its definition (the same fields the Pulumi program sets)."""
    scheduler = _session(session, region).client("scheduler", region_name=region)
    args: dict[str, Any] = {
        "Name": schedule.name,
        "GroupName": group,
        "Description": schedule.description,
        "ScheduleExpression": schedule.expression,
        "ScheduleExpressionTimezone": TIMEZONE,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Target": {
            "Arn": schedule.target_arn,
            "RoleArn": role_arn,
            "Input": schedule.input_json(),
            "RetryPolicy": {"MaximumRetryAttempts": schedule.retry_attempts},
        },
    }
    if schedule.start_date:
        args["StartDate"] = expiry_instant(schedule.start_date)
    if delete_after:
        args["ActionAfterCompletion"] = "DELETE"
    return str(scheduler.create_schedule(**args)["ScheduleArn"])


def schedule_endpoint_delete(
    stack_id: str,
    endpoint_name: str,
    expires_at: str | datetime,
    *,
    region: str,
    session: Any = None,
    role_arn: str | None = None,
) -> str:
    """Give a SageMaker endpoint created at run time a delete schedule at the stack's expiry.

    The role is the stack's expiry role (``up`` creates it with ``sagemaker:DeleteEndpoint``
    on the stack's endpoints). Returns the schedule's ARN.
    """
    sess = _session(session, region)
    if role_arn is None:
        role_arn = sess.client("iam").get_role(RoleName=expiry_role_name(stack_id))["Role"]["Arn"]
    assert role_arn is not None
    account = role_arn.split(":")[4]
    partition = role_arn.split(":")[1]
    coords = StackCoordinates(
        stack_id=stack_id, region=region, account_id=account, partition=partition
    )
    group = ensure_group(stack_id, session=sess, region=region)
    return create_schedule(
        endpoint_schedule(coords, endpoint_name, expires_at),
        group=group,
        role_arn=role_arn,
        session=sess,
        region=region,
        delete_after=True,
    )


def remove_endpoint_schedule(
    stack_id: str, endpoint_name: str, *, region: str, session: Any = None
) -> bool:
    """Delete one endpoint's schedule (when the endpoint is deleted first); False if none."""
    scheduler = _session(session, region).client("scheduler", region_name=region)
    try:
        scheduler.delete_schedule(
            Name=endpoint_schedule_name(stack_id, endpoint_name),
            GroupName=expiry_group(stack_id),
        )
    except Exception as exc:
        if _missing(exc):
            return False
        raise
    return True


def _schedules(scheduler: Any, group: str) -> list[str]:
    names: list[str] = []
    for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group):
        names += [s["Name"] for s in page.get("Schedules", []) if s.get("GroupName") == group]
    return names


def _group_or_none(stack_id: str, scheduler: Any) -> str | None:
    name = expiry_group(stack_id)
    try:
        arn = scheduler.get_schedule_group(Name=name)["Arn"]
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    tags = scheduler.list_tags_for_resource(ResourceArn=arn).get("Tags", [])
    if not any(t["Key"] == STACK_ID_TAG and t["Value"] == stack_id for t in tags):
        raise ExpiryError(f"schedule group {name} does not carry {STACK_ID_TAG}={stack_id}")
    return name


def move_expiry(
    stack_id: str, new_time: str | datetime, *, region: str, session: Any = None
) -> list[str]:
    """Move every expiry schedule of the stack to ``new_time`` (``extend``); the names moved.

    One-time schedules get ``at(new_time)``; recurring ones (the database re-stop) start then.
    """
    scheduler = _session(session, region).client("scheduler", region_name=region)
    group = _group_or_none(stack_id, scheduler)
    if group is None:
        return []
    moved = []
    for name in _schedules(scheduler, group):
        current = scheduler.get_schedule(Name=name, GroupName=group)
        args: dict[str, Any] = {
            key: current[key]
            for key in (
                "Name",
                "GroupName",
                "Description",
                "ScheduleExpression",
                "ScheduleExpressionTimezone",
                "FlexibleTimeWindow",
                "State",
                "ActionAfterCompletion",
                "KmsKeyArn",
                "EndDate",
                "StartDate",
                "Target",
            )
            if current.get(key) is not None
        }
        if args["ScheduleExpression"].startswith("at("):
            args["ScheduleExpression"] = at_expression(new_time)
        else:
            args["StartDate"] = expiry_instant(new_time)
        scheduler.update_schedule(**args)
        moved.append(name)
    return sorted(moved)


def remove_expiry(stack_id: str, *, region: str, session: Any = None) -> list[str]:
    """Delete every expiry schedule of the stack and its group (``down``); the names removed."""
    scheduler = _session(session, region).client("scheduler", region_name=region)
    group = _group_or_none(stack_id, scheduler)
    if group is None:
        return []
    removed = []
    for name in _schedules(scheduler, group):
        try:
            scheduler.delete_schedule(Name=name, GroupName=group)
        except Exception as exc:
            if not _missing(exc):
                raise
        removed.append(name)
    try:
        scheduler.delete_schedule_group(Name=group)
    except Exception as exc:
        if not _missing(exc):
            raise
    return sorted(removed)
