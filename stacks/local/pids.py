"""What a local stack spawned, found from its folder alone (intent recorded before health).

Every daemon gets a pid file ``pids/NAME.json`` (pid + start time, written atomically) the
moment it is spawned, and carries ``MLSTACK_STACK_ID`` in its environment with its working
directory in the stack's folder. So a command killed at any instant leaves a trail: the next
``up``, ``down`` or ``recover`` finds every process of the stack, whether or not state.json
recorded it (or still exists), and stops what nobody owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import psutil

from stacks.common.process import Daemon, is_alive
from stacks.local.base import STACK_ID_ENV, STACK_ID_FILE

PIDS = "pids"


def write(stack_dir: Path, name: str, daemon: Daemon, **extra: Any) -> Path:
    """Record a just-spawned daemon: ``pids/NAME.json``, atomically (temp + rename)."""
    folder = stack_dir / PIDS
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    data = {"name": name, "pid": daemon.pid, "create_time": daemon.create_time, **extra}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read(stack_dir: Path) -> dict[str, dict[str, Any]]:
    """Every pid file of the stack (unreadable ones skipped): name -> its record."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((stack_dir / PIDS).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("pid"), int):
                found[path.stem] = data
    return found


def forget(stack_dir: Path, name: str) -> None:
    (stack_dir / PIDS / f"{name}.json").unlink(missing_ok=True)


def folder_stack_id(stack_dir: Path) -> str | None:
    try:
        return (stack_dir / STACK_ID_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _inside(path: str, folder: Path) -> bool:
    path = path.removesuffix(" (deleted)")  # a daemon whose folder was removed under it
    return path == str(folder) or path.startswith(str(folder) + os.sep)


def stack_processes(stack_dir: Path, stack_ids: set[str]) -> list[psutil.Process]:
    """Live processes of the stack: a daemon marked with one of ``stack_ids``, or any
    mlstack daemon (it carries the marker variable) working in the stack's folder, or one
    a pid file names. Never this process or its parents."""
    mine = {os.getpid()} | {p.pid for p in psutil.Process().parents()}
    recorded = {
        int(d["pid"]) for d in read(stack_dir).values() if is_alive(d["pid"], d.get("create_time"))
    }
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid in mine or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.pid in recorded:
                found.append(proc)
                continue
            marker = proc.environ().get(STACK_ID_ENV)
            if marker is None:
                continue
            if marker in stack_ids or _inside(proc.cwd(), stack_dir):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _owned(proc: psutil.Process, keep: set[int]) -> bool:
    """True when ``proc`` is a kept daemon, in a kept process group, or below one."""
    try:
        if proc.pid in keep or os.getpgid(proc.pid) in keep:
            return True
        return any(p.pid in keep for p in proc.parents())
    except (psutil.Error, ProcessLookupError):
        return False


def stop_strays(
    stack_dir: Path, stack_ids: set[str], keep: set[int] | None = None, grace: float = 5.0
) -> list[int]:
    """Stop every process of the stack not owned by a ``keep`` pid; the pids stopped.

    SIGTERM (with SIGCONT, so a stopped process can act on it), then SIGKILL after
    ``grace`` seconds.
    """
    keep = keep or set()
    strays = [p for p in stack_processes(stack_dir, stack_ids) if not _owned(p, keep)]
    for proc in strays:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
    _gone, alive = psutil.wait_procs(strays, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=2)
    for name, data in read(stack_dir).items():
        if not is_alive(data["pid"], data.get("create_time")):
            forget(stack_dir, name)
    return [p.pid for p in strays]
