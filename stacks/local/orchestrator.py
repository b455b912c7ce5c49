"""Local orchestrators: 'local' runs steps as processes on this machine, 'docker' as containers."""

from __future__ import annotations

from typing import Literal

from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import OrchestratorOutputs


def _kind(ctx: LocalContext) -> Literal["local", "docker"]:
    flavor = ctx.spec.components.orchestrator.flavor
    return "docker" if flavor is not None and flavor.value == "docker" else "local"


def service(ctx: LocalContext) -> ServiceDef:
    """Nothing runs while idle: the orchestrator is a setting the runner reads at run time."""
    spec = ctx.spec.components.orchestrator
    return ServiceDef(
        name="orchestrator",
        component="orchestrator",
        config={"flavor": _kind(ctx), "max_parallel": spec.max_parallel},
    )


def outputs(ctx: LocalContext) -> OrchestratorOutputs:
    spec = ctx.spec.components.orchestrator
    return OrchestratorOutputs(
        kind=_kind(ctx),
        max_parallel=spec.max_parallel,
        base_image=spec.base_image,
    )
