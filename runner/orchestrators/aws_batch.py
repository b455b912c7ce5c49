"""The aws_batch orchestrator: every step one AWS Batch job on Fargate (runner/batch_launcher.py).

``prepare`` checks the stack's job queue (one clear line when it is missing), sizes every step
for Fargate (a definition error before anything runs), builds or reuses the image in the
stack's registry, uploads the code archive to the artifact store and terminates the jobs of
runs whose driver died. Job definitions are keyed by image and Fargate size: one per setting,
found by name before one is registered, so consecutive runs reuse them. Timeouts are Batch's
own (``attemptDurationSeconds`` on each job); a retry is a new job the driver submits, so
every attempt's status and log tail are seen the same way on AWS and on an emulator (moto
ignores ``retryStrategy``).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import PipelineDefinitionError, RunnerError
from runner.orchestrators import Orchestrator, Prepared
from stacks.common.aws_naming import physical_name
from stacks.common.progress import Progress
from stacks.common.tags import STACK_ID_TAG
from stacks.spec.aws import FARGATE_MEMORY_GIB, fargate_fit

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore
    from runner.sdk import CompiledPipeline, Pipeline
    from runner.step_options import StepResources
    from stacks.outputs import AwsBatchOrchestratorOutputs, StackOutputs

LOG_PREFIX = "mlstack"  # awslogs streams are mlstack/default/<ecs task id>


def stack_client(outputs: StackOutputs, service: str) -> Any:
    """A boto3 client in the stack's region (credentials and endpoint overrides from the
    standard AWS chain: runner/aws_clients.py)."""
    from runner.aws_clients import aws_client

    return aws_client(service, outputs.region or getattr(outputs.secrets, "region", None))


# -- Fargate sizes -------------------------------------------------------------------------


def fargate_size(step: str, resources: StepResources) -> tuple[float, int]:
    """The smallest Fargate task size (vCPU, MiB) that holds the step's request.

    No request is Batch's default (1 vCPU, 2 GiB). GPUs, and a request beyond the largest
    Fargate task, are definition errors naming the step.
    """
    if resources.gpus:
        raise PipelineDefinitionError(
            f'step {step!r}: resources["gpus"] = {resources.gpus}, but AWS Batch on Fargate has'
            " no GPUs",
            "drop gpus from the step's resources, or run it on an orchestrator with GPUs",
        )
    cpu, memory = resources.cpu, resources.memory_gib
    fit = fargate_fit(cpu, memory)
    if fit is not None:
        return fit[0], int(fit[1] * 1024)
    biggest = max(FARGATE_MEMORY_GIB)
    raise PipelineDefinitionError(
        f"step {step!r}: resources cpu={cpu if cpu is not None else '-'},"
        f" memory_gib={memory if memory is not None else '-'} exceed the largest Fargate task"
        f" ({biggest:g} vCPU, {max(FARGATE_MEMORY_GIB[biggest]):g} GiB)",
        "ask for less, or run the step on another orchestrator",
    )


def _vcpu_text(vcpu: float) -> str:
    return str(int(vcpu)) if math.isclose(vcpu, round(vcpu)) else f"{vcpu:g}"


# -- job definitions -----------------------------------------------------------------------


def container_properties(
    coords: AwsBatchOrchestratorOutputs, image: str, size: tuple[float, int], region: str | None
) -> dict[str, Any]:
    """The job definition's container: image, Fargate size, roles, awslogs. No environment:
    what a step needs arrives in the job's overrides, and never a credential."""
    vcpu, memory = size
    options = {"awslogs-group": coords.log_group, "awslogs-stream-prefix": LOG_PREFIX}
    if region:
        options["awslogs-region"] = region
    return {
        "image": image,
        "command": ["true"],  # every job overrides it with its step's entrypoint
        "resourceRequirements": [
            {"type": "VCPU", "value": _vcpu_text(vcpu)},
            {"type": "MEMORY", "value": str(memory)},
        ],
        "jobRoleArn": coords.job_role_arn,
        "executionRoleArn": coords.execution_role_arn,
        "networkConfiguration": {"assignPublicIp": "ENABLED"},  # the stack has no NAT
        "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
        "logConfiguration": {"logDriver": "awslogs", "options": options},
    }


def definition_name(stack_id: str, properties: dict[str, Any]) -> str:
    """``mlstack-<stack id>-<digest>``: the same image and size give the same name."""
    digest = hashlib.sha256(json.dumps(properties, sort_keys=True).encode()).hexdigest()[:12]
    return physical_name(stack_id, digest, 128)


class JobDefinitions:
    """One job definition per image and Fargate size, found by name before registering."""

    def __init__(self, batch: Any, outputs: StackOutputs, image: str) -> None:
        self.batch = batch
        self.outputs = outputs
        self.image = image
        self._known: dict[tuple[float, int], str] = {}

    def for_resources(self, resources: StepResources, name: str) -> str:
        """The ARN (name:revision) of the job definition for step ``name``'s resources."""
        size = fargate_size(name, resources)
        if size not in self._known:
            self._known[size] = self._ensure(size)
        return self._known[size]

    def _ensure(self, size: tuple[float, int]) -> str:
        from runner.aws_errors import aws_errors

        coords: Any = self.outputs.orchestrator
        properties = container_properties(coords, self.image, size, self.outputs.region)
        name = definition_name(self.outputs.stack_id, properties)
        with aws_errors("batch", f"registering job definition {name}"):
            found = self.batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
            same = [
                d
                for d in found.get("jobDefinitions", [])
                if d.get("jobDefinitionName") == name and d.get("status") == "ACTIVE"
            ]
            if same:
                return str(max(same, key=lambda d: int(d["revision"]))["jobDefinitionArn"])
            made = self.batch.register_job_definition(
                jobDefinitionName=name,
                type="container",
                platformCapabilities=["FARGATE"],
                containerProperties=properties,
                propagateTags=True,
                tags={**self.outputs.tags, STACK_ID_TAG: self.outputs.stack_id},
            )
        return str(made["jobDefinitionArn"])


def check_queue(batch: Any, outputs: StackOutputs) -> str:
    """The stack's job queue ARN; one clear line when it is missing or cannot take jobs."""
    from runner.aws_errors import aws_errors

    queue = outputs.orchestrator.job_queue  # type: ignore[union-attr]
    hint = f"run `mlstack up` for stack {outputs.stack!r} to (re)create it"
    with aws_errors("batch", f"looking up job queue {queue!r}", missing_hint=hint):
        found = batch.describe_job_queues(jobQueues=[queue]).get("jobQueues", [])
    live = [q for q in found if q.get("status") not in ("DELETING", "DELETED")]
    if not live:
        raise RunnerError(
            f"AWS Batch job queue {queue!r} of stack {outputs.stack!r} does not exist"
            f" in {outputs.region or 'the default region'}",
            hint,
        )
    if live[0].get("state") != "ENABLED":
        raise RunnerError(
            f"AWS Batch job queue {queue!r} of stack {outputs.stack!r} is"
            f" {live[0].get('state', 'not enabled')}",
            "enable it (aws batch update-job-queue --state ENABLED) or run `mlstack up`",
        )
    return str(live[0]["jobQueueArn"])


class AwsBatchOrchestrator(Orchestrator):
    def prepare(
        self,
        pipeline: Pipeline,
        compiled: CompiledPipeline,
        store: ArtifactStore,
        scratch: Path,
        progress: Progress,
    ) -> Prepared:
        from runner.batch_launcher import BatchLauncher
        from runner.code import package_code
        from runner.packaging import ensure_image

        for name, inv in compiled.invocations.items():
            fargate_size(name, inv.step.resources)  # definition errors before any work
        batch = stack_client(self.outputs, "batch")
        check_queue(batch, self.outputs)
        build = ensure_image(pipeline, self.outputs, progress=progress)
        verb = "built" if build.built else "reused"
        progress.update("image", verb, f"{build.image} ({build.reason})")
        code = package_code(compiled.source, store)
        if code.kind == "git" and code.url.startswith("file://"):
            # A remote on this machine's disk cannot be cloned from inside a Batch job.
            code = package_code(compiled.source, store, use_git=False)
        progress.update("code", "ready", code.describe())
        launcher = BatchLauncher(
            self.outputs, JobDefinitions(batch, self.outputs, build.image), batch, progress
        )
        stopped = launcher.terminate_orphans()
        if stopped:
            progress.update("orphans", "terminated", f"{stopped} job(s) of runs whose driver died")
        return Prepared(
            launcher,
            {"code": code.as_dict(), "image": build.image},
            code.describe(),
            native_timeouts=True,
            remote_logs=True,  # the job keeps its log in the bucket (step_command's --capture)
        )
