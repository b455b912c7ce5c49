"""Local model deployer: serves registered models as local HTTP endpoints at run time."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.local.base import LocalContext, ServiceDef
from stacks.local.supervisor import stop
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
        prepare=lambda: workdir(ctx).mkdir(parents=True, exist_ok=True),
    )


def workdir(ctx: LocalContext) -> Path:
    return ctx.path("deployments")


def stop_endpoints(stack_dir: Path) -> list[str]:
    """Stop every model endpoint recorded under a stack's folder (``down`` runs this first)."""
    stopped = []
    for record in sorted((stack_dir / "deployments").glob("*.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        stop(data.get("pid"), data.get("create_time"))
        record.unlink(missing_ok=True)
        stopped.append(f"endpoint {data.get('name', record.stem)}")
    return stopped


def outputs(ctx: LocalContext) -> DeployerOutputs:
    if not _enabled(ctx):
        return DeployerOutputs(kind="none")
    return DeployerOutputs(kind="local", workdir=str(workdir(ctx)))


def registry_outputs(ctx: LocalContext) -> RegistryOutputs:
    """The local-process orchestrator needs no registry; the containers work adds one."""
    return RegistryOutputs(kind="none")
