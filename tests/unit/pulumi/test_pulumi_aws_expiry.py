"""The in-cloud expiry under Pulumi's mocks: schedules' time, targets, inputs, role policy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_pulumi_aws_program import CONFIG, STACK_ID, TLS, make_spec, run

from provisioner.engines.pulumi_plan import MockRun, run_stack_program
from stacks.aws.plan_mocks import ACCOUNT as PLAN_ACCOUNT
from stacks.common.aws_expiry_targets import StackCoordinates, expiry_schedules

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

REGION = "eu-west-1"
SCHEDULE = "aws:scheduler/schedule:Schedule"
BASE = f"mlstack-{STACK_ID}"
LB_ARN = f"arn:aws:lb:{REGION}:{PLAN_ACCOUNT}:loadBalancer/{BASE}-lb"


@pytest.fixture(scope="module")
def full() -> MockRun:
    return run(make_spec())


def schedules(result: MockRun) -> dict[str, Any]:
    """Schedules by name without the ``mlstack-<stack id>-`` prefix every one carries."""
    found = {}
    for res in result.of_type(SCHEDULE):
        assert res.inputs["name"].startswith(f"{BASE}-")
        found[res.inputs["name"].removeprefix(f"{BASE}-")] = res
    return found


def test_one_time_schedules_fire_at_the_expiry_in_the_stacks_group(full: MockRun) -> None:
    found = schedules(full)
    assert set(found) == {
        "stop-metadata", "stop-mlflow", "stop-db", "restop-db", "stop-batch", "delete-lb",
    }  # fmt: skip
    group = full.named("expiry-group")
    assert group.inputs["name"] == f"{BASE}-expiry"
    for name, res in found.items():
        assert res.component == "expiry"
        assert res.inputs["groupName"] == f"{BASE}-expiry"
        assert res.inputs["scheduleExpressionTimezone"] == "UTC"
        assert res.get("flexibleTimeWindow.mode") == "OFF"
        assert res.inputs["state"] == "ENABLED"
        if name == "restop-db":  # RDS restarts a stopped instance after 7 days
            assert res.inputs["scheduleExpression"] == "rate(1 day)"
            assert res.inputs["startDate"] == "2030-01-01T08:00:00Z"
        else:
            assert res.inputs["scheduleExpression"] == "at(2030-01-01T08:00:00)"
            assert "startDate" not in res.inputs


def test_targets_are_universal_api_calls_with_the_stacks_names(full: MockRun) -> None:
    role_arn = f"arn:aws:iam::{PLAN_ACCOUNT}:role/{BASE}-expiry"
    expected = {
        "stop-metadata": (
            "arn:aws:scheduler:::aws-sdk:ecs:updateService",
            {"Cluster": f"{BASE}-services", "Service": f"{BASE}-metadata", "DesiredCount": 0},
        ),
        "stop-mlflow": (
            "arn:aws:scheduler:::aws-sdk:ecs:updateService",
            {"Cluster": f"{BASE}-services", "Service": f"{BASE}-mlflow", "DesiredCount": 0},
        ),
        "stop-db": (
            "arn:aws:scheduler:::aws-sdk:rds:stopDBInstance",
            {"DbInstanceIdentifier": f"{BASE}-db"},
        ),
        "restop-db": (
            "arn:aws:scheduler:::aws-sdk:rds:stopDBInstance",
            {"DbInstanceIdentifier": f"{BASE}-db"},
        ),
        "stop-batch": (
            "arn:aws:scheduler:::aws-sdk:batch:updateComputeEnvironment",
            {"ComputeEnvironment": f"{BASE}-fargate", "ComputeResources": {"MaxvCpus": 0}},
        ),
        "delete-lb": (
            "arn:aws:scheduler:::aws-sdk:elasticloadbalancingv2:deleteLoadBalancer",
            {"LoadBalancerArn": LB_ARN},
        ),
    }
    for name, res in schedules(full).items():
        arn, payload = expected[name]
        assert res.get("target.arn") == arn, name
        assert json.loads(res.get("target.input")) == payload, name
        assert res.get("target.roleArn") == role_arn
    # What the program declares is what the shared builder (used on moto) returns.
    coords = StackCoordinates(
        stack_id=STACK_ID,
        region=REGION,
        account_id=PLAN_ACCOUNT,
        cluster=f"{BASE}-services",
        services={"metadata": f"{BASE}-metadata", "mlflow": f"{BASE}-mlflow"},
        db_instance=f"{BASE}-db",
        compute_environment=f"{BASE}-fargate",
        load_balancer_arn=LB_ARN,
    )
    built = {
        s.name.removeprefix(f"{BASE}-"): s
        for s in expiry_schedules(coords, CONFIG["mlstack:expiresAt"])
    }
    for name, res in schedules(full).items():
        assert res.get("target.input") == built[name].input_json()
        assert res.get("target.arn") == built[name].target_arn


def test_the_role_may_make_exactly_those_calls_on_exactly_those_resources(full: MockRun) -> None:
    role = full.named("expiry-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": PLAN_ACCOUNT}}
    policy = json.loads(full.named("expiry-policy").inputs["policy"])
    grants = {s["Action"][0]: s for s in policy["Statement"]}
    assert all(len(s["Action"]) == 1 and s["Effect"] == "Allow" for s in policy["Statement"])
    acct = f"{REGION}:{PLAN_ACCOUNT}"
    assert grants["ecs:UpdateService"]["Resource"] == [
        f"arn:aws:ecs:{acct}:service/{BASE}-services/{BASE}-metadata",
        f"arn:aws:ecs:{acct}:service/{BASE}-services/{BASE}-mlflow",
    ]
    assert grants["rds:StopDBInstance"]["Resource"] == [f"arn:aws:rds:{acct}:db:{BASE}-db"]
    assert grants["batch:UpdateComputeEnvironment"]["Resource"] == [
        f"arn:aws:batch:{acct}:compute-environment/{BASE}-fargate"
    ]
    assert grants["elasticloadbalancing:DeleteLoadBalancer"]["Resource"] == [LB_ARN]
    endpoint = grants["sagemaker:DeleteEndpoint"]
    assert endpoint["Resource"] == [f"arn:aws:sagemaker:{acct}:endpoint/{BASE}-*"]
    assert endpoint["Condition"] == {"StringEquals": {"aws:ResourceTag/mlstack:stack-id": STACK_ID}}
    assert set(grants) == {
        "ecs:UpdateService", "rds:StopDBInstance", "batch:UpdateComputeEnvironment",
        "elasticloadbalancing:DeleteLoadBalancer", "sagemaker:DeleteEndpoint",
    }  # fmt: skip


def test_no_ttl_means_no_expiry_and_optional_parts_follow_the_spec() -> None:
    never = run_stack_program(
        make_spec(), "stacks.aws.program", STACK_ID, {**CONFIG, **TLS, "mlstack:expiresAt": "never"}
    )
    assert not never.of_type(SCHEDULE) and not never.of_type(
        "aws:scheduler/scheduleGroup:ScheduleGroup"
    )
    lean = run(make_spec(tracker="none", deployer="none"))
    assert "stop-mlflow" not in schedules(lean) and "stop-metadata" in schedules(lean)
    policy = json.loads(lean.named("expiry-policy").inputs["policy"])
    assert "sagemaker:DeleteEndpoint" not in {s["Action"][0] for s in policy["Statement"]}


def test_plan_lists_the_schedules_with_their_time_and_target() -> None:
    from provisioner.engines.pulumi_plan import changes

    spec = make_spec()
    rows = [c for c in changes(run(spec), spec, "new stack") if c.type == SCHEDULE]
    assert {c.component for c in rows} == {"expiry"} and len(rows) == 6
    delete_lb = next(c for c in rows if c.resource == "expiry-delete-lb")
    assert delete_lb.details["schedule"] == "at(2030-01-01T08:00:00)"
    assert delete_lb.details["target"].endswith("elasticloadbalancingv2:deleteLoadBalancer")
