"""The local model deployer: a registered model version served as an HTTP endpoint.

Each endpoint is ``mlflow models serve --env-manager local``, supervised like the stack's own
services (own session, pid + start time, port, log) and recorded twice: as a deployment in the
metadata server, and as a small record file in the deployer's folder, which is what
``mlstack down`` reads to stop every endpoint before the stack's services.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.endpoints import (
    check_name,
    endpoint_env,
    ensure_front,
    front_port,
    name_lock,
    private_file,
    private_folder,
    stop_front,
    stop_recorded,
    write_record,
)
from runner.errors import MetadataError, RunnerError
from stacks.common.process import DaemonFailed, free_port, spawn, wait_healthy
from stacks.outputs import LocalDeployerOutputs, MlflowTrackerOutputs, StackOutputs

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from runner.metadata.schemas import DeploymentOut

LIVE = ("starting", "running")


class DeployError(RunnerError):
    """A model could not be deployed or undeployed."""


class DeployConflict(DeployError):
    """The metadata server refused to reserve the name: another live deployment holds it."""


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
    check_name(name)
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

    Replaces a live deployment of the same name, keeping its URL: the new endpoint starts
    beside the old one and the name's front switches to it once it is healthy. Deploys of
    one name run one at a time; the name is reserved in the metadata server before anything
    starts, and what was started is stopped if a later step fails.
    """
    folder = private_folder(Path(workdir))
    with name_lock(folder, check_name(name)):
        live = [d for d in client.list_deployments(stack=stack) if d.name == name]
        live = [d for d in live if d.status in LIVE]
        port = front_port(folder, name)
        url = f"http://127.0.0.1:{port}"
        try:  # reserve the name first: a refusal leaves nothing running
            record = client.create_deployment(
                name=name, stack=stack, model_name=model_name, model_version=version,
                endpoint_url=url, run_id=run_id, replaces=[d.id for d in live],
            )  # fmt: skip
        except MetadataError as exc:
            raise DeployConflict(exc.headline, exc.hint) from None
        marker = folder / f"{record.id}.json"
        try:
            _start_backend(folder, marker, record.id, name, model_name, version, tracker_uri,
                           port, client, timeout)  # fmt: skip
        except BaseException as exc:
            stop_recorded(marker)
            with contextlib.suppress(MetadataError):
                client.update_deployment(record.id, status="failed")
            if isinstance(exc, DaemonFailed):
                raise DeployError(exc.headline, exc.hint) from None
            raise
        client.update_deployment(record.id, status="running")
        for old in live:  # the front already points at the new endpoint
            _stop(folder, client, old)
    return Deployment(record.id, name, model_name, version, url)


def _start_backend(
    folder: Path,
    marker: Path,
    record_id: str,
    name: str,
    model_name: str,
    version: str,
    tracker_uri: str,
    front: int,
    client: MetadataClient,
    timeout: float,
) -> None:
    port = free_port()
    log = private_file(folder / f"{name}-{record_id[:12]}.log")
    argv = [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/{model_name}/{version}", "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    # mlflow starts `uvicorn` by name: the interpreter's bin folder must be on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = endpoint_env({"MLFLOW_TRACKING_URI": tracker_uri, "PATH": path})
    daemon = spawn(argv, log=log, cwd=folder, env=env, inherit_env=False)
    details = {"pid": daemon.pid, "create_time": daemon.create_time, "port": port, "log": str(log)}
    write_record(marker, {"name": name, "role": "model", **details})  # before anything else
    client.update_deployment(record_id, details={**details, "front_port": front})
    wait_healthy(f"endpoint {name}", daemon, f"http://127.0.0.1:{port}/ping", log, timeout)
    ensure_front(folder, name, front, port)


def _stop(folder: Path, client: MetadataClient, deployment: DeploymentOut) -> None:
    stop_recorded(folder / f"{deployment.id}.json")
    client.update_deployment(deployment.id, status="stopped")


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
    """Stop the endpoint's process and mark the deployment stopped.

    Only a process recorded in the deployer's folder (pid + create time) is signalled, never
    a pid from the deployment record itself. The name's front stops with its last endpoint.
    """
    if not workdir:
        client.update_deployment(deployment.id, status="stopped")
        return
    folder = Path(workdir)
    with name_lock(folder, deployment.name):
        _stop(folder, client, deployment)
        others = [d for d in client.list_deployments(stack=deployment.stack)]
        if not any(d.name == deployment.name and d.status in LIVE for d in others):
            stop_front(folder, deployment.name)
