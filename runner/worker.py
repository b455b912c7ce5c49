"""The local orchestrator's warm worker: a process that forks one child per step.

The driver forks the worker once, after importing the pipeline and before it starts any
thread or connection, so the runtime and the user's module are imported exactly once. The
worker lives in its own session (Ctrl-C reaches only the driver), runs each step in a fresh
fork (isolated from the driver and from other steps), and reports exit codes back over a
pipe. When the driver goes away (its end of the pipe closes), the worker kills its
children and exits, so a killed driver leaves no step running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from runner.errors import RunnerError
from stacks.outputs import StackOutputs

if TYPE_CHECKING:
    from runner.sdk import Step

KILL_GRACE_SECONDS = 5.0  # SIGTERM to a killed step's process group, then SIGKILL


@dataclass(frozen=True)
class Finished:
    """A step child that exited: its step id and exit code (negative: killed by signal)."""

    step_id: str
    code: int


class ForkWorker:
    """Driver-side handle of the worker process."""

    def __init__(self, outputs: StackOutputs) -> None:
        cmd_r, cmd_w = os.pipe()
        evt_r, evt_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(cmd_w)
            os.close(evt_r)
            os.setsid()
            _serve(cmd_r, evt_w, outputs)
        os.close(cmd_r)
        os.close(evt_w)
        self.pid = pid
        self._cmd = os.fdopen(cmd_w, "w", buffering=1)
        self._evt = os.fdopen(evt_r, "rb", buffering=0)
        self._pending = b""

    def launch(self, step_id: str, log: Path, result: Path, step: Step | None = None) -> None:
        msg: dict[str, Any] = {"step_id": step_id, "log": str(log), "result": str(result)}
        if step is not None and step.resources.gpus:
            # Locally nothing else limits a step's GPUs; this names the ones it asked for.
            msg["env"] = {"CUDA_VISIBLE_DEVICES": gpu_list(step.resources.gpus)}
        self._send(msg)

    def kill(self, step_id: str) -> None:
        """Stop one running step: its whole process group (SIGTERM, then SIGKILL)."""
        self._send({"kill": step_id})

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self._cmd.write(json.dumps(msg) + "\n")
        except BrokenPipeError:
            raise RunnerError("the step worker exited unexpectedly") from None

    def wait(self, timeout: float | None = None) -> Finished | None:
        """The next step to exit; None when ``timeout`` seconds pass first."""
        while b"\n" not in self._pending:
            if timeout is not None and not select.select([self._evt], [], [], timeout)[0]:
                return None
            chunk = self._evt.read(65536)
            if not chunk:
                raise RunnerError("the step worker exited unexpectedly")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        data = json.loads(line)
        return Finished(step_id=data["step_id"], code=int(data["code"]))

    def close(self, kill: bool = False) -> None:
        """Stop the worker: closing its pipe ends it; ``kill`` also signals its children now."""
        if kill:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
        with contextlib.suppress(OSError):
            self._cmd.close()
        with contextlib.suppress(OSError):
            self._evt.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(cmd_fd: int, evt_fd: int, outputs: StackOutputs) -> NoReturn:
    """The worker loop: read launch requests, fork children, report exits. Never returns."""
    code = 0
    try:
        _loop(cmd_fd, evt_fd, outputs)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def gpu_list(count: int) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a request of ``count`` GPUs: "0,1,...,count-1"."""
    return ",".join(str(i) for i in range(count))


def _kill_group(pid: int, sig: int) -> None:
    """Signal a step's process group (its pid), or just the step if it has none yet."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    except PermissionError:
        pass


def _kill_step(children: dict[int, str], step_id: str, escalate: list[tuple[float, int]]) -> None:
    import time

    for pid, running in list(children.items()):
        if running == step_id:
            _kill_group(pid, signal.SIGTERM)
            escalate.append((time.monotonic() + KILL_GRACE_SECONDS, pid))


def _escalate(escalate: list[tuple[float, int]]) -> None:
    """SIGKILL the groups of killed steps whose grace period is over."""
    import time

    now = time.monotonic()
    for due, pid in list(escalate):
        try:
            os.killpg(pid, signal.SIGKILL if due <= now else 0)
        except (ProcessLookupError, PermissionError):
            escalate.remove((due, pid))  # the whole group is gone: nothing left to kill
            continue
        if due <= now:
            escalate.remove((due, pid))


def _loop(cmd_fd: int, evt_fd: int, outputs: StackOutputs) -> None:
    children: dict[int, str] = {}
    escalate: list[tuple[float, int]] = []  # (when, pgid): killed steps to SIGKILL
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda *_: _terminate(children, escalate))
    buffer = b""
    open_cmd = True
    while open_cmd or children or escalate:  # a killed group may outlive its leader
        _reap(children, evt_fd)
        _escalate(escalate)
        wait = 0.2 if escalate else 1.0
        readable, _, _ = select.select([cmd_fd, wake_r] if open_cmd else [wake_r], [], [], wait)
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        if cmd_fd in readable:
            chunk = os.read(cmd_fd, 65536)
            if not chunk:  # the driver is gone: nobody will read results; stop everything
                open_cmd = False
                _terminate(children, escalate)
                continue
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                if "kill" in request:
                    _kill_step(children, request["kill"], escalate)
                    continue
                pid = os.fork()
                if pid == 0:
                    _child(request, outputs, (cmd_fd, evt_fd, wake_r, wake_w))
                with contextlib.suppress(OSError):  # the child does it too: no race either way
                    os.setpgid(pid, pid)
                children[pid] = request["step_id"]


def _reap(children: dict[int, str], evt_fd: int) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        step_id = children.pop(pid, None)
        if step_id is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(BrokenPipeError):
            os.write(evt_fd, (json.dumps({"step_id": step_id, "code": code}) + "\n").encode())


def _terminate(children: dict[int, str], escalate: list[tuple[float, int]]) -> None:
    """SIGTERM every step's process group; SIGKILL follows after the grace period."""
    import time

    due = time.monotonic() + KILL_GRACE_SECONDS
    for pid in list(children):
        _kill_group(pid, signal.SIGTERM)
        if (due, pid) not in escalate:
            escalate.append((due, pid))


def _child(request: dict[str, Any], outputs: StackOutputs, fds: tuple[int, ...]) -> NoReturn:
    """One step, in a fresh fork of the worker: output appended to its log (the store's file
    on file://, see runner/logs.py), then exit."""
    code = 1
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # its own process group: a timeout kills what it started too
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        for fd in fds:
            os.close(fd)
        log = Path(request["log"])
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        from runner.logs import unbuffered_stdio

        unbuffered_stdio()  # the log is outside this process: a SIGKILL loses nothing printed
        os.environ.update(request.get("env") or {})
        from runner.entrypoint import execute_step

        code = execute_step(request["step_id"], outputs, result_path=Path(request["result"]))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)
