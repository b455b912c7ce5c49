"""Local model deployer: serves registered models as local HTTP endpoints at run time."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.common.process import is_alive, stop
from stacks.local.base import LocalContext, ServiceDef, digest
from stacks.outputs import DeployerOutputs, LocalDeployerOutputs, NoDeployerOutputs
from stacks.spec.local import LocalDeployer


def _enabled(ctx: LocalContext) -> bool:
    return isinstance(ctx.spec.components.deployer, LocalDeployer)


def service(ctx: LocalContext, token: str) -> ServiceDef | None:
    """A small service that starts one ``mlflow models serve`` endpoint per deployment."""
    if not _enabled(ctx):
        return None
    folder = workdir(ctx)
    return ServiceDef(
        name="deployer",
        component="deployer",
        config={"flavor": "local", "server": "mlflow models serve --env-manager local"},
        argv=lambda port: [
            ctx.python,
            "-m",
            "runner.deployer_server",
            "--stack",
            ctx.spec.name,
            "--workdir",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={"MLSTACK_METADATA_TOKEN": token},
        identity={"token": digest(token)},
        start_timeout=60.0,
        prepare=lambda: folder.mkdir(parents=True, exist_ok=True),
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


def endpoint_pids(stack_dir: Path) -> set[int]:
    """Pids of the live model endpoints (and fronts) recorded under a stack's folder."""
    found = set()
    for record in (stack_dir / "deployments").glob("*.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        pid = data.get("pid") if isinstance(data, dict) else None
        if isinstance(pid, int) and is_alive(pid, data.get("create_time")):
            found.add(pid)
    return found


def outputs(ctx: LocalContext, port: int | None) -> DeployerOutputs:
    if not _enabled(ctx) or port is None:
        return NoDeployerOutputs()
    return LocalDeployerOutputs(url=f"http://127.0.0.1:{port}", workdir=str(workdir(ctx)))
