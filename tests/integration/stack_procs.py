"""How tests see a local stack's processes: by psutil, never by a name grep.

A process belongs to stack NAME when its environment carries a ``MLSTACK_STACK_ID`` of that
stack (``NAME-<hex>``), or its working directory or an open file is in the stack's folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import psutil


def _in(path: str, folder: Path) -> bool:
    path = path.removesuffix(" (deleted)")
    return path == str(folder) or path.startswith(str(folder) + os.sep)


def stack_processes(home: Path, name: str) -> list[psutil.Process]:
    """Live processes of stack ``name`` under ``home`` (zombies not counted)."""
    folder = home / "stacks" / name
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            stack_id = proc.environ().get("MLSTACK_STACK_ID", "")
            if stack_id.rsplit("-", 1)[0] == name and stack_id.count("-") >= 1:
                found.append(proc)
                continue
            if _in(proc.cwd(), folder) or any(_in(f.path, folder) for f in proc.open_files()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def listening_ports(procs: list[psutil.Process]) -> set[int]:
    ports = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            ports |= {c.laddr.port for c in proc.net_connections("inet") if c.status == "LISTEN"}
    return ports


def tree(pid: int) -> set[int]:
    """``pid`` and all its descendants (empty when it is gone)."""
    try:
        proc = psutil.Process(pid)
        return {pid} | {c.pid for c in proc.children(recursive=True)}
    except psutil.Error:
        return set()


def recorded_pids(home: Path, name: str) -> dict[str, int]:
    """Service name -> pid as state.json records them (valid JSON asserted)."""
    data = json.loads((home / "state.json").read_text())
    for doc in data.get("stacks", {}).values():
        if doc.get("name") == name:
            return {n: s["pid"] for n, s in doc.get("services", {}).items() if s.get("pid")}
    return {}


def kill_all(home: Path, name: str) -> None:
    """Test cleanup: SIGCONT + SIGKILL whatever of the stack still runs."""
    for proc in stack_processes(home, name):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
    time.sleep(0.1)
