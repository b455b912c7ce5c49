"""Supervised local daemons: start in their own process group, check, stop (shared).

Used by the local engine for the stack's services and by the runner for model endpoints.

A daemon is identified by pid *and* process start time, so a pid reused after a crash or a
reboot is never mistaken for the service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from stacks.common.errors import MlstackError


class DaemonFailed(MlstackError):
    """A daemon exited during start-up or never became healthy; ``headline`` has its log tail."""


@dataclass(frozen=True)
class Daemon:
    """A running process: pid plus its start time (psutil ``create_time``)."""

    pid: int
    create_time: float


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(path: str | Path | None, lines: int = 15) -> str:
    """The last lines of a log file, or '' when there is none."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
) -> Daemon:
    """Start ``argv`` as a daemon in a new session, output appended to ``log``.

    ``env`` is added to this process's environment, or is the whole environment when
    ``inherit_env`` is false (so a variable of ours, a token, can be kept from the child).
    """
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    full_env = dict(os.environ) if inherit_env else {}
    full_env.update(env or {})
    # Private to the user: the log, and whatever the daemon creates (databases, artifacts).
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
            umask=0o077,
        )
    # The daemon outlives this Popen object; keep Python from warning that it is running.
    proc.returncode = 0
    return Daemon(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time())


def is_alive(pid: int | None, create_time: float | None) -> bool:
    """True when ``pid`` runs and is the same process that was started (not a reused pid)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(name: str, daemon: Daemon, health_url: str, log: Path, timeout: float) -> float:
    """Poll ``health_url`` until it answers; return seconds taken or raise DaemonFailed."""
    start = time.monotonic()
    delay = 0.05
    while True:
        if http_ok(health_url, timeout=1.0):
            return time.monotonic() - start
        if not is_alive(daemon.pid, daemon.create_time):
            _reap(daemon.pid)
            raise DaemonFailed(
                f"{name} exited during start-up; last log lines:\n{log_tail(log)}",
                f"full log: {log}",
            )
        if time.monotonic() - start > timeout:
            stop(daemon.pid, daemon.create_time)
            raise DaemonFailed(
                f"{name} did not become healthy within {timeout:.0f}s; last log lines:\n"
                f"{log_tail(log)}",
                f"full log: {log}",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def orphans(pid: int, create_time: float | None) -> list[int]:
    """Live processes left in the process group of a daemon whose leader ``pid`` is gone.

    A daemon killed with SIGKILL leaves its children running (MLflow's uvicorn worker, for
    one). They are the members of group ``pid`` started no earlier than the leader, so a
    group id reused after a reboot is not mistaken for the daemon's.
    """
    found = []
    for proc in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            if os.getpgid(proc.pid) != pid or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        if create_time is None or proc.info["create_time"] >= create_time - 0.05:
            found.append(proc.pid)
    return found


def stop(pid: int | None, create_time: float | None, grace: float = 5.0) -> None:
    """Stop a daemon's whole process group: SIGTERM, then SIGKILL after ``grace`` seconds.

    When the leader already died, whatever it left in its group is stopped the same way.
    """
    if not pid:
        return
    if not is_alive(pid, create_time):
        _reap(pid)
        left = orphans(pid, create_time)
        _signal_each(left, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in left if _running(p)]
        _signal_each(left, signal.SIGKILL)
        return
    group = [pid]
    with contextlib.suppress(psutil.Error):
        group += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not any(_running(p) for p in group):
            return
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    _signal_each(group, signal.SIGKILL)
    _reap(pid)


def _signal_each(pids: list[int], sig: int) -> None:
    for member in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, sig)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
