"""Local orchestrators: 'local' runs steps as processes on this machine, 'docker' as containers."""

from __future__ import annotations

from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import (
    DockerOrchestratorOutputs,
    LocalOrchestratorOutputs,
    OrchestratorOutputs,
)
from stacks.spec.local import DockerOrchestrator


def service(ctx: LocalContext) -> ServiceDef:
    """Nothing runs while idle: the orchestrator is a setting the runner reads at run time."""
    spec = ctx.spec.components.orchestrator
    return ServiceDef(
        name="orchestrator",
        component="orchestrator",
        config={"flavor": spec.flavor.value, "max_parallel": spec.max_parallel},
    )


def outputs(ctx: LocalContext) -> OrchestratorOutputs:
    spec = ctx.spec.components.orchestrator
    if isinstance(spec, DockerOrchestrator):
        return DockerOrchestratorOutputs(max_parallel=spec.max_parallel, base_image=spec.base_image)
    return LocalOrchestratorOutputs(max_parallel=spec.max_parallel)
