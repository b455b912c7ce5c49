"""The aws_batch orchestrator's pieces: Fargate sizes, job definitions (on a real moto
server), the job queue check, the job's environment and the CloudWatch Logs tail."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

import boto3
import pytest

from runner.batch_launcher import (
    _Job,
    _went_over,
    driver_gone,
    driver_tag,
    job_environment,
    job_name,
    step_command,
)
from runner.cloudwatch_logs import BATCH_DEFAULT_GROUP, job_log_tail
from runner.errors import PipelineDefinitionError, RunnerError
from runner.orchestrators import ORCHESTRATORS, orchestrator_for
from runner.orchestrators.aws_batch import (
    AwsBatchOrchestrator,
    JobDefinitions,
    check_queue,
    fargate_size,
)
from runner.step_options import StepResources
from stacks.common.constants import OUTPUTS_ENV
from stacks.outputs import StackOutputs
from stacks.spec.aws import FARGATE_MEMORY_GIB
from tests.conftest import aws_outputs_data

REGION = "us-east-1"
NOW_MS = int(time.time() * 1000) - 60_000


def outputs(**orchestrator: Any) -> StackOutputs:
    stack = f"b{secrets.token_hex(3)}"
    data = aws_outputs_data(stack, region=REGION)
    data["orchestrator"] = {**data["orchestrator"], **orchestrator}
    data["tags"] = {"mlstack:stack-id": data["stack_id"], "team": "ml"}
    return StackOutputs.model_validate(data).with_token("tok-" + secrets.token_hex(8))


def test_registered_as_aws_batch() -> None:
    assert "aws_batch" in ORCHESTRATORS.kinds()
    assert isinstance(orchestrator_for(outputs()), AwsBatchOrchestrator)


def test_a_kind_without_a_launcher_is_one_line_naming_the_known_ones() -> None:
    """A Kubernetes stack's orchestrator has no launcher yet: `run` stops before anything."""
    from runner.errors import RunnerError

    with pytest.raises(RunnerError) as caught:
        ORCHESTRATORS.get("kubernetes")
    assert str(caught.value).startswith("orchestrator 'kubernetes' is not supported")
    assert "\n" not in str(caught.value)
    assert caught.value.hint == "known orchestrator kinds: aws_batch, docker, local"


@pytest.mark.parametrize(
    ("cpu", "memory", "size"),
    [
        (None, None, (1.0, 2048)),  # Batch's default
        (0.25, None, (0.25, 512)),
        (0.3, None, (0.5, 1024)),
        (None, 3, (0.5, 3072)),
        (1, 5, (1, 5120)),
        (2, 1, (2, 4096)),  # 2 vCPU take at least 4 GiB
        (1, 9, (2, 9216)),  # 9 GiB do not fit 1 vCPU
        (4, 30, (4, 30720)),
        (6, None, (8, 16384)),
        (None, 100, (16, 106496)),
    ],
)
def test_fargate_sizes_are_the_smallest_valid_combination(
    cpu: float | None, memory: float | None, size: tuple[float, int]
) -> None:
    vcpu, mib = fargate_size("train", StepResources(cpu=cpu, memory_gib=memory))
    assert (vcpu, mib) == size
    assert mib / 1024 in FARGATE_MEMORY_GIB[vcpu]


def test_gpus_and_oversized_requests_are_definition_errors() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"step 'train'.*Fargate has no GPUs"):
        fargate_size("train", StepResources(gpus=1))
    with pytest.raises(PipelineDefinitionError, match="exceed the largest Fargate task"):
        fargate_size("big", StepResources(cpu=32))
    with pytest.raises(PipelineDefinitionError, match="exceed the largest Fargate task"):
        fargate_size("big", StepResources(cpu=1, memory_gib=500))


def test_job_environment_carries_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    out = outputs()
    token = out.metadata.token.get_secret_value()  # type: ignore[union-attr]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5998")
    monkeypatch.setenv("MLSTACK_BATCH_CREDENTIALS_URI", "http://127.0.0.1:5997/role")
    env = job_environment(out)
    text = json.dumps(env) + json.dumps(step_command("abc"))
    for secret in (token, "AKIAEXAMPLEKEY", "very-secret", "session-secret"):
        assert secret not in text
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5999"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:5998"
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "http://127.0.0.1:5997/role"
    assert env["AWS_REGION"] == REGION
    carried = json.loads(env[OUTPUTS_ENV])
    assert carried["metadata"]["token"] is None and carried["stack"] == out.stack


def test_the_job_command_is_the_capturing_entrypoint_as_pid_1() -> None:
    """No shell between Batch and the entrypoint: TerminateJob's SIGTERM goes to the job's
    PID 1, which only a process that handles it (the capture) receives."""
    command = step_command("abc")
    assert command[:3] == ["python3", "-m", "runner.entrypoint"]
    assert command[3:] == ["run-step", "--step-id", "abc", "--capture", "--echo"]


def test_job_names_fit_batch_rules() -> None:
    assert job_name("0123456789abcdef", "train.v2") == "mlstack-01234567-train-v2"
    assert len(job_name("r" * 40, "s" * 200)) == 128


@pytest.mark.services
def test_job_definitions_are_fargate_and_reused_per_image_and_size(aws_env: str) -> None:
    out = outputs(log_group="/mlstack/x/jobs")
    batch = boto3.client("batch", region_name=REGION)
    defs = JobDefinitions(batch, out, "127.0.0.1:5000/mlstack/flow:abc")
    small = defs.for_resources(StepResources(cpu=0.25), "a")
    assert defs.for_resources(StepResources(cpu=0.25, memory_gib=0.5), "b") == small
    big = defs.for_resources(StepResources(cpu=2, memory_gib=8), "c")
    assert big != small
    # A new run (a new JobDefinitions) finds them by name instead of registering again.
    again = JobDefinitions(batch, out, "127.0.0.1:5000/mlstack/flow:abc")
    assert again.for_resources(StepResources(cpu=0.25), "a") == small
    other = JobDefinitions(batch, out, "127.0.0.1:5000/mlstack/flow:def")
    assert other.for_resources(StepResources(cpu=0.25), "a") != small

    found = batch.describe_job_definitions(jobDefinitions=[small])["jobDefinitions"]
    assert len(found) == 1 and found[0]["revision"] == 1
    definition = found[0]
    assert definition["platformCapabilities"] == ["FARGATE"]
    props = definition["containerProperties"]
    assert props["networkConfiguration"] == {"assignPublicIp": "ENABLED"}
    assert props["jobRoleArn"] == out.orchestrator.job_role_arn  # type: ignore[union-attr]
    assert props["executionRoleArn"] == out.orchestrator.execution_role_arn  # type: ignore[union-attr]
    assert {r["type"]: r["value"] for r in props["resourceRequirements"]} == {
        "VCPU": "0.25",
        "MEMORY": "512",
    }
    assert props["logConfiguration"]["logDriver"] == "awslogs"
    assert props["logConfiguration"]["options"]["awslogs-group"] == "/mlstack/x/jobs"
    assert not props.get("environment") and not props.get("secrets")
    assert definition["tags"]["mlstack:stack-id"] == out.stack_id
    names = {
        d["jobDefinitionName"]
        for d in batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
        if d["jobDefinitionName"].startswith(f"mlstack-{out.stack_id}-")
    }
    assert len(names) == 3  # two sizes of one image, one size of another


@pytest.mark.services
def test_a_missing_queue_is_one_clear_line(aws_env: str) -> None:
    out = outputs(job_queue=f"nope-{secrets.token_hex(3)}")
    batch = boto3.client("batch", region_name=REGION)
    with pytest.raises(RunnerError) as err:
        check_queue(batch, out)
    message = str(err.value)
    assert "\n" not in message
    assert f"job queue {out.orchestrator.job_queue!r}" in message  # type: ignore[union-attr]
    assert "does not exist" in message and "mlstack up" in (err.value.hint or "")


@pytest.mark.services
def test_log_tail_reads_the_configured_group_then_batchs_default(aws_env: str) -> None:
    logs = boto3.client("logs", region_name=REGION)
    group = f"/mlstack/{secrets.token_hex(3)}/jobs"
    logs.create_log_group(logGroupName=group)
    stream = f"mlstack/step/{secrets.token_hex(8)}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = [{"timestamp": NOW_MS + i, "message": f"line {i}"} for i in range(60)]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    job = {"container": {"logStreamName": stream}}
    tail = job_log_tail(logs, job, group, lines=5).splitlines()
    assert tail == [f"line {i}" for i in range(55, 60)]

    # moto writes job output to Batch's default group under its own stream name.
    other = f"def/default/{secrets.token_hex(8)}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=BATCH_DEFAULT_GROUP)
    logs.create_log_stream(logGroupName=BATCH_DEFAULT_GROUP, logStreamName=other)
    logs.put_log_events(
        logGroupName=BATCH_DEFAULT_GROUP,
        logStreamName=other,
        logEvents=[{"timestamp": NOW_MS, "message": "Traceback: boom"}],
    )
    job = {"attempts": [{"container": {"logStreamName": other}}]}
    assert job_log_tail(logs, job, group) == "Traceback: boom"
    missing = {"container": {"logStreamName": "x/y/z"}}
    assert "no stream" in job_log_tail(logs, missing, group, tries=2, pause=0.1)
    assert "never started" in job_log_tail(logs, {"container": {}}, group)


def test_a_failed_attempt_counts_as_timed_out_when_batch_stopped_it_for_its_duration() -> None:
    from pathlib import Path

    job = _Job("s", "train", "j", Path("l"), Path("r"), timeout=90)
    assert _went_over({"statusReason": "Job attempt duration exceeded timeout"}, job)
    ran = {"startedAt": 1_000, "stoppedAt": 1_000 + 90_000}
    assert _went_over(ran, job)
    assert not _went_over({"startedAt": 1_000, "stoppedAt": 1_000 + 30_000}, job)
    assert not _went_over(ran, _Job("s", "train", "j", Path("l"), Path("r"), timeout=None))
    # Under Batch's 60 s minimum the launcher terminates the job itself and says so.
    assert not _went_over(ran, _Job("s", "train", "j", Path("l"), Path("r"), timeout=5))


def test_a_driver_is_gone_only_when_it_ran_here_and_its_process_is_not() -> None:
    import os
    import subprocess
    import sys

    host = driver_tag().rpartition(":")[0]
    assert driver_tag() == f"{host}:{os.getpid()}"
    assert not driver_gone(driver_tag())  # this process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert driver_gone(f"{host}:{child.pid}")
    assert not driver_gone(f"another-host:{child.pid}")  # cannot be checked from here
    assert not driver_gone("") and not driver_gone(f"{host}:x")
