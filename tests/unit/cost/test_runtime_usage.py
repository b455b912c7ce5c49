"""Runtime usage in `cost`: endpoint hours and, on a Batch stack, its runs' job hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provisioner.cost.catalog import load
from provisioner.cost.spend import RuntimeUsage, runtime_charges
from provisioner.state import StackRecord
from runner.metadata.schemas import StepOut
from stacks.common.constants import BATCH_DEFAULT_MEMORY_GIB, BATCH_DEFAULT_VCPU
from tests.conftest import aws_outputs_data, local_outputs_data

AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
REGION = "us-east-1"


def _record(outputs: dict[str, Any], provider: str = "aws") -> StackRecord:
    spec: dict[str, Any] = {"name": "demo", "provider": provider}
    if provider == "aws":
        spec["region"] = REGION
        outputs = outputs | {"region": REGION}
    return StackRecord(
        name="demo", stack_id="demo-0001", provider=provider, status="up",
        spec=spec, spec_hash="x", outputs=outputs,
    )  # fmt: skip


def _step(
    run: str, name: str, status: str, minutes: float | None, **settings: Any
) -> dict[str, Any]:
    """A step exactly as GET /runs/{id} lists it (validated by the server's own schema), its
    resources among the run settings the driver records."""
    spec = {"settings": settings}
    start = AT - timedelta(hours=2)
    step = StepOut(
        id=f"{run}-{name}", run_id=run, name=name, status=status, spec=spec, cache_key=None,
        error=None, log_uri=None, created_at=start,
        started_at=None if minutes is None else start,
        ended_at=None if minutes is None else start + timedelta(minutes=minutes),
    )  # fmt: skip
    return step.model_dump(mode="json")


def _prices() -> tuple[float, float, float]:
    catalog = load()
    vcpu = catalog.price("aws.fargate.vcpu_hour", REGION)
    gib = catalog.price("aws.fargate.gb_hour", REGION)
    ipv4 = catalog.price("aws.public_ipv4", REGION)
    assert vcpu and gib and ipv4
    return vcpu, gib, ipv4


def test_batch_jobs_are_charged_per_run_by_their_size_and_duration() -> None:
    steps = [
        _step("r1", "load", "completed", 30),  # Batch default size
        _step("r1", "train", "completed", 60, resources={"cpu": 4, "memory_gib": 16}),
        _step("r1", "cached", "cached", 0),  # ran no job
        _step("r1", "skipped", "skipped", None),  # never started
        _step("r2", "only", "failed", 6, resources={"cpu": 2}),  # billed as 2 vCPU, 4 GiB
        _step("r3", "tiny", "completed", 60, resources={"cpu": 0.3, "memory_gib": 0.7}),
    ]
    charges, notes = runtime_charges(
        _record(aws_outputs_data()), AT, lambda record: RuntimeUsage(steps=steps)
    )
    vcpu, gib, ipv4 = _prices()  # every job also holds one public IPv4 while it runs
    by_run = {c.resource.split()[4]: c for c in charges}
    assert set(by_run) == {"r1", "r2", "r3"} and notes == []
    default = 0.5 * (BATCH_DEFAULT_VCPU * vcpu + BATCH_DEFAULT_MEMORY_GIB * gib + ipv4)
    assert by_run["r1"].amount == pytest.approx(default + 1.0 * (4 * vcpu + 16 * gib + ipv4))
    assert by_run["r1"].hours == pytest.approx(1.5)
    assert "(2 steps)" in by_run["r1"].resource
    r2 = by_run["r2"]
    assert r2.amount == pytest.approx(0.1 * (2 * vcpu + 4 * gib + ipv4))
    assert r2.component == "orchestrator" and r2.kind == "batch_job"
    # 0.3 vCPU / 0.7 GiB runs as Fargate's 0.5 vCPU / 1 GiB.
    assert by_run["r3"].amount == pytest.approx(1.0 * (0.5 * vcpu + 1 * gib + ipv4))


def test_a_running_step_accrues_until_now() -> None:
    steps = [_step("r1", "long", "running", None)]
    steps[0]["started_at"] = (AT - timedelta(hours=3)).isoformat()
    charges, _ = runtime_charges(
        _record(aws_outputs_data()), AT, lambda record: RuntimeUsage(steps=steps)
    )
    assert charges[0].hours == pytest.approx(3.0)


def test_local_steps_cost_nothing_and_are_not_listed() -> None:
    steps = [_step("r1", "load", "completed", 30)]
    record = _record(local_outputs_data(), provider="local")
    charges, _ = runtime_charges(record, AT, lambda r: RuntimeUsage(steps=steps))
    assert charges == []


def test_an_unpriced_region_says_so_instead_of_guessing() -> None:
    record = _record(aws_outputs_data())
    record.spec = record.spec.model_copy(update={"region": "ap-south-2"})
    steps = [_step("r1", "load", "completed", 30)]
    charges, _ = runtime_charges(record, AT, lambda r: RuntimeUsage(steps=steps))
    assert charges[0].amount is None and "no ap-south-2 price" in charges[0].note


def test_unreachable_metadata_server_is_a_note() -> None:
    def fail(record: StackRecord) -> RuntimeUsage:
        raise ConnectionRefusedError

    charges, notes = runtime_charges(_record(aws_outputs_data()), AT, fail)
    assert charges == [] and "not reachable (ConnectionRefusedError)" in notes[0]
