"""``plan`` of a cloud stack that is up: the real preview with a CLI, else a plain note."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from provisioner.engines import get_engine
from provisioner.engines.pulumi_preview import change_of, cli_available
from provisioner.state import StackRecord, StateRegistry
from stacks.aws.program import COMPONENTS
from stacks.spec import StackSpec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

SPEC = StackSpec.model_validate(
    {"name": "live", "provider": "aws", "region": "eu-west-1",
     "network": {"allowed_cidrs": ["203.0.113.0/24"]}}
)  # fmt: skip


def _up_record(registry: StateRegistry) -> None:
    registry.save(
        StackRecord(
            name="live",
            stack_id="live-q1w2e3",
            provider="aws",
            status="up",
            spec=SPEC.redacted(),
            spec_hash=SPEC.spec_hash(),
        )
    )


def test_without_the_cli_a_live_plan_says_it_lists_desired_resources(tmp_path: Path) -> None:
    assert shutil.which("pulumi") is None and not cli_available(tmp_path)
    registry = StateRegistry(tmp_path)
    _up_record(registry)
    result = get_engine("aws", registry).plan(SPEC)
    assert result.notes and "lists the desired resources" in result.notes[0]
    assert "not a diff" in result.notes[0] and "Pulumi CLI" in result.notes[0]
    assert not any("0.0.0.0/0" in n for n in result.notes)  # ingress is restricted here
    assert {c.reason for c in result.changes} == {"desired state; up applies only the differences"}


STACK_ID = "live-q1w2e3"


def test_a_new_stack_plan_has_no_such_note_but_warns_about_open_ingress(tmp_path: Path) -> None:
    spec = StackSpec.model_validate({"name": "new", "provider": "aws", "region": "eu-west-1"})
    result = get_engine("aws", StateRegistry(tmp_path)).plan(spec)
    assert len(result.notes) == 1 and "0.0.0.0/0" in result.notes[0]


def test_preview_steps_become_planned_changes_per_component() -> None:
    urn = (
        f"urn:pulumi:{STACK_ID}::mlstack-aws::"
        "mlstack:aws:Tracker$aws:ecs/service:Service::mlflow-service"
    )

    def step(op: str, type_: str = "aws:ecs/service:Service", at: str = urn) -> SimpleNamespace:
        meta = SimpleNamespace(op=op, urn=at, type=type_, diffs=["taskDefinition"])
        return SimpleNamespace(metadata=meta)

    change = change_of(step("update"), COMPONENTS)
    assert change is not None
    assert (change.component, change.resource, change.action) == (
        "tracker",
        "mlflow-service",
        "update",
    )
    assert "taskDefinition" in change.reason
    assert change_of(step("create-replacement"), COMPONENTS).action == "replace"  # type: ignore[union-attr]
    assert change_of(step("same"), COMPONENTS).action == "unchanged"  # type: ignore[union-attr]
    provider = step(
        "same", "pulumi:providers:aws", f"urn:pulumi:{STACK_ID}::p::pulumi:providers:aws::aws"
    )
    assert change_of(provider, COMPONENTS) is None
