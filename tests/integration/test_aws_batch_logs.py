"""Step logs on the Batch harness: a job's log is in the bucket while it runs and after it is
stopped mid-step (SIGTERM to its container, TerminateJob), a whole run's log is in the bucket
and in CloudWatch Logs, and `mlstack logs RUN STEP` falls back to the job's CloudWatch Logs
stream (labelled as such) when the bucket holds no log of a step."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from provisioner.state import StateRegistry
from runner.artifact_stores import open_store
from runner.metadata.client import MetadataClient
from tests.aws_stack import BatchStack
from tests.conftest import run_cli
from tests.integration.test_aws_batch import (  # noqa: F401 - stack: the harness
    BATCH_TOY,
    aws,
    job_log,
    run_jobs,
    run_pipeline,
    running_jobs,
    stack,
    start_driver,
    wait_status,
)
from tests.integration.test_aws_batch_cost import _record

pytestmark = [pytest.mark.docker, pytest.mark.services]

SIZED = Path(__file__).resolve().parents[1] / "pipelines" / "batch_cost_toy.py"
STOPPED = ("sigtermed", "terminated")  # the steps of batch_toy.py's stopped_midway
STOP_REASON = "test: stopped mid-step"


def test_a_step_log_missing_from_the_store_comes_from_cloudwatch(
    stack: BatchStack,  # noqa: F811
) -> None:
    result = run_pipeline(stack, f"{SIZED}:sized", seconds=1)
    assert result.status == "completed", {n: s.error for n, s in result.steps.items()}
    store = open_store(stack.outputs)
    large = store.log_uri(result.run_id, "large", 1)
    assert store.exists(large)
    store.fs.rm(large.removeprefix("s3://"))  # as if the container died before writing it
    assert not store.exists(large)
    shown = _cli_logs(stack, result.run_id, "large", "small")
    gone, kept = shown["large"], shown["small"]
    assert "from CloudWatch Logs" in gone and "holds no log of it" in gone
    assert "large: sleeping 1.0 s after 1.0" in gone
    assert "small: sleeping 1.0 s" in kept and "CloudWatch" not in kept
    shown = _cli_logs(stack, result.run_id, "large", "small", flags=("--json",))
    data = {step: json.loads(text)["steps"][0]["attempts"] for step, text in shown.items()}
    [from_cloudwatch], [from_store] = data["large"], data["small"]
    assert from_cloudwatch["source"] == "cloudwatch_logs" and from_cloudwatch["job_id"]
    assert "large: sleeping 1.0 s after 1.0" in from_cloudwatch["text"]
    assert from_store["source"] == "artifact_store" and from_store["uri"].startswith("s3://")
    assert "small: sleeping 1.0 s" in from_store["text"]


def _cli_logs(
    batch: BatchStack, run_id: str, *steps: str, flags: tuple[str, ...] = ()
) -> dict[str, str]:
    """``mlstack logs RUN STEP`` of each step, with the harness's stack recorded as `up` would."""
    registry = StateRegistry()
    record = _record(batch)
    registry.save(record)
    try:
        procs = {
            s: run_cli("logs", run_id, s, "--stack", record.name, *flags, timeout=120)
            for s in steps
        }
    finally:
        registry.save(record.model_copy(update={"status": "destroyed"}))
    for proc in procs.values():
        assert proc.returncode == 0, proc.stderr
    return {s: p.stdout for s, p in procs.items()}


def _s3_text(batch: BatchStack, uri: str) -> str:
    """The object at ``uri``, read straight from the bucket."""
    bucket = batch.made["bucket"]
    assert uri.startswith(f"s3://{bucket}/"), uri
    body = aws("s3").get_object(Bucket=bucket, Key=uri.removeprefix(f"s3://{bucket}/"))["Body"]
    return str(body.read().decode())


def _exit_code(batch: BatchStack, job_id: str) -> int | None:
    """A failed job's exit code (moto lists it in ListJobs' summaries only)."""
    queue = batch.outputs.orchestrator.job_queue  # type: ignore[union-attr]
    listed = aws("batch").list_jobs(jobQueue=queue, jobStatus="FAILED")["jobSummaryList"]
    (job,) = [j for j in listed if j["jobId"] == job_id]
    return (job.get("container") or {}).get("exitCode")


def test_a_job_stopped_mid_step_keeps_what_it_printed_in_the_store(
    stack: BatchStack,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Two steps print, then sleep; one job's container gets SIGTERM (what TerminateJob and a
    Batch timeout send its PID 1 first, through ECS), the other is stopped by TerminateJob on
    moto (which kills its container at once). Each attempt's log in the bucket holds what the
    step printed, and CloudWatch Logs too."""
    import docker

    printed = {n: [f"{n}: line {i} before the stop" for i in range(3)] for n in STOPPED}
    driver = start_driver(stack, tmp_path, f"{BATCH_TOY}:stopped_midway")
    try:
        jobs = dict(zip(STOPPED, running_jobs(stack, driver, *STOPPED), strict=True))
        run_id = jobs["sigtermed"]["tags"]["mlstack:run"]
        store = open_store(stack.outputs)
        uris = {n: store.log_uri(run_id, n, 1) for n in STOPPED}
        deadline = time.monotonic() + 30
        while not all(
            printed[n][-1] in store.read_log(uris[n]).decode("utf-8", "replace") for n in STOPPED
        ):
            assert time.monotonic() < deadline, "the bucket holds nothing the running steps printed"
            time.sleep(0.5)
        (container,) = docker.from_env().containers.list(
            filters={"name": jobs["sigtermed"]["jobId"]}
        )
        # The job's PID 1 is the capturing entrypoint itself (no shell that would ignore it).
        pid1 = container.exec_run(["cat", "/proc/1/cmdline"]).output.split(b"\0")
        assert pid1[0].startswith(b"python") and b"--capture" in pid1, pid1
        container.kill(signal="SIGTERM")
        aws("batch").terminate_job(jobId=jobs["terminated"]["jobId"], reason=STOP_REASON)
        stopped = {n: wait_status(j["jobId"], "FAILED") for n, j in jobs.items()}
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    # The SIGTERM reached the step's process through the job's PID 1, which kept the log.
    assert _exit_code(stack, jobs["sigtermed"]["jobId"]) == 128 + signal.SIGTERM
    token = stack.outputs.metadata.token.get_secret_value()  # type: ignore[union-attr]
    with MetadataClient(stack.outputs.metadata.url, token) as client:
        steps = {s.name: s for s in client.list_steps(run_id)}
        run_status = client.get_run(run_id).status.value
    assert run_status == "failed"
    assert steps["sigtermed"].status.value == "failed"
    assert "SIGTERM" in (steps["sigtermed"].error or "")
    assert steps["terminated"].status.value == "failed"
    assert STOP_REASON in (steps["terminated"].error or ""), steps["terminated"].error
    shown = _cli_logs(stack, run_id, *STOPPED)
    for name in STOPPED:
        assert steps[name].log_uri == uris[name]
        in_bucket = _s3_text(stack, uris[name])
        for line in printed[name]:
            assert line in in_bucket, in_bucket
            assert line in shown[name], shown[name]
            assert line in job_log(stopped[name])  # and in CloudWatch Logs
        assert "CloudWatch" not in shown[name]  # read from the bucket
    assert "killed by signal SIGTERM" in _s3_text(stack, uris["sigtermed"])


def test_a_normal_runs_log_is_whole_in_the_store_and_in_cloudwatch(
    stack: BatchStack,  # noqa: F811
) -> None:
    result = run_pipeline(stack, f"{BATCH_TOY}:talkative", lines=300)
    assert result.status == "completed", result.steps["chatty"].error
    expected = [f"chatty {'err' if n % 3 == 0 else 'out'} line {n}" for n in range(300)]
    expected.append("chatty: the end, no newline")
    (job,) = run_jobs(stack, result.run_id)
    assert job["status"] == "SUCCEEDED"
    uri = open_store(stack.outputs).log_uri(result.run_id, "chatty", 1)
    in_bucket = _s3_text(stack, uri).splitlines()
    assert [ln for ln in in_bucket if ln.startswith("chatty")] == expected
    in_cloudwatch = job_log(job).splitlines()
    assert [ln for ln in in_cloudwatch if ln.startswith("chatty")] == expected
