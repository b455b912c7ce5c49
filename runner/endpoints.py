"""The local deployer's own records: names, per-name locks, process identities, fronts.

The deployer's folder (0700) is the only source of the processes it may signal: one record
file per endpoint process (``ID.json``: pid + create time, written right after the spawn) and
per front (``front-NAME.json``). A deployment record in the metadata server is a pointer
only: anyone holding the token can write its ``details``, so a pid found there is never
signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.metadata import TOKEN_ENV
from stacks.common.process import (
    Daemon,
    DaemonFailed,
    free_port,
    is_alive,
    port_in_use,
    spawn,
    stop,
    wait_healthy,
)

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)


class BadName(RunnerError):
    """A deployment name that is not DNS-like (it becomes part of file names and URLs)."""


def check_name(name: str) -> str:
    """``name`` when it is DNS-like (lowercase letters, digits, '-', at most 63), else BadName."""
    if not _NAME.match(name):
        raise BadName(
            f"deployment name {name!r} is not allowed",
            "use lowercase letters, digits and '-' (at most 63, starting and ending with a"
            " letter or digit)",
        )
    return name


def default_name(model_name: str) -> str:
    """A deployment name made from a registered model's name (``Diabetes_Ridge`` ->
    ``diabetes-ridge``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")[:63].strip("-")
    return slug or "model"


def private_folder(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing, 0600 either way (logs are appended to it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


@contextlib.contextmanager
def name_lock(folder: Path, name: str) -> Iterator[None]:
    """Hold the lock of deployment ``name``: deploys, replaces and undeploys of one name
    run one at a time, across the deployer's threads and the CLI's processes."""
    locks = private_folder(folder / ".locks")
    fd = os.open(locks / f"{check_name(name)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_record(path: Path, data: dict[str, Any]) -> None:
    """Write a process record atomically, 0600."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    tmp.replace(path)


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stop_recorded(path: Path) -> bool:
    """Stop the process a record file names (pid + create time must both be there and match
    a live process, else nothing is signalled) and delete the record. True if it ran."""
    data = read_record(path)
    ran = False
    if data is not None:
        pid, created = data.get("pid"), data.get("create_time")
        if isinstance(pid, int) and isinstance(created, int | float) and pid > 0:
            ran = is_alive(pid, float(created))
            stop(pid, float(created))  # with a create time: only that process and its group
    path.unlink(missing_ok=True)
    return ran


def endpoint_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a model endpoint: the deployer's, without the metadata token."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env.update(extra)
    return env


def front_paths(folder: Path, name: str) -> tuple[Path, Path]:
    """The record and the backend-port file of the front of ``name``."""
    return folder / f"front-{name}.json", folder / f"front-{name}.backend"


def front_port(folder: Path, name: str) -> int:
    """The port of ``name``'s URL: its front's, kept across redeploys, or a new free one."""
    data = read_record(front_paths(folder, name)[0])
    port = data.get("port") if data else None
    return port if isinstance(port, int) else free_port()


def ensure_front(folder: Path, name: str, port: int, backend: int, timeout: float = 30) -> None:
    """Point ``name``'s front at ``backend``, starting the front on ``port`` if it is down."""
    from runner.endpoint_front import write_backend

    record, backend_file = front_paths(folder, name)
    write_backend(backend_file, backend)
    data = read_record(record)
    if data and is_alive(data.get("pid"), data.get("create_time")):
        return
    stop_recorded(record)  # whatever is left of a dead front
    if port_in_use(port):
        raise DaemonFailed(f"port {port} of endpoint {name} is taken by another process")
    log = private_file(folder / f"front-{name}.log")
    argv = [
        sys.executable, "-m", "runner.endpoint_front", "--port", str(port),
        "--backend-file", str(backend_file),
    ]  # fmt: skip
    daemon: Daemon = spawn(argv, log=log, cwd=folder, env=endpoint_env({}), inherit_env=False)
    write_record(record, {"name": name, "role": "front", "pid": daemon.pid,
                          "create_time": daemon.create_time, "port": port})  # fmt: skip
    wait_healthy(f"front of endpoint {name}", daemon, f"http://127.0.0.1:{port}/ping", log, timeout)


def stop_front(folder: Path, name: str) -> None:
    """Stop ``name``'s front and forget its port."""
    record, backend_file = front_paths(folder, name)
    stop_recorded(record)
    backend_file.unlink(missing_ok=True)
