"""Orchestrators: how a run's steps are launched, one launcher per kind.

An orchestrator's ``prepare`` readies what the run needs (an image, the code) and returns a
launcher with ``launch(step_id, log, result)``, ``wait()`` and ``close(kill)``, plus the
fields every step spec gets and the run's code reference. A launcher whose ``launch`` takes
a ``step`` keyword gets the :class:`runner.sdk.Step` (its resources); one the driver enforces
timeouts on has ``wait(timeout=seconds)`` (None when nothing finished) and ``kill(step_id)``;
one that stops attempts itself (``native_timeouts``) says which did with ``timed_out(step_id)``.
The driver in ``runner/driver.py`` looks the orchestrator up here by the kind in the stack's
outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.roles import Role
from stacks.common.progress import Progress

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore
    from runner.sdk import CompiledPipeline, Pipeline
    from stacks.outputs import StackOutputs


@dataclass
class Prepared:
    """A launcher ready for the run, what every step spec gets, and the code reference.

    ``native_retries`` / ``native_timeouts``: the orchestrator itself retries failed attempts
    (``step.retries``) / stops attempts over ``step.timeout``, so the driver does not.
    ``remote_logs``: the step's output never reaches the log file the driver hands the
    launcher; the job keeps it in the store itself (``run-step --capture``, at
    ``ArtifactStore.log_uri(run, step, attempt)``), so the driver does not mirror it (a
    timed-out attempt's note goes after the job's own copy).
    """

    launcher: Any
    extra_spec: dict[str, Any] = field(default_factory=dict)
    code_ref: str | None = None
    native_retries: bool = False
    native_timeouts: bool = False
    remote_logs: bool = False


class Orchestrator:
    """One kind of orchestrator. Subclasses implement :meth:`prepare`."""

    def __init__(self, outputs: StackOutputs) -> None:
        self.outputs = outputs

    def prepare(
        self,
        pipeline: Pipeline,
        compiled: CompiledPipeline,
        store: ArtifactStore,
        scratch: Path,
        progress: Progress,
    ) -> Prepared:
        raise NotImplementedError


ORCHESTRATORS: Role[Orchestrator] = Role(
    "orchestrator",
    {
        "local": "runner.orchestrators.local:LocalOrchestrator",
        "docker": "runner.orchestrators.docker:DockerOrchestrator",
        "aws_batch": "runner.orchestrators.aws_batch:AwsBatchOrchestrator",
    },
)


def orchestrator_for(outputs: StackOutputs) -> Orchestrator:
    """The orchestrator of the stack's kind."""
    return ORCHESTRATORS.get(outputs.orchestrator.kind)(outputs)
