"""The provisioner as a library: ``plan``, ``up``, ``down``, ``status``, ``outputs``, secrets.

The CLI is a thin layer over these functions; they work from Python without click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.engines import get_engine
from provisioner.state import StackRecord, StateRegistry
from stacks.common.errors import UsageError
from stacks.common.progress import Progress
from stacks.spec import StackSpec

if TYPE_CHECKING:
    from provisioner.engines.base import DownResult, PlanResult, ServiceStatus, UpResult
    from stacks.outputs import StackOutputs


def plan(spec: StackSpec, registry: StateRegistry | None = None) -> PlanResult:
    """What ``up`` would start, stop or change for ``spec``."""
    registry = registry or StateRegistry()
    return get_engine(spec.provider.value, registry).plan(spec)


def up(
    spec: StackSpec,
    registry: StateRegistry | None = None,
    progress: Progress | None = None,
    spec_path: str | None = None,
) -> UpResult:
    """Converge the stack to ``spec``; idempotent."""
    registry = registry or StateRegistry()
    return get_engine(spec.provider.value, registry, progress).up(spec, spec_path=spec_path)


def record(name: str, registry: StateRegistry | None = None) -> StackRecord:
    """The state record of stack ``name``; UsageError when there is none."""
    registry = registry or StateRegistry()
    found = registry.get(name)
    if found is None:
        if (registry.home / "stacks" / name).is_dir():  # its state was lost, its folder is not
            raise UsageError(
                f"no stack named {name!r} in the state, but its folder"
                f" {registry.home / 'stacks' / name} exists",
                f"`mlstack recover {name}` stops its daemons; `mlstack up SPEC` starts it"
                " again on that folder",
            )
        raise UsageError(f"no stack named {name!r}", "see `mlstack status` for known stacks")
    return found


def down(
    name: str, registry: StateRegistry | None = None, progress: Progress | None = None
) -> DownResult:
    """Stop and remove everything of stack ``name``."""
    registry = registry or StateRegistry()
    rec = record(name, registry)
    return get_engine(rec.provider, registry, progress).down(name)


def status(rec: StackRecord, registry: StateRegistry | None = None) -> list[ServiceStatus]:
    """Live status of every service of a stack (pids and health endpoints checked now)."""
    if rec.status == "destroyed":
        return []
    return get_engine(rec.provider, registry or StateRegistry()).status(rec)


def _live(name: str, registry: StateRegistry | None) -> StackRecord:
    rec = record(name, registry)
    if rec.status == "destroyed" or rec.outputs is None:
        raise UsageError(f"stack {name!r} is not up", f"run `mlstack up` for {name!r} first")
    return rec


def outputs(name: str, registry: StateRegistry | None = None) -> StackOutputs:
    """The stack's public outputs (no secret values; the runner resolves the token)."""
    found = _live(name, registry).outputs
    assert found is not None
    return found
