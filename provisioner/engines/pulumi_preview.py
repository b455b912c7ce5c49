"""``plan`` of a cloud stack that is up, with the Pulumi CLI present: the real preview.

Each resource step of ``pulumi preview`` (create, update, replace, delete, same) becomes a
PlannedChange, attributed to the spec component whose ComponentResource appears in its URN.
Without the CLI, the engine falls back to the mock plan and says so (see ``PulumiEngine._plan``).
"""

from __future__ import annotations

import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.engines.base import PlannedChange, PlanResult
from provisioner.state import StackRecord
from stacks.spec import StackSpec

if TYPE_CHECKING:
    from provisioner.engines.pulumi import PulumiEngine

ACTIONS = {
    "same": "unchanged",
    "create": "create",
    "update": "update",
    "replace": "replace",
    "create-replacement": "replace",
    "delete": "delete",
    "delete-replaced": "replace",
}


def cli_available(home: Path) -> bool:
    """Whether a Pulumi CLI is on PATH or was installed by mlstack (never installs one)."""
    try:
        sdk = importlib_metadata.version("pulumi")
    except importlib_metadata.PackageNotFoundError:
        return False
    return (
        shutil.which("pulumi") is not None
        or (home / "pulumi-cli" / sdk / "bin" / "pulumi").exists()
    )


def change_of(step: Any, components: dict[str, str]) -> PlannedChange | None:
    """A PlannedChange for one preview resource step (None for providers and the stack)."""
    meta = step.metadata
    if meta.type.startswith(("pulumi:providers:", "pulumi:pulumi:Stack")):
        return None
    op = meta.op.value if hasattr(meta.op, "value") else str(meta.op)
    types = meta.urn.split("::")[2].split("$")
    component = next((components[t] for t in reversed(types) if t in components), "stack")
    if meta.type in components:
        return None  # the component resource itself: its children are listed
    return PlannedChange(
        component=component,
        resource=meta.urn.rsplit("::", 1)[-1],
        action=ACTIONS.get(op, op),
        reason="pulumi preview"
        + (f": {', '.join(meta.diffs)}" if getattr(meta, "diffs", None) else ""),
        type=meta.type,
        details={},
    )


def preview(
    engine: PulumiEngine, spec: StackSpec, record: StackRecord, notes: list[str]
) -> PlanResult:
    """Run ``pulumi preview`` for the live stack and list each resource's planned step."""
    from provisioner.engines.pulumi import PulumiEngine
    from provisioner.engines.pulumi_events import translate

    mod = engine._program()
    steps: dict[str, PlannedChange] = {}

    def on_event(event: Any) -> None:
        step = getattr(event, "resource_pre_event", None)
        if step is not None:
            change = change_of(step, mod.COMPONENTS)
            if change is not None:
                steps[step.metadata.urn] = change

    try:
        stack = engine._stack(record, lambda: mod.program(spec))
        PulumiEngine._configure(engine, stack, spec, record)  # no image build in a preview
        stack.preview(on_event=on_event, color="never")
    except Exception as exc:
        raise translate(exc, None, record.name, "plan") from exc
    changes = sorted(steps.values(), key=lambda c: (c.component, c.type, c.resource))
    return PlanResult(
        stack=spec.name,
        provider=spec.provider.value,
        changes=changes,
        notes=["the real preview of the live stack (pulumi preview)", *notes],
    )
