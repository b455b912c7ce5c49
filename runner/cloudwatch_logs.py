"""CloudWatch Logs reader: the tail of an AWS Batch job's log stream.

A Batch job on Fargate with the ``awslogs`` driver writes to the group in its job definition,
in a stream named ``<prefix>/<container>/<ecs task id>`` that ``DescribeJobs`` reports as
``container.logStreamName``. A job without a log configuration (and an emulator such as
moto, which names its streams ``<job definition>/default/<job id>``) writes to Batch's
default group ``/aws/batch/job``; the reader looks there after the configured group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stacks.outputs import StackOutputs

BATCH_DEFAULT_GROUP = "/aws/batch/job"
TAIL_LINES = 40


def stream_of(job: dict[str, Any]) -> str | None:
    """The log stream of a described job (its latest attempt's, if the job has none)."""
    stream = (job.get("container") or {}).get("logStreamName")
    for attempt in reversed(job.get("attempts") or []):
        stream = stream or (attempt.get("container") or {}).get("logStreamName")
    return str(stream) if stream else None


def tail(logs: Any, group: str, stream: str, lines: int = TAIL_LINES) -> list[str] | None:
    """The last ``lines`` messages of ``group``/``stream``; None when that stream is not there."""
    from botocore.exceptions import ClientError

    try:
        events = logs.get_log_events(
            logGroupName=group, logStreamName=stream, startFromHead=False, limit=lines
        ).get("events", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    events.sort(key=lambda e: (e.get("timestamp", 0), e.get("ingestionTime", 0)))
    return [str(e.get("message", "")).rstrip("\n") for e in events][-lines:]


def job_log_tail(
    logs: Any,
    job: dict[str, Any],
    group: str,
    lines: int = TAIL_LINES,
    tries: int = 3,
    pause: float = 2.0,
) -> str:
    """The tail of a described Batch job's log, from ``group`` or Batch's default group;
    a one-line note instead when no stream can be read. The awslogs driver may deliver the
    last lines a moment after the job ends: a missing or empty stream is read ``tries`` times."""
    import time

    from botocore.exceptions import BotoCoreError, ClientError

    stream = stream_of(job)
    if stream is None:
        return "(AWS Batch reported no log stream for this job: its container never started)"
    found: list[str] | None = None
    for attempt in range(tries):
        if attempt:
            time.sleep(pause)
        try:
            for candidate in dict.fromkeys((group, BATCH_DEFAULT_GROUP)):
                found = tail(logs, candidate, stream, lines)
                if found is not None:
                    break
        except (BotoCoreError, ClientError) as exc:
            return f"(could not read CloudWatch Logs stream {stream}: {exc})"
        if found:
            return "\n".join(found)
    if found is not None:
        return f"(CloudWatch Logs stream {stream} is empty)"
    return f"(CloudWatch Logs has no stream {stream} in {group} or {BATCH_DEFAULT_GROUP})"


def read_stream(logs: Any, group: str, stream: str) -> list[str] | None:
    """Every message of ``group``/``stream``, oldest first; None when that stream is not there."""
    from botocore.exceptions import ClientError

    lines: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"nextToken": token} if token else {"startFromHead": True}
        try:
            page = logs.get_log_events(logGroupName=group, logStreamName=stream, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
        lines += [str(e.get("message", "")).rstrip("\n") for e in page.get("events", [])]
        if not page.get("events") or page.get("nextForwardToken") in (None, token):
            return lines
        token = page["nextForwardToken"]


@dataclass(frozen=True)
class JobLog:
    """The CloudWatch Logs stream of one Batch job of a step (None: it has none to read)."""

    job_id: str
    group: str
    stream: str | None
    lines: list[str] | None


def step_job_logs(outputs: StackOutputs, run_id: str, step_name: str, step_id: str) -> list[JobLog]:
    """The logs of every Batch job that ran step ``step_id`` of run ``run_id`` (one per
    attempt), oldest first, read from the stack's job log group or Batch's default group."""
    from runner.aws_errors import aws_errors
    from runner.batch_launcher import ACTIVE, STEP_TAG, job_name
    from runner.orchestrators.aws_batch import stack_client

    queue = outputs.orchestrator.job_queue  # type: ignore[union-attr]
    group = str(getattr(outputs.orchestrator, "log_group", "") or BATCH_DEFAULT_GROUP)
    batch, logs = stack_client(outputs, "batch"), stack_client(outputs, "logs")
    name = job_name(run_id, step_name)
    with aws_errors("batch", f"listing the jobs of job queue {queue!r}"):
        ids = [
            summary["jobId"]
            for status in (*ACTIVE, "SUCCEEDED", "FAILED")
            for page in batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status)
            for summary in page.get("jobSummaryList", [])
            if summary.get("jobName") == name
        ]
        jobs = [
            j
            for i in range(0, len(ids), 100)
            for j in batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]
        ]
    mine = sorted(
        (j for j in jobs if (j.get("tags") or {}).get(STEP_TAG) == step_id),
        key=lambda j: j.get("createdAt", 0),
    )
    found: list[JobLog] = []
    with aws_errors("logs", f"reading the CloudWatch Logs of step {step_name!r}"):
        for job in mine:
            stream = stream_of(job)
            lines, where = None, group
            for candidate in dict.fromkeys((group, BATCH_DEFAULT_GROUP)):
                lines = read_stream(logs, candidate, stream) if stream else None
                if lines is not None:
                    where = candidate
                    break
            found.append(JobLog(str(job["jobId"]), where, stream, lines))
    return found
