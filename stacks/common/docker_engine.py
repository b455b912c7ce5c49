"""The one Docker Engine adaptor: build a client from the environment, translate its errors.

The Docker SDK is imported only here and only when called. Every caller (image builds, the
docker orchestrator, ``down`` removing a stack's containers) gets the same one-line error
when no engine is reachable.
"""

from __future__ import annotations

import os
from typing import Any

from stacks.common.errors import MlstackError


class DockerUnavailable(MlstackError):
    """The Docker SDK is missing or no Docker Engine answers at DOCKER_HOST."""


def docker_client(timeout: int | None = None) -> Any:
    """A client of the engine at DOCKER_HOST (``docker.from_env``), checked with a ping."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise DockerUnavailable(
            "the Docker SDK is not installed", "pip install 'mlstack[docker]'"
        ) from None
    try:
        client = docker.from_env(**({"timeout": timeout} if timeout else {}))
        client.ping()
    except (DockerException, OSError) as exc:
        raise unreachable(exc) from None
    return client


def docker_host() -> str:
    """Where the Docker SDK connects: $DOCKER_HOST or the default unix socket."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def unreachable(err: BaseException) -> DockerUnavailable:
    """The one line for an engine that does not answer (or refuses us)."""
    if "Permission denied" in str(err) or isinstance(err, PermissionError):
        return DockerUnavailable(
            f"permission denied on the Docker Engine socket at {docker_host()}",
            "run as root or add your user to the `docker` group",
        )
    return DockerUnavailable(
        f"Docker Engine is not reachable at {docker_host()}: start dockerd",
        "`sudo systemctl start docker` or `sudo dockerd &`, or set DOCKER_HOST to a running engine",
    )


def remove_docker_objects(stack: str) -> list[str]:
    """Remove the stack's step containers and built images from the local Docker Engine.

    Everything mlstack creates in Docker carries the label ``mlstack.stack=<stack>``. Without
    the docker SDK or a reachable engine there is nothing of the stack's to remove there.
    """
    try:
        client = docker_client()
    except DockerUnavailable:
        return []
    from docker.errors import DockerException

    removed: list[str] = []
    label = f"mlstack.stack={stack}"
    for container in client.containers.list(
        all=True, filters={"label": label}, ignore_removed=True
    ):
        try:
            container.remove(force=True)
            removed.append(f"container {container.short_id}")
        except DockerException:
            continue
    for image in client.images.list(filters={"label": label}):
        for tag in image.tags or [image.id]:
            try:
                client.images.remove(tag, force=True)
                removed.append(f"image {tag}")
            except DockerException:
                continue
    return removed
