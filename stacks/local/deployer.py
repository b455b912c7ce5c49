"""Local model deployer: serves registered models as local HTTP endpoints at run time."""

from __future__ import annotations

from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import DeployerOutputs, RegistryOutputs


def _enabled(ctx: LocalContext) -> bool:
    flavor = ctx.spec.components.deployer.flavor
    return flavor is not None and flavor.value != "none"


def service(ctx: LocalContext) -> ServiceDef | None:
    """Endpoints are started per deployment; idle, the deployer is only a setting."""
    if not _enabled(ctx):
        return None
    return ServiceDef(
        name="deployer",
        component="deployer",
        config={"flavor": "local", "server": "mlflow models serve --env-manager local"},
    )


def outputs(ctx: LocalContext) -> DeployerOutputs:
    return DeployerOutputs(kind="local" if _enabled(ctx) else "none")


def registry_outputs(ctx: LocalContext) -> RegistryOutputs:
    """The local-process orchestrator needs no registry; the containers work adds one."""
    return RegistryOutputs(kind="none")
