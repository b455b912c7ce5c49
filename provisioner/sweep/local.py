"""The local half of the sweep: processes, ports, containers and folders of one stack id.

A daemon of a local stack carries ``MLSTACK_STACK_ID=<id>`` in its environment (endpoints
inherit it from the deployer service); the stack's folder holds a ``.stack-id`` file;
containers and images carry the Docker label ``mlstack.stack-id``. Only exact matches count.
"""

from __future__ import annotations

import shutil
from typing import Any

import psutil

from provisioner.state import mlstack_home
from provisioner.sweep.models import FoundResource, SweepResult
from stacks.common.process import stop
from stacks.local.base import STACK_ID_ENV, STACK_ID_FILE

DOCKER_LABEL = "mlstack.stack-id"
LOCAL = "local"


def _processes(stack_id: str) -> list[tuple[FoundResource, psutil.Process]]:
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(STACK_ID_ENV) != stack_id:
                continue
            ports = sorted(
                {c.laddr.port for c in proc.net_connections("inet") if c.status == "LISTEN"}
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        where = f" ports {','.join(map(str, ports))}" if ports else ""
        found.append(
            (
                FoundResource(
                    arn=f"local:process:{proc.pid}",
                    kind="local:process",
                    name=f"{proc.info['name']} pid {proc.pid}{where}",
                    region=LOCAL,
                ),
                proc,
            )
        )
    return found


def _folder(stack_id: str) -> FoundResource | None:
    folder = mlstack_home() / "stacks" / stack_id.rsplit("-", 1)[0]
    marker = folder / STACK_ID_FILE
    try:
        if marker.read_text(encoding="utf-8").strip() != stack_id:
            return None
    except OSError:
        return None
    return FoundResource(
        arn=f"local:folder:{folder}", kind="local:folder", name=str(folder), region=LOCAL
    )


def _docker(stack_id: str) -> tuple[object | None, list[tuple[FoundResource, object]]]:
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return None, []
    try:
        client = docker.from_env()
        client.ping()
    except DockerException:
        return None, []
    label = f"{DOCKER_LABEL}={stack_id}"
    found: list[tuple[FoundResource, object]] = []
    for container in client.containers.list(
        all=True, filters={"label": label}, ignore_removed=True
    ):
        found.append(
            (
                FoundResource(
                    arn=f"local:container:{container.id}",
                    kind="local:container",
                    name=container.name,
                    region=LOCAL,
                ),
                container,
            )
        )
    for image in client.images.list(filters={"label": label}):
        name = (image.tags or [image.id])[0]
        found.append(
            (
                FoundResource(
                    arn=f"local:image:{image.id}", kind="local:image", name=name, region=LOCAL
                ),
                image,
            )
        )
    return client, found


def sweep_local(stack_id: str, *, delete: bool = False) -> SweepResult:
    """Find (and with ``delete``, remove) the local resources of ``stack_id``."""
    processes = _processes(stack_id)
    client, docker_objects = _docker(stack_id)
    folder = _folder(stack_id)
    found = [p for p, _ in processes] + [d for d, _ in docker_objects]
    if folder:
        found.append(folder)
    if delete:
        for res, proc in processes:
            _attempt(res, lambda p=proc: stop(p.pid, p.create_time()))
        docker_client: Any = client
        for res, obj in docker_objects:
            item: Any = obj
            if res.kind == "local:container":
                _attempt(res, lambda o=item: o.remove(force=True))
            else:
                _attempt(res, lambda o=item: docker_client.images.remove(o.id, force=True))
        if folder:
            _attempt(folder, lambda: shutil.rmtree(folder.name))
    return SweepResult(stack_id=stack_id, provider="local", delete=delete, found=found)


def _attempt(res: FoundResource, action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    else:
        res.deleted = True
