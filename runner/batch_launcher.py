"""The AWS Batch launcher: one Batch job per step attempt, polled until it ends.

``launch`` submits a job of the step's job definition (runner/orchestrators/aws_batch.py) with
the step's entrypoint as its command. The job's environment holds the stack outputs without
any secret: the step reads the metadata token from the stack's secrets backend with its job
role, so no credential or token is ever in a job definition or a job's overrides. Endpoint
overrides (``AWS_ENDPOINT_URL*``) travel with the job, and so does
``$MLSTACK_BATCH_CREDENTIALS_URI``, a URL (never a credential) that stands in for Fargate's
task-role endpoint where no ECS agent serves one (an emulator running jobs on a local engine).

One thread polls ``DescribeJobs`` with backoff and reports every status change; a job that
ends is reported to the driver with its exit code, its log tail from CloudWatch Logs
appended to the step's log file and its result read back from the metadata server. Jobs are
tagged with the stack's tags, the run, the step and the driver (host:pid): the next run
terminates the jobs of runs that ended or whose driver died on its host (and records such a
run failed), and Ctrl-C (``close(kill=True)``) terminates this run's jobs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cloudwatch_logs import job_log_tail
from runner.errors import MetadataError, RunnerError
from runner.orchestrators.aws_batch import stack_client
from runner.worker import Finished
from stacks.common.constants import OUTPUTS_ENV
from stacks.common.progress import Progress
from stacks.common.tags import STACK_ID_TAG

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from runner.orchestrators.aws_batch import JobDefinitions
    from runner.sdk import Step
    from stacks.outputs import StackOutputs

ACTIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
STATUSES = {
    "SUBMITTED": "submitted to the job queue",
    "PENDING": "waiting on the job's dependencies",
    "RUNNABLE": "waiting for Fargate capacity",
    "STARTING": "starting its container",
    "RUNNING": "running on AWS Batch",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
}
POLL_MIN_SECONDS, POLL_MAX_SECONDS = 1.0, 5.0  # one DescribeJobs call for all jobs
MIN_ATTEMPT_SECONDS = 60  # Batch's smallest attemptDurationSeconds; shorter ones: see _deadlines
RUN_TAG, STEP_TAG, DRIVER_TAG = "mlstack:run", "mlstack:step", "mlstack:driver"
FINAL_RUN = ("completed", "failed", "cancelled")
DRIVER_DIED = "its driver process died (found by the next run on its host)"
JOB_PREFIX = "mlstack-"
CREDENTIALS_URI_ENV = "MLSTACK_BATCH_CREDENTIALS_URI"


@dataclass
class _Job:
    step_id: str
    name: str
    job_id: str
    log: Path
    result: Path
    timeout: float | None
    status: str = "SUBMITTED"
    running_since: float | None = None
    terminated_for_timeout: bool = False


def job_name(run_id: str, step: str) -> str:
    """``mlstack-<run>-<step>`` in the characters and length Batch allows."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{JOB_PREFIX}{run_id[:8]}-{step}")[:128]


def driver_tag() -> str:
    """``<host>:<pid>`` of this driver, in the characters a Batch tag value allows (the
    host as its runs record it: runner/heartbeat.py)."""
    from runner.heartbeat import this_host

    return re.sub(r"[^A-Za-z0-9_.:/=+@ -]", "-", f"{this_host()}:{os.getpid()}")[:256]


def driver_gone(tag: str) -> bool:
    """Whether the driver a job's tag names ran on this host and its process is gone. A
    driver on another host cannot be checked from here: its jobs are left alone."""
    host, _, pid = tag.rpartition(":")
    if not pid.isdigit() or host != driver_tag().rpartition(":")[0]:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def job_environment(outputs: StackOutputs) -> dict[str, str]:
    """What a step's job needs, none of it secret (the outputs without token or password)."""
    env = {OUTPUTS_ENV: json.dumps(outputs.public()), "PYTHONUNBUFFERED": "1"}
    if outputs.region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = outputs.region
    for key, value in os.environ.items():
        if (key == "AWS_ENDPOINT_URL" or key.startswith("AWS_ENDPOINT_URL_")) and value:
            env[key] = value
    uri = os.environ.get(CREDENTIALS_URI_ENV)
    if uri:
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = uri
    return env


def step_command(step_id: str) -> list[str]:
    """The job's command: the step entrypoint in capture mode, as the container's PID 1 (no
    shell: TerminateJob's SIGTERM reaches it and is passed on to the step). It keeps the
    step's output in the artifact store while it runs (each second, and when it ends or is
    stopped) and echoes every line to its stdout, which the job's log driver sends to
    CloudWatch Logs; its exit code is the step's (128 + N for a step killed by signal N)."""
    entrypoint = ["python3", "-m", "runner.entrypoint", "run-step", "--step-id", step_id]
    return [*entrypoint, "--capture", "--echo"]


class BatchLauncher:
    """Runs steps as AWS Batch jobs; same interface as the docker launcher."""

    def __init__(
        self, outputs: StackOutputs, definitions: JobDefinitions, batch: Any, progress: Progress
    ) -> None:
        self.outputs = outputs
        self.coords: Any = outputs.orchestrator
        self.definitions = definitions
        self.batch = batch
        self.logs = stack_client(outputs, "logs")
        self.progress = progress
        self.run_label = ""
        self._jobs: dict[str, _Job] = {}  # step id -> its active job
        self._done: queue.Queue[Finished] = queue.Queue()
        self._timed_out: dict[str, float] = {}
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._wake = threading.Event()
        self._client: MetadataClient | None = None
        self._poll_warned = False
        self._recorded: set[str] = set()  # job definitions recorded on the metadata server

    # -- the driver's interface ------------------------------------------------------------

    def launch(self, step_id: str, log: Path, result: Path, step: Step | None = None) -> None:
        from runner.aws_errors import aws_errors
        from runner.step_options import StepResources

        name = log.stem  # the invocation's name (the driver names its files after it)
        timeout = step.timeout if step is not None else None
        resources = step.resources if step is not None else StepResources()
        definition = self.definitions.for_resources(resources, name)
        self._record_definition(definition)
        env = job_environment(self.outputs)
        kwargs: dict[str, Any] = {
            "jobName": job_name(self.run_label, name),
            "jobQueue": self.coords.job_queue,
            "jobDefinition": definition,
            "containerOverrides": {
                "command": step_command(step_id),
                "environment": [{"name": k, "value": v} for k, v in env.items()],
            },
            "tags": {
                **self.outputs.tags,
                STACK_ID_TAG: self.outputs.stack_id,  # what orphan search and drain go by
                RUN_TAG: self.run_label,
                STEP_TAG: step_id,
                DRIVER_TAG: driver_tag(),
            },
            "propagateTags": True,
        }
        if timeout is not None:
            seconds = max(MIN_ATTEMPT_SECONDS, math.ceil(timeout))
            kwargs["timeout"] = {"attemptDurationSeconds": seconds}
        with aws_errors("batch", f"submitting step {name!r} to job queue {kwargs['jobQueue']!r}"):
            job_id = str(self.batch.submit_job(**kwargs)["jobId"])
        job = _Job(step_id, name, job_id, log, result, timeout)
        with self._lock:
            self._jobs[step_id] = job
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, daemon=True)
                self._poller.start()
        self.progress.update(name, "running", f"job {job_id}: {STATUSES['SUBMITTED']}")
        self._wake.set()

    def wait(self, timeout: float | None = None) -> Finished | None:
        """The next job to end; None when ``timeout`` seconds pass first."""
        while True:
            try:
                return self._done.get(timeout=0.5 if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None:
                    return None

    def timed_out(self, step_id: str) -> float | None:
        """The timeout (seconds) the attempt that just ended went over, if it did."""
        return self._timed_out.pop(step_id, None)

    def kill(self, step_id: str) -> None:
        with self._lock:
            job = self._jobs.get(step_id)
        if job is not None:
            self._terminate(job.job_id, "mlstack: the step was stopped by its driver")

    def close(self, kill: bool = False) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        if kill:
            for job in jobs:
                self._terminate(job.job_id, "mlstack: the run was cancelled")
                self.progress.update(job.name, "cancelled", f"job {job.job_id} terminated")
        self._wake.set()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- jobs of runs whose driver died ------------------------------------------------------

    def terminate_orphans(self) -> int:
        """Terminate this stack's active jobs whose run has ended, or whose driver ran on this
        host and died (its run is then recorded failed); how many."""
        from runner.aws_errors import aws_errors

        client = self._metadata()
        with aws_errors("batch", f"listing the jobs of job queue {self.coords.job_queue!r}"):
            ids = [
                summary["jobId"]
                for status in ACTIVE
                for page in self.batch.get_paginator("list_jobs").paginate(
                    jobQueue=self.coords.job_queue, jobStatus=status
                )
                for summary in page.get("jobSummaryList", [])
                if str(summary.get("jobName", "")).startswith(JOB_PREFIX)
            ]
            described = self._describe(ids)
        stopped = 0
        for job in described:
            tags = job.get("tags") or {}
            run_id = tags.get(RUN_TAG)
            if tags.get(STACK_ID_TAG) != self.outputs.stack_id or not run_id:
                continue
            try:
                status: str | None = client.get_run(run_id).status.value
            except RunnerError:
                status = None  # unknown (or unreachable): only a dead driver decides
            dead = driver_gone(str(tags.get(DRIVER_TAG, "")))
            if status in FINAL_RUN or dead:
                reason = f"run {run_id}: {DRIVER_DIED}" if dead else f"run {run_id} is {status}"
                self._terminate(job["jobId"], f"mlstack: {reason}")
                stopped += 1
            if dead and status in ("pending", "running"):
                with contextlib.suppress(RunnerError):
                    client.update_run(run_id, status="failed", error=DRIVER_DIED)
        return stopped

    # -- polling -------------------------------------------------------------------------

    def _poll(self) -> None:
        delay = POLL_MIN_SECONDS
        while True:
            with self._lock:
                jobs = dict(self._jobs)
                if not jobs:
                    self._poller = None
                    return
            try:
                changed = self._refresh(jobs)
            except Exception as exc:  # throttling, a network blip: try again, slower
                if not self._poll_warned:
                    self._poll_warned = True
                    print(
                        f"warning: AWS Batch DescribeJobs failed, retrying: {exc}", file=sys.stderr
                    )
                changed = False
            delay = POLL_MIN_SECONDS if changed else min(POLL_MAX_SECONDS, delay * 1.5)
            self._wake.wait(delay)
            self._wake.clear()

    def _refresh(self, jobs: dict[str, _Job]) -> bool:
        by_id = {job.job_id: job for job in jobs.values()}
        changed = False
        now = time.monotonic()
        for desc in self._describe(list(by_id)):
            job = by_id[desc["jobId"]]
            status = str(desc.get("status"))
            if status != job.status:
                changed = True
                job.status = status
                if status in ACTIVE:
                    self.progress.update(
                        job.name, "running", f"job {job.job_id}: {STATUSES[status]}"
                    )
            if status == "RUNNING" and job.running_since is None:
                job.running_since = now
            if status in ("SUCCEEDED", "FAILED"):
                self._finish(job, desc)
            elif self._over_short_timeout(job, now):
                job.terminated_for_timeout = True
                self._terminate(job.job_id, "mlstack: the attempt went over its timeout")
        return changed

    def _over_short_timeout(self, job: _Job, now: float) -> bool:
        """Batch stops attempts of 60 s and more itself; a shorter timeout is enforced here."""
        if job.timeout is None or job.timeout >= MIN_ATTEMPT_SECONDS or job.terminated_for_timeout:
            return False
        return job.running_since is not None and now - job.running_since >= job.timeout

    def _finish(self, job: _Job, desc: dict[str, Any]) -> None:
        with self._lock:
            if self._jobs.pop(job.step_id, None) is None:
                return  # closed meanwhile
        code = 0
        if desc["status"] == "FAILED":
            code = int((desc.get("container") or {}).get("exitCode") or 0) or 1
            if job.timeout is not None and (job.terminated_for_timeout or _went_over(desc, job)):
                self._timed_out[job.step_id] = job.timeout
            reason = desc.get("statusReason") or "no reason given"
            tail = job_log_tail(self.logs, desc, self.coords.log_group)
            with job.log.open("a", encoding="utf-8") as out:
                out.write(f"{tail}\n===== AWS Batch job {job.job_id} FAILED: {reason} =====\n")
        self.progress.update(job.name, "running", f"job {job.job_id}: {STATUSES[desc['status']]}")
        try:
            self._write_result(job, desc)
        except RunnerError as exc:
            with job.log.open("a", encoding="utf-8") as out:
                out.write(f"mlstack: could not read the step's result back: {exc}\n")
        self._done.put(Finished(step_id=job.step_id, code=code))

    def _write_result(self, job: _Job, desc: dict[str, Any]) -> None:
        """The step's own record (status, error, outputs) as the driver's result file. A failed
        job whose step recorded no end (its container was killed: TerminateJob, memory, a
        lost host) is recorded failed here, with the reason Batch gives."""
        client = self._metadata()
        record = client.get_step(job.step_id)
        status = record.status.value
        result: dict[str, Any] = {"step_id": job.step_id, "status": status, "outputs": {}}
        if status in ("pending", "running") and desc["status"] == "FAILED":
            reason = desc.get("statusReason") or "no reason given"
            error = f"its AWS Batch job {job.job_id} stopped before the step ended: {reason}"
            record = client.update_step(job.step_id, status="failed", error=error[:500])
            status = result["status"] = "failed"
            result["crashed"] = True
        if status not in ("completed", "failed"):
            return  # the job ended before its step could record anything
        if status == "failed":
            result["error"] = record.error
        else:
            for edge in client.lineage(record.run_id):
                if edge.step_id == job.step_id and edge.direction.value == "output":
                    art = client.get_artifact(edge.artifact_id)
                    result["outputs"][edge.name] = art.model_dump(mode="json")
        tmp = job.result.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, job.result)

    # -- AWS and metadata calls ------------------------------------------------------------

    def _describe(self, ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):  # DescribeJobs takes at most 100 ids
            found += self.batch.describe_jobs(jobs=ids[start : start + 100]).get("jobs", [])
        return found

    def _terminate(self, job_id: str, reason: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        with contextlib.suppress(BotoCoreError, ClientError):
            self.batch.terminate_job(jobId=job_id, reason=reason)

    def _record_definition(self, arn: str) -> None:
        """The job definition the run uses (registered or reused), recorded once so the
        drain deregisters it (best effort: a run never fails on it)."""
        from runner.runtime_resources import record

        if arn in self._recorded:
            return
        self._recorded.add(arn)
        name = arn.rsplit("/", 1)[-1]  # name:revision
        with contextlib.suppress(MetadataError):
            record(self._metadata(), self.outputs, "batch:job-definition", name, arn=arn)

    def _metadata(self) -> MetadataClient:
        if self._client is None:
            from runner.metadata.client import MetadataClient

            token = self.outputs.metadata.token
            self._client = MetadataClient(
                self.outputs.metadata.url,
                token.get_secret_value() if token else "",
                ca_pem=self.outputs.metadata.ca_pem,
            )
        return self._client


def _went_over(desc: dict[str, Any], job: _Job) -> bool:
    """Whether a failed attempt ran its whole timeout (Batch stopped it for its duration)."""
    reason = str(desc.get("statusReason") or "").lower()
    if "timeout" in reason or "duration" in reason:
        return True
    started, stopped = desc.get("startedAt"), desc.get("stoppedAt")
    if job.timeout is None or job.timeout < MIN_ATTEMPT_SECONDS or not started or not stopped:
        return False
    return (stopped - started) / 1000 >= math.ceil(job.timeout) - 0.5
