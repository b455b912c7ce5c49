"""Pipelines on `orchestrator: aws_batch` against moto server: every step a Batch job whose
container really runs on the local Docker Engine, artifacts in the emulated bucket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.batch_launcher import ACTIVE
from runner.cloudwatch_logs import BATCH_DEFAULT_GROUP, stream_of
from runner.driver import RunResult, run
from runner.errors import RunnerError, StepFailed
from runner.loader import load_pipeline
from stacks.outputs import StackOutputs
from tests.aws_stack import REGION, BatchStack, batch_harness

pytestmark = [pytest.mark.docker, pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "pipelines" / "toy.py"
BATCH_TOY = ROOT / "tests" / "pipelines" / "batch_toy.py"
BASE = os.environ.get("MLSTACK_TEST_BASE_IMAGE", "mlstack/base:bookworm")
LOCAL = "it-batch-local"
LOCAL_SPEC = (
    f"name: {LOCAL}\nprovider: local\ncomponents:\n  container_registry: local\n"
    "  tracker: none\n  deployer: none\n"
)


@pytest.fixture(scope="module")
def stack(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchStack]:
    home = tmp_path_factory.mktemp("batch-home")
    with batch_harness(moto_server, home, LOCAL, LOCAL_SPEC, BASE) as (_, batch):
        try:
            yield batch
        finally:
            stop_every_job(batch)  # before the stacks go down


def stop_every_job(stack: BatchStack) -> None:
    """Terminate what a failed test left running and wait for its containers to go."""
    import docker

    batch = aws("batch")
    queue = stack.outputs.orchestrator.job_queue  # type: ignore[union-attr]
    ids = [
        j["jobId"]
        for status in ACTIVE
        for j in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
    ]
    for job_id in ids:
        batch.terminate_job(jobId=job_id, reason="test teardown")
    engine = docker.from_env()
    deadline = time.monotonic() + 60
    while any(engine.containers.list(filters={"name": job_id}) for job_id in ids):
        if time.monotonic() > deadline:
            for job_id in ids:
                for container in engine.containers.list(filters={"name": job_id}):
                    container.remove(force=True)
            break
        time.sleep(1)


def aws(service: str) -> Any:
    return boto3.session.Session(region_name=REGION).client(service)


def run_jobs(stack: BatchStack, run_id: str) -> list[dict[str, Any]]:
    """Every Batch job of one run (any status), described."""
    batch = aws("batch")
    queue = stack.outputs.orchestrator.job_queue  # type: ignore[union-attr]
    ids = [
        j["jobId"]
        for status in (*ACTIVE, "SUCCEEDED", "FAILED")
        for j in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
    ]
    jobs = [
        j
        for i in range(0, len(ids), 100)
        for j in batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]
    ]
    return [j for j in jobs if (j.get("tags") or {}).get("mlstack:run") == run_id]


def job_log(job: dict[str, Any]) -> str:
    stream = stream_of(job)
    assert stream, job
    events = aws("logs").get_log_events(
        logGroupName=BATCH_DEFAULT_GROUP, logStreamName=stream, startFromHead=True
    )["events"]
    return "\n".join(e["message"] for e in events)


def run_pipeline(stack: BatchStack, ref: str, **params: Any) -> RunResult:
    return run(load_pipeline(ref), stack.outputs, params=params or None, no_cache=True)


def test_diamond_runs_every_step_as_a_batch_job_with_artifacts_in_s3(stack: BatchStack) -> None:
    result = run_pipeline(stack, f"{TOY}:diamond", seconds=6)
    assert result.status == "completed", {n: s.error for n, s in result.steps.items()}
    jobs = run_jobs(stack, result.run_id)
    names = sorted(j["tags"]["mlstack:step"] for j in jobs)
    assert names == sorted(s.step_id for s in result.steps.values())  # one job per step
    assert all(j["status"] == "SUCCEEDED" for j in jobs)
    # Every job's container ran (moto writes a job's stream once its container has exited)
    # and the step inside recorded itself: the driver never marks a launched step completed.
    assert all(stream_of(j) for j in jobs)
    from runner.metadata.client import MetadataClient

    token = stack.outputs.metadata.token.get_secret_value()  # type: ignore[union-attr]
    with MetadataClient(stack.outputs.metadata.url, token) as client:
        recorded = client.list_steps(result.run_id)
    assert {s.status.value for s in recorded} == {"completed"}
    assert all(s.log_uri and s.log_uri.startswith("s3://") for s in recorded)
    # The container really ran: the step's own print reached CloudWatch Logs.
    numbers = next(j for j in jobs if j["jobName"].endswith("-numbers"))
    assert "making 3 numbers" in job_log(numbers)
    # Artifacts are in the emulated bucket with their recorded hashes.
    from runner.artifact_stores import open_store

    store = open_store(stack.outputs)
    s3 = aws("s3")
    for step in result.steps.values():
        for art in step.outputs.values():
            assert art.uri.startswith(f"s3://{stack.made['bucket']}/")
            key = art.uri.removeprefix(f"s3://{stack.made['bucket']}/")
            assert s3.head_object(Bucket=stack.made["bucket"], Key=key)["ContentLength"] == art.size
            assert store.verify(art.uri, art.content_hash)
    join = result.steps["join"].outputs["output"]
    assert store.load(join.uri, join.materializer, join.type_name) == 6
    # The two middle steps ran as concurrent jobs.
    middle = [j for j in jobs if "-pause" in j["jobName"]]
    assert len(middle) == 2
    (a, b) = sorted(middle, key=lambda j: j["startedAt"])
    assert b["startedAt"] < a["stoppedAt"], "the diamond's middle jobs did not overlap"
    # Jobs carry the stack's tags and a reused job definition.
    assert all(j["tags"]["mlstack:stack-id"] == stack.outputs.stack_id for j in jobs)
    assert len({j["jobDefinition"] for j in jobs}) == 1
    (definition,) = aws("batch").describe_job_definitions(
        jobDefinitions=[jobs[0]["jobDefinition"]]
    )["jobDefinitions"]
    image = definition["containerProperties"]["image"]
    assert image.startswith(stack.outputs.container_registry.url + ":")  # type: ignore[union-attr]
    assert stack.made["repository"] in image  # the program's ECR repository


def test_failing_job_fails_the_run_with_its_cloudwatch_log_tail(stack: BatchStack) -> None:
    result = run_pipeline(stack, f"{TOY}:failing")
    assert result.status == "failed"
    statuses = {n: s.status for n, s in result.steps.items()}
    assert statuses["explode"] == "failed" and statuses["report"] == "skipped"
    failed = result.steps["explode"]
    assert failed.error == "ValueError: cannot handle 5 values"
    assert "about to fail" in failed.log_tail  # printed by the step, read from CloudWatch
    assert "Traceback" in failed.log_tail
    assert "AWS Batch job" in failed.log_tail and "FAILED" in failed.log_tail
    with pytest.raises(StepFailed) as err:
        result.raise_for_status()
    assert "about to fail" in str(err.value)
    job = next(j for j in run_jobs(stack, result.run_id) if j["jobName"].endswith("-explode"))
    assert job["status"] == "FAILED"
    assert not [j for j in run_jobs(stack, result.run_id) if j["jobName"].endswith("-report")]


def test_a_step_with_retries_that_fails_once_succeeds(stack: BatchStack) -> None:
    result = run_pipeline(stack, f"{BATCH_TOY}:retried", tag=str(time.time_ns()))
    assert result.status == "completed", result.steps["flaky"].error
    assert result.steps["flaky"].attempts == 2
    jobs = sorted(run_jobs(stack, result.run_id), key=lambda j: j["createdAt"])
    assert [j["status"] for j in jobs] == ["FAILED", "SUCCEEDED"]
    assert "first attempt: failing on purpose" in job_log(jobs[0])
    assert "second attempt: succeeding" in job_log(jobs[1])
    # Each attempt's log is in the bucket at log_uri(run, step, attempt), none overwritten.
    from runner.artifact_stores import open_store

    store = open_store(stack.outputs)
    first, second = (store.log_uri(result.run_id, "flaky", n) for n in (1, 2))
    assert "first attempt: failing on purpose" in store.read_text(first)
    assert "second attempt: succeeding" in store.read_text(second)
    assert "first attempt" not in store.read_text(second)


def test_a_step_over_its_timeout_is_terminated(stack: BatchStack) -> None:
    import docker

    started = time.monotonic()
    result = run_pipeline(stack, f"{BATCH_TOY}:too_slow", seconds=120)
    assert time.monotonic() - started < 90
    assert result.status == "failed"
    step = result.steps["overrun"]
    assert step.error == "timed out after 4s"
    assert step.attempts == 1  # a timed-out attempt is not retried
    (job,) = run_jobs(stack, result.run_id)
    assert job["status"] == "FAILED"
    assert job["timeout"] == {"attemptDurationSeconds": 60}  # Batch's minimum
    # The bucket keeps the job's own log of the attempt, the driver's note after it.
    from runner.artifact_stores import open_store

    store = open_store(stack.outputs)
    log = store.read_text(store.log_uri(result.run_id, "overrun", 1))
    assert log.count("sleeping past my timeout") == 1 and "timed out after 4s" in log
    deadline = time.monotonic() + 30
    while docker.from_env().containers.list(filters={"name": job["jobId"]}):
        assert time.monotonic() < deadline, "the timed-out job's container kept running"
        time.sleep(1)


def test_batch_itself_stops_an_attempt_over_a_timeout_of_a_minute_or_more(
    stack: BatchStack,
) -> None:
    result = run_pipeline(stack, f"{BATCH_TOY}:too_slow_for_batch", seconds=300)
    assert result.status == "failed"
    assert result.steps["overrun_long"].error == "timed out after 1m"
    (job,) = run_jobs(stack, result.run_id)
    assert job["status"] == "FAILED"
    assert job["timeout"] == {"attemptDurationSeconds": 60}
    assert "mlstack" not in job.get("statusReason", "")  # Batch stopped it, not the launcher
    assert 60 <= (job["stoppedAt"] - job["startedAt"]) / 1000 < 120


def test_a_step_reads_a_secret_from_secrets_manager_with_its_job_role(stack: BatchStack) -> None:
    from runner.secrets import secrets_backend

    value = f"pw-{time.time_ns()}"
    secrets_backend(stack.outputs).set("db", value)  # what `mlstack secret set` does
    result = run_pipeline(stack, f"{TOY}:secretive")
    assert result.status == "completed", result.steps["use_secret"].error
    out = result.steps["use_secret"].outputs["output"]
    from runner.artifact_stores import open_store

    loaded = open_store(stack.outputs).load(out.uri, out.materializer, out.type_name)
    assert loaded == {"length": len(value), "starts": value[:2]}
    (job,) = run_jobs(stack, result.run_id)
    assert value not in json.dumps(job, default=str) + job_log(job)


def test_a_missing_queue_is_one_clear_line(stack: BatchStack) -> None:
    data = stack.outputs.revealed()
    data["orchestrator"]["job_queue"] = "no-such-queue"
    outputs = StackOutputs.model_validate(data)
    with pytest.raises(RunnerError) as err:
        run(load_pipeline(f"{TOY}:one_step"), outputs)
    message = str(err.value)
    assert "\n" not in message
    assert "job queue 'no-such-queue'" in message and "does not exist" in message


DRIVER = """
import json, sys
from runner.driver import run
from runner.loader import load_pipeline
from stacks.outputs import StackOutputs
outputs = StackOutputs.model_validate(json.load(open(sys.argv[1])))
run(load_pipeline(sys.argv[2]), outputs, params=json.loads(sys.argv[3]), no_cache=True)
"""


def start_driver(
    stack: BatchStack, tmp_path: Path, ref: str = f"{BATCH_TOY}:lingering"
) -> subprocess.Popen[bytes]:
    """A run of ``ref`` (its steps sleep 300 s) by a driver process of its own."""
    secret = tmp_path / "outputs.json"  # the driver's own outputs, as the CLI would hold them
    secret.write_text(json.dumps(stack.outputs.revealed()))
    secret.chmod(0o600)
    params = json.dumps({"seconds": 300})
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(secret), ref, params],
        env=dict(os.environ, TMPDIR=str(tmp_path)),  # a killed driver's scratch stays here
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _running_job(stack: BatchStack, driver: subprocess.Popen[bytes]) -> dict[str, Any]:
    (job,) = running_jobs(stack, driver, "linger")
    return job


def running_jobs(
    stack: BatchStack, driver: subprocess.Popen[bytes], *steps: str
) -> list[dict[str, Any]]:
    """The jobs of ``steps`` (names), described once every one of them is RUNNING."""
    batch = aws("batch")
    queue = stack.outputs.orchestrator.job_queue  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    while True:
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        running = batch.list_jobs(jobQueue=queue, jobStatus="RUNNING")["jobSummaryList"]
        found = [
            next((j["jobId"] for j in running if j["jobName"].endswith(f"-{s}")), None)
            for s in steps
        ]
        if all(found):
            by_id = {j["jobId"]: j for j in batch.describe_jobs(jobs=found)["jobs"]}
            return [by_id[job_id] for job_id in found]
        assert time.monotonic() < deadline, f"the jobs of {steps} never all started"
        time.sleep(0.5)


def wait_status(job_id: str, status: str, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        job = aws("batch").describe_jobs(jobs=[job_id])["jobs"][0]
        if job["status"] == status:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}, not {status}"
        time.sleep(0.5)


def test_ctrl_c_terminates_the_runs_jobs(stack: BatchStack, tmp_path: Path) -> None:
    driver = start_driver(stack, tmp_path)
    try:
        job = _running_job(stack, driver)
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=60)
        err = driver.stderr.read().decode() if driver.stderr else ""
        assert "RunCancelled" in err, err[-2000:]
        stopped = wait_status(job["jobId"], "FAILED")
        assert "cancelled" in stopped.get("statusReason", "")
        assert not list(tmp_path.glob("mlstack-run-*")), "the driver did not clean up"
    finally:
        if driver.poll() is None:
            driver.kill()


def test_a_killed_drivers_jobs_are_terminated_by_the_next_run(
    stack: BatchStack, tmp_path: Path
) -> None:
    driver = start_driver(stack, tmp_path)
    try:
        job = _running_job(stack, driver)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        assert aws("batch").describe_jobs(jobs=[job["jobId"]])["jobs"][0]["status"] == "RUNNING"
        result = run_pipeline(stack, f"{TOY}:one_step")
        assert result.status == "completed"
        stopped = wait_status(job["jobId"], "FAILED")
        assert "driver process died" in stopped.get("statusReason", "")
        from runner.metadata.client import MetadataClient

        token = stack.outputs.metadata.token.get_secret_value()  # type: ignore[union-attr]
        with MetadataClient(stack.outputs.metadata.url, token) as client:
            killed = client.get_run(job["tags"]["mlstack:run"])
        assert killed.status.value == "failed" and "driver process died" in (killed.error or "")
    finally:
        if driver.poll() is None:
            driver.kill()


def test_no_credential_or_token_in_job_definitions_jobs_or_logs(stack: BatchStack) -> None:
    result = run_pipeline(stack, f"{TOY}:fan")
    assert result.status == "completed"
    token = stack.outputs.metadata.token.get_secret_value()  # type: ignore[union-attr]
    forbidden = [token, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    forbidden += stack.credentials.served
    batch = aws("batch")
    definitions = [
        d
        for d in batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
        if d["jobDefinitionName"].startswith(f"mlstack-{stack.outputs.stack_id}-")
    ]
    assert definitions
    jobs = run_jobs(stack, result.run_id)
    assert len(jobs) == len(result.steps)
    text = json.dumps(definitions, default=str) + json.dumps(jobs, default=str)
    text += "\n".join(job_log(j) for j in jobs)
    assert stack.credentials.served, "no step asked for the job role's credentials"
    for secret in forbidden:
        assert secret not in text, f"{secret[:4]}... found in a job definition, job or log"
    # The job role's credentials reached the steps (they read S3 and Secrets Manager) only
    # through the stand-in for Fargate's credential endpoint: its URL is all a job carries.
    env = {e["name"]: e["value"] for e in jobs[0]["container"]["environment"]}
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == stack.credentials.url
    assert json.loads(env["MLSTACK_STACK_OUTPUTS"])["metadata"]["token"] is None
