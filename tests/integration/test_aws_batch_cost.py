"""Issue 12 end to end on the Batch harness: `mlstack cost --json` charges a run's Batch jobs
by the hours its steps ran and the vCPU and memory they asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.cost.catalog import load
from provisioner.state import StackRecord, StateRegistry
from runner.metadata.client import MetadataClient
from stacks.outputs import StackOutputs
from tests.aws_stack import REGION, BatchStack
from tests.conftest import run_cli
from tests.integration.test_aws_batch import run_pipeline, stack  # noqa: F401 - the harness

pytestmark = [pytest.mark.docker, pytest.mark.services]

SIZED = Path(__file__).resolve().parents[1] / "pipelines" / "batch_cost_toy.py"


def _record(batch: BatchStack) -> StackRecord:
    """The state record `up` would have written for the harness's stack (public outputs)."""
    outputs = StackOutputs.model_validate(batch.outputs.public())
    spec = {"name": outputs.stack, "provider": "aws", "region": REGION}
    return StackRecord(
        name=outputs.stack, stack_id=outputs.stack_id, provider="aws", status="up",
        spec=spec, spec_hash="e2e-batch-cost", outputs=outputs,
    )  # fmt: skip


def test_cost_charges_a_runs_batch_jobs_by_step_hours_and_sizes(
    stack: BatchStack,  # noqa: F811
) -> None:
    result = run_pipeline(stack, f"{SIZED}:sized", seconds=3)
    assert result.status == "completed", {n: s.error for n, s in result.steps.items()}
    token = stack.outputs.metadata.token.get_secret_value()  # type: ignore[union-attr]
    with MetadataClient(stack.outputs.metadata.url, token) as client:
        steps = client.list_steps(result.run_id)
    assert {s.name for s in steps} == {"small", "large"}
    assert all(s.started_at and s.ended_at for s in steps)
    seconds = {s.name: (s.ended_at - s.started_at).total_seconds() for s in steps}  # type: ignore[operator]
    assert all(value >= 3 for value in seconds.values())  # each step slept 3 s in its job
    catalog = load()
    vcpu = catalog.price("aws.fargate.vcpu_hour", REGION)
    gib = catalog.price("aws.fargate.gb_hour", REGION)
    ipv4 = catalog.price("aws.public_ipv4", REGION)  # each job's public IPv4 while it runs
    assert vcpu and gib and ipv4
    size = {"small": (0.5, 1.0), "large": (2.0, 4.0)}  # the steps' resources
    expected = sum(seconds[n] / 3600 * (c * vcpu + m * gib + ipv4) for n, (c, m) in size.items())

    registry = StateRegistry()
    record = _record(stack)
    registry.save(record)
    try:
        proc = run_cli("cost", record.name, "--json", timeout=300)
    finally:  # no live AWS record left behind for anything that walks the state
        registry.save(record.model_copy(update={"status": "destroyed"}))
    assert proc.returncode == 0, proc.stderr
    (spend,) = json.loads(proc.stdout)
    assert spend["stack"] == record.name and spend["status"] == "up"
    (charge,) = [c for c in spend["runtime"] if result.run_id in c["resource"]]
    assert charge["kind"] == "batch_job" and charge["component"] == "orchestrator"
    assert "(2 steps)" in charge["resource"]
    assert charge["hours"] == pytest.approx(sum(seconds.values()) / 3600, rel=1e-6)
    assert charge["amount"] == pytest.approx(expected, rel=1e-6)
    assert spend["total"] >= charge["amount"]
    assert token not in proc.stdout + proc.stderr
