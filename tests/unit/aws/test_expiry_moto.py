"""The in-cloud expiry on a real moto server: schedules created from the shared definitions,
each target called with its input stops what it should; extend moves, down removes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from stack_resources import REGION, client, create_stack, new_stack_id
from universal_target import invoke

from stacks.common.aws_expiry import (
    create_schedule,
    ensure_group,
    move_expiry,
    remove_expiry,
    schedule_endpoint_delete,
)
from stacks.common.aws_expiry_targets import (
    StackCoordinates,
    endpoint_schedule_name,
    expiry_schedules,
    role_policy,
    trust_policy,
)
from stacks.common.aws_naming import STACK_ID_TAG, expiry_group, expiry_role_name

pytestmark = pytest.mark.services
ACCOUNT = "123456789012"  # moto's default account


@dataclass
class Billing:
    coords: StackCoordinates
    role_arn: str
    expires: datetime


def billing_stack(stack_id: str) -> Billing:
    """ECS cluster + two services, an RDS instance, a Batch environment, a load balancer."""
    tags = [{"Key": STACK_ID_TAG, "Value": stack_id}]
    base = f"mlstack-{stack_id}"
    stack = create_stack(stack_id, runtime=False)
    ec2 = client("ec2")
    vpc = stack.names["ec2:vpc"]
    subnets = [stack.names["ec2:subnet"]]
    subnets.append(
        ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.16.0/20", AvailabilityZone="us-east-1b")[
            "Subnet"
        ]["SubnetId"]
    )
    ecs = client("ecs")
    ecs.create_cluster(
        clusterName=f"{base}-services", tags=[{"key": STACK_ID_TAG, "value": stack_id}]
    )
    task = ecs.register_task_definition(
        family=f"{base}-metadata",
        containerDefinitions=[{"name": "metadata", "image": "busybox", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    services = {}
    for label in ("metadata", "mlflow"):
        ecs.create_service(
            cluster=f"{base}-services",
            serviceName=f"{base}-{label}",
            taskDefinition=task,
            desiredCount=1,
        )
        services[label] = f"{base}-{label}"
    client("rds").create_db_instance(
        DBInstanceIdentifier=f"{base}-db",
        Engine="postgres",
        DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20,
        MasterUsername="mlstack",
        MasterUserPassword="password-for-tests",
        Tags=tags,
    )
    lb = client("elbv2").create_load_balancer(
        Name=f"{base}-lb"[:32], Subnets=subnets, Type="application", Tags=tags
    )["LoadBalancers"][0]["LoadBalancerArn"]
    coords = StackCoordinates(
        stack_id=stack_id,
        region=REGION,
        account_id=ACCOUNT,
        cluster=f"{base}-services",
        services=services,
        db_instance=f"{base}-db",
        compute_environment=stack.names["batch:compute-environment"],
        load_balancer_arn=lb,
        endpoints=True,
    )
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=4)
    iam = client("iam")
    role = iam.create_role(
        RoleName=expiry_role_name(stack_id),
        AssumeRolePolicyDocument=json.dumps(trust_policy(ACCOUNT)),
        Tags=tags,
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=expiry_role_name(stack_id),
        PolicyName="expiry",
        PolicyDocument=json.dumps(role_policy(coords, expires)),
    )
    group = ensure_group(stack_id, region=REGION)
    for schedule in expiry_schedules(coords, expires):
        create_schedule(schedule, group=group, role_arn=role, region=REGION)
    return Billing(coords, role, expires)


def listed(stack_id: str) -> dict[str, dict]:
    scheduler = client("scheduler")
    group = expiry_group(stack_id)
    names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
    prefix = f"mlstack-{stack_id}-"
    assert all(n.startswith(prefix) for n in names)
    found = {}
    for name in names:
        schedule = scheduler.get_schedule(Name=name, GroupName=group)
        schedule.pop("ResponseMetadata", None)
        found[name.removeprefix(prefix)] = schedule
    return found


def test_schedules_exist_and_each_target_stops_what_it_should(aws_env: str) -> None:
    stack_id = new_stack_id()
    billing = billing_stack(stack_id)
    found = listed(stack_id)
    assert set(found) == {
        "stop-metadata", "stop-mlflow", "stop-db", "restop-db", "stop-batch", "delete-lb",
    }  # fmt: skip
    at = f"at({billing.expires.strftime('%Y-%m-%dT%H:%M:%S')})"
    for name, schedule in found.items():
        assert schedule["Target"]["RoleArn"] == billing.role_arn
        assert schedule["ScheduleExpressionTimezone"] == "UTC"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        expected = "rate(1 day)" if name == "restop-db" else at
        assert schedule["ScheduleExpression"] == expected
    assert found["restop-db"]["StartDate"] == billing.expires

    session = boto3.session.Session(region_name=REGION)
    coords = billing.coords
    ecs, rds, elb, batch = client("ecs"), client("rds"), client("elbv2"), client("batch")
    db = rds.describe_db_instances(DBInstanceIdentifier=coords.db_instance)["DBInstances"][0]
    assert db["DBInstanceStatus"] == "available"
    for name in ("stop-metadata", "stop-mlflow", "stop-db", "stop-batch", "delete-lb"):
        target = found[name]["Target"]
        invoke(session, target["Arn"], target["Input"], REGION)
    services = ecs.describe_services(
        cluster=coords.cluster, services=list(coords.services.values())
    )
    assert [s["desiredCount"] for s in services["services"]] == [0, 0]
    db = rds.describe_db_instances(DBInstanceIdentifier=coords.db_instance)["DBInstances"][0]
    assert db["DBInstanceStatus"] == "stopped"
    with pytest.raises(ClientError, match="LoadBalancerNotFound"):
        elb.describe_load_balancers(LoadBalancerArns=[coords.load_balancer_arn])
    # moto accepts the update and keeps its state but ignores computeResources changes;
    # the input was checked against the Batch API model by invoke().
    env = batch.describe_compute_environments(computeEnvironments=[coords.compute_environment])
    assert env["computeEnvironments"][0]["status"] == "VALID"

    # After RDS restarts the instance on its own (day 7), the recurring schedule stops it again.
    rds.start_db_instance(DBInstanceIdentifier=coords.db_instance)
    restop = found["restop-db"]["Target"]
    invoke(session, restop["Arn"], restop["Input"], REGION)
    db = rds.describe_db_instances(DBInstanceIdentifier=coords.db_instance)["DBInstances"][0]
    assert db["DBInstanceStatus"] == "stopped"


def test_runtime_endpoint_gets_its_own_delete_schedule(aws_env: str) -> None:
    stack_id = new_stack_id()
    billing = billing_stack(stack_id)
    sm = client("sagemaker")
    name = f"mlstack-{stack_id}-endpoint"
    role = billing.role_arn
    sm.create_model(
        ModelName=f"{name}-model", ExecutionRoleArn=role, PrimaryContainer={"Image": "x"}
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {"VariantName": "main", "ModelName": f"{name}-model", "InitialInstanceCount": 1,
             "InstanceType": "ml.t2.medium"}
        ],
    )  # fmt: skip
    sm.create_endpoint(
        EndpointName=name,
        EndpointConfigName=f"{name}-config",
        Tags=[{"Key": STACK_ID_TAG, "Value": stack_id}],
    )
    arn = schedule_endpoint_delete(stack_id, name, billing.expires, region=REGION)
    schedule = listed(stack_id)[
        endpoint_schedule_name(stack_id, name).removeprefix(f"mlstack-{stack_id}-")
    ]
    assert schedule["Arn"] == arn and schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["RoleArn"] == role  # found by the role's well-known name
    assert schedule["ScheduleExpression"] == f"at({billing.expires.strftime('%Y-%m-%dT%H:%M:%S')})"
    assert schedule["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint"
    invoke(boto3.session.Session(), schedule["Target"]["Arn"], schedule["Target"]["Input"], REGION)
    with pytest.raises(ClientError):
        sm.describe_endpoint(EndpointName=name)


def test_extend_moves_and_down_removes_only_this_stacks_schedules(aws_env: str) -> None:
    ours, theirs = new_stack_id(), None
    billing = billing_stack(ours)
    theirs = f"{ours}-{new_stack_id('two')}"
    billing_stack(theirs)
    later = billing.expires + timedelta(hours=2)
    moved = move_expiry(ours, later, region=REGION)
    assert moved == sorted(f"mlstack-{ours}-{n}" for n in listed(ours))
    for name, schedule in listed(ours).items():
        if name == "restop-db":
            assert (
                schedule["StartDate"] == later and schedule["ScheduleExpression"] == "rate(1 day)"
            )
        else:
            assert schedule["ScheduleExpression"] == f"at({later.strftime('%Y-%m-%dT%H:%M:%S')})"
        assert schedule["Target"]["RoleArn"] == billing.role_arn  # the rest is kept
        assert json.loads(schedule["Target"]["Input"])
    untouched = listed(theirs)
    assert all(
        s["ScheduleExpression"] != f"at({later.strftime('%Y-%m-%dT%H:%M:%S')})"
        for s in untouched.values()
    )

    removed = remove_expiry(ours, region=REGION)
    assert removed == moved
    with pytest.raises(ClientError, match="ResourceNotFound"):
        client("scheduler").get_schedule_group(Name=expiry_group(ours))
    assert listed(theirs) == untouched
    assert (
        remove_expiry(ours, region=REGION) == [] and move_expiry(ours, later, region=REGION) == []
    )


def test_a_group_without_the_stacks_tag_is_refused(aws_env: str) -> None:
    from stacks.common.aws_expiry import ExpiryError

    stack_id = new_stack_id()
    client("scheduler").create_schedule_group(
        Name=expiry_group(stack_id), Tags=[{"Key": STACK_ID_TAG, "Value": "someone-else"}]
    )
    with pytest.raises(ExpiryError, match=stack_id):
        remove_expiry(stack_id, region=REGION)
    with pytest.raises(ExpiryError):
        move_expiry(stack_id, datetime.now(UTC) + timedelta(hours=1), region=REGION)


def test_mlstack_extend_moves_the_in_cloud_schedules(aws_env: str, tmp_path: object) -> None:
    from pathlib import Path

    from provisioner.cost.ttl import extend
    from provisioner.state import StackRecord, StateRegistry

    stack_id = new_stack_id()
    billing = billing_stack(stack_id)
    registry = StateRegistry(Path(str(tmp_path)))
    name = stack_id.rsplit("-", 1)[0]
    registry.save(
        StackRecord(
            name=name,
            stack_id=stack_id,
            provider="aws",
            status="up",
            spec={"name": name, "provider": "aws", "region": REGION},
            spec_hash="x",
            expires_at=billing.expires,
        )
    )
    record = extend(name, "3h", registry)
    assert record.expires_at is not None and record.expires_at > billing.expires
    stamp = f"at({record.expires_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})"
    schedules = listed(stack_id)
    assert schedules and all(
        s["ScheduleExpression"] == stamp for n, s in schedules.items() if n != "restop-db"
    )
