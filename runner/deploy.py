"""The local model deployer: a registered model version served as an HTTP endpoint.

Each endpoint is ``mlflow models serve --env-manager local``, supervised like the stack's own
services (own session, pid + start time, port, log) and recorded twice: as a deployment in the
metadata server, and as a small record file in the deployer's folder, which is what
``mlstack down`` reads to stop every endpoint before the stack's services.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import RunnerError
from stacks.common.process import DaemonFailed, free_port, spawn, stop, wait_healthy
from stacks.outputs import LocalDeployerOutputs, MlflowTrackerOutputs, StackOutputs

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from runner.metadata.schemas import DeploymentOut

LIVE = ("starting", "running")


class DeployError(RunnerError):
    """A model could not be deployed or undeployed."""


@dataclass(frozen=True)
class Deployment:
    id: str
    name: str
    model_name: str
    version: str
    endpoint_url: str

    @property
    def invocations_url(self) -> str:
        return f"{self.endpoint_url}/invocations"


def deploy_local(
    outputs: StackOutputs,
    *,
    model_name: str,
    version: str,
    name: str,
    run_id: str | None = None,
) -> Deployment:
    """Hand a registered model version to the local deployer service; returns the endpoint."""
    from runner.deployer_server import request_deployment

    deployer = outputs.deployer
    assert isinstance(deployer, LocalDeployerOutputs)
    if not isinstance(outputs.tracker, MlflowTrackerOutputs):
        raise DeployError("the local deployer serves models from MLflow; the stack has none")
    token = outputs.metadata.token
    data = request_deployment(
        deployer.url,
        token.get_secret_value() if token else "",
        {
            "model_name": model_name,
            "version": version,
            "name": name,
            "run_id": run_id,
            "tracker_uri": outputs.tracker.uri,
            "metadata_url": outputs.metadata.url,
        },
    )
    return Deployment(
        data["id"], data["name"], data["model_name"], data["version"], data["endpoint_url"]
    )


def serve_model(
    *,
    stack: str,
    workdir: str,
    tracker_uri: str,
    client: MetadataClient,
    model_name: str,
    version: str,
    name: str,
    run_id: str | None = None,
    timeout: float = 180.0,
) -> Deployment:
    """Start ``models:/model_name/version`` as a host daemon (run inside the deployer service).

    Replaces a live deployment of the same name.
    """
    folder = Path(workdir)
    for old in client.list_deployments(stack=stack):
        if old.name == name and old.status in LIVE:
            undeploy(workdir, client, old)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / f"{name}-{port}.log"
    argv = [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/{model_name}/{version}", "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    # mlflow starts `uvicorn` by name: the interpreter's bin folder must be on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {"MLFLOW_TRACKING_URI": tracker_uri, "PATH": path}
    daemon = spawn(argv, log=log, cwd=folder, env=env)
    details = {"pid": daemon.pid, "create_time": daemon.create_time, "port": port, "log": str(log)}
    record = client.create_deployment(
        name=name,
        stack=stack,
        model_name=model_name,
        model_version=version,
        endpoint_url=url,
        run_id=run_id,
        details=details,
    )
    marker = folder / f"{record.id}.json"
    marker.write_text(json.dumps({"name": name, **details}))
    try:
        wait_healthy(f"endpoint {name}", daemon, f"{url}/ping", log, timeout)
    except DaemonFailed as exc:
        client.update_deployment(record.id, status="failed")
        marker.unlink(missing_ok=True)
        raise DeployError(exc.headline, exc.hint) from None
    client.update_deployment(record.id, status="running")
    return Deployment(record.id, name, model_name, version, url)


def find(client: MetadataClient, stack: str, ref: str) -> DeploymentOut:
    """A deployment by id, id prefix or name (the newest live one for a name)."""
    deployments = client.list_deployments(stack=stack)
    by_id = [d for d in deployments if d.id == ref or d.id.startswith(ref)]
    by_name = [d for d in deployments if d.name == ref and d.status in LIVE]
    found = by_id or by_name
    if not found:
        raise DeployError(f"no deployment {ref!r} on stack {stack}", "see `mlstack deployments`")
    return found[0]


def undeploy(workdir: str | None, client: MetadataClient, deployment: DeploymentOut) -> None:
    """Stop the endpoint's process and mark the deployment stopped."""
    details = deployment.details or {}
    stop(details.get("pid"), details.get("create_time"))
    client.update_deployment(deployment.id, status="stopped")
    if workdir:
        (Path(workdir) / f"{deployment.id}.json").unlink(missing_ok=True)
