"""The Python API: run a pipeline on a stack that is up, and read its outputs back.

    import runner
    result = runner.run(training, stack="dev", params={"alpha": 0.1})
    model = result.output("train")
    again = runner.load(result.run_id, "train")

The stack's outputs come from ``$MLSTACK_HOME/state.json`` through the shared reader in
:mod:`stacks.common.state_reader` (the runner never imports the provisioner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.driver import RunResult as DriverResult
    from runner.driver import StepResult
    from runner.metadata.client import MetadataClient
    from runner.metadata.schemas import RunDetail
    from runner.sdk import Pipeline
    from stacks.outputs import StackOutputs


class StackUnavailable(RunnerError):
    """The named stack is not up (or not readable) under this ``$MLSTACK_HOME``."""

    exit_code = 2


def stack_outputs(stack: str | None) -> StackOutputs:
    """Outputs of stack ``stack`` (None: the only one up), metadata token resolved."""
    from runner.secrets import resolve_token
    from stacks.common.state_reader import StackNotFound, read_outputs

    try:
        outputs = read_outputs(stack)
    except StackNotFound as exc:
        raise StackUnavailable(str(exc), "bring it up with `mlstack up SPEC_FILE`") from None
    return resolve_token(outputs)


@dataclass
class RunResult:
    """A finished run: status, steps (name -> StepResult); ``output()`` loads an output."""

    run_id: str
    pipeline: str
    status: str
    seconds: float
    steps: dict[str, StepResult]
    tracker_run_id: str | None
    outputs: StackOutputs

    def __repr__(self) -> str:
        return (
            f"RunResult(run_id={self.run_id!r}, pipeline={self.pipeline!r}, status={self.status!r})"
        )

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def output(self, step: str, name: str | None = None) -> Any:
        """Load output ``name`` (default: the step's only output) of ``step`` of this run."""
        found = self.steps.get(step)
        if found is None:
            raise RunnerError(
                f"run {self.run_id[:12]} has no step {step!r}", f"steps: {', '.join(self.steps)}"
            )
        if not found.outputs:
            raise RunnerError(
                f"step {step!r} of run {self.run_id[:12]} is {found.status}: no outputs"
            )
        art = found.outputs[_pick(step, name, list(found.outputs))]
        from runner.entrypoint import artifact_store_for

        return artifact_store_for(self.outputs).load(art.uri, art.materializer, art.type_name)

    def raise_for_status(self) -> None:
        _as_driver(self).raise_for_status()


def _client(outputs: StackOutputs) -> MetadataClient:
    from runner.metadata.client import MetadataClient

    token = outputs.metadata.token
    assert token is not None
    return MetadataClient(
        outputs.metadata.url, token.get_secret_value(), ca_pem=outputs.metadata.ca_pem
    )


def _find_run(run_id: str, stack: str | None) -> tuple[StackOutputs, RunDetail]:
    """The stack holding run ``run_id`` and the run: ``stack``, or whichever up stack has it."""
    from runner.errors import MetadataError
    from stacks.common.state_reader import live_stacks

    names = [stack] if stack else sorted(live_stacks())
    unreachable: list[str] = []
    for name in names:
        outputs = stack_outputs(name)
        try:
            with _client(outputs) as client:
                return outputs, client.get_run(run_id)
        except MetadataError as exc:
            if stack:
                raise
            if "not found" not in exc.headline:
                unreachable.append(f"{name} ({exc.headline})")
    where = f"stack {stack}" if stack else f"any up stack ({', '.join(names) or 'none'})"
    skipped = f"; not reachable: {', '.join(unreachable)}" if unreachable else ""
    raise RunnerError(f"no run {run_id!r} on {where}{skipped}", "see `mlstack runs`")


def _pick(step: str, name: str | None, names: list[str]) -> str:
    if name is None:
        if len(names) != 1:
            raise RunnerError(f"step {step!r} has outputs {', '.join(names)}", "name one")
        return names[0]
    if name not in names:
        raise RunnerError(f"step {step!r} has no output {name!r}", f"outputs: {', '.join(names)}")
    return name


def _as_driver(result: RunResult) -> DriverResult:
    from runner.driver import RunResult as DriverResult

    return DriverResult(
        result.run_id, result.pipeline, result.status, result.seconds, result.steps,
        result.tracker_run_id,
    )  # fmt: skip


def run(
    pipeline: Pipeline,
    stack: str | None = None,
    params: dict[str, Any] | None = None,
    cache: bool = True,
    fail_fast: bool | None = None,
) -> RunResult:
    """Run ``pipeline`` on ``stack``; a failed step gives ``status == "failed"``, no raise.

    ``params`` are validated against the pipeline's annotations first (a bad one raises
    :class:`~runner.errors.PipelineDefinitionError`); Ctrl-C raises ``RunCancelled``.
    """
    from runner.driver import run as drive

    outputs = stack_outputs(stack)
    done = drive(pipeline, outputs, params=params, no_cache=not cache, fail_fast=fail_fast)
    return RunResult(
        run_id=done.run_id,
        pipeline=done.pipeline,
        status=done.status,
        seconds=done.seconds,
        steps=done.steps,
        tracker_run_id=done.tracker_run_id,
        outputs=outputs,
    )


def load(run_id: str, step: str, output: str | None = None, *, stack: str | None = None) -> Any:
    """Read output ``output`` of ``step`` of run ``run_id`` (a full id) back from the store.

    The run is looked up on every up stack unless ``stack`` names one.
    """
    from runner.entrypoint import artifact_store_for

    outputs, detail = _find_run(run_id, stack)
    with _client(outputs) as client:
        found = next((s for s in detail.steps if s.name == step), None)
        if found is None:
            names = ", ".join(s.name for s in detail.steps)
            raise RunnerError(f"run {run_id[:12]} has no step {step!r}", f"steps: {names}")
        edges = {e.name: e for e in client.lineage(run_id)
                 if e.step_id == found.id and e.direction.value == "output"}  # fmt: skip
        if not edges:
            raise RunnerError(
                f"step {step!r} of run {run_id[:12]} has no outputs ({found.status.value})"
            )
        art = client.get_artifact(edges[_pick(step, output, list(edges))].artifact_id)
    return artifact_store_for(outputs).load(art.uri, art.materializer, art.type_name)
