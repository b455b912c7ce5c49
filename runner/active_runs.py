"""Runs still active on a stack, and cancelling them: what ``mlstack down`` checks first.

A run is active while the metadata server has it pending or running and its driver is
alive: a driver on this host (the run's recorded host, runner/heartbeat.py) by its process
(recorded at ``create_run``); a driver on another host (a teammate's machine, sharing a
cloud stack) by its heartbeat, fresher than STALE_HEARTBEATS intervals. Cancelling sends a
local driver SIGTERM; a remote one gets a cancel request through the metadata server, which
it sees with its next heartbeat. Either way it stops its steps (processes, containers or
jobs), records them cancelled and exits, as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

from runner.errors import RunnerError

if TYPE_CHECKING:
    import psutil

    from runner.metadata.client import MetadataClient
    from runner.metadata.schemas import RunOut
    from stacks.outputs import StackOutputs

CANCEL_TIMEOUT_SECONDS = 60.0  # then the driver is killed (or, remote, left); `down` goes on
POLL_SECONDS = 0.5


class RunsActive(RunnerError):
    """``down`` was asked to tear down a stack that runs are using."""


def is_remote(run: RunOut) -> bool:
    """Whether the run's driver said it runs on another host than this one."""
    from runner.heartbeat import this_host

    return run.host is not None and run.host != this_host()


def is_active(run: RunOut) -> bool:
    """Unfinished, and its driver alive: its process here, its heartbeat from elsewhere."""
    if run.status not in ("pending", "running"):
        return False
    return not run.heartbeat_stale if is_remote(run) else driver_alive(run)


def driver_alive(run: RunOut) -> bool:
    """Whether the run's driver still runs here (a reused pid started after the run is not)."""
    import psutil

    if not run.driver_pid:
        return False
    try:
        proc = psutil.Process(run.driver_pid)
        started = proc.create_time()
        alive = proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return alive and started <= run.created_at.timestamp() + 1.0


def _client(outputs: StackOutputs) -> MetadataClient:
    from runner.metadata.client import MetadataClient

    token = outputs.metadata.token
    if token is None:
        raise RunnerError("the stack outputs carry no metadata token", "resolve secrets first")
    return MetadataClient(
        outputs.metadata.url, token.get_secret_value(), ca_pem=outputs.metadata.ca_pem
    )


def active_runs(outputs: StackOutputs) -> list[RunOut]:
    """The stack's pending or running runs whose driver is alive, oldest first."""
    with _client(outputs) as client:
        found = [
            run
            for status in ("pending", "running")
            for run in client.list_runs(stack=outputs.stack, status=status, limit=1000)
        ]
    return sorted((r for r in found if is_active(r)), key=lambda r: r.created_at)


def describe(runs: list[RunOut]) -> str:
    """``run 1a2b3c4d5e6f (pipeline train)``, comma-separated; ``on host H`` if remote."""
    return ", ".join(
        f"run {r.id[:12]} ({r.pipeline}{f', on host {r.host}' if is_remote(r) else ''})"
        for r in runs
    )


def cancel_runs(
    outputs: StackOutputs, runs: list[RunOut], timeout: float = CANCEL_TIMEOUT_SECONDS
) -> list[tuple[RunOut, bool]]:
    """Cancel each run and wait until none is active (their steps stopped).

    A local driver gets SIGTERM, and is killed if still there after ``timeout`` seconds. A
    remote driver gets a cancel request; one still active after ``timeout`` is left as it
    is. Returns each run with whether it stopped within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    remote = [run for run in runs if is_remote(run)]
    with _client(outputs) as client:
        for run in remote:
            client.update_run(run.id, cancel_requested=True)
        stopped = _stop_local([run for run in runs if not is_remote(run)], timeout)
        waiting = {run.id for run in remote}
        while waiting:
            waiting = {run_id for run_id in waiting if is_active(client.get_run(run_id))}
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
    stopped |= {run.id for run in remote if run.id not in waiting}
    return [(run, run.id in stopped) for run in runs]


def _stop_local(runs: list[RunOut], timeout: float) -> set[str]:
    """SIGTERM each driver, wait; kill the ones left. The ids of the runs that stopped."""
    import psutil

    drivers: dict[str, psutil.Process] = {}
    for run in runs:
        assert run.driver_pid is not None
        try:
            drivers[run.id] = psutil.Process(run.driver_pid)
            os.kill(run.driver_pid, signal.SIGTERM)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue  # it ended on its own meanwhile
        except PermissionError:
            raise RunnerError(
                f"cannot signal the driver (pid {run.driver_pid}) of run {run.id[:12]}",
                "it belongs to another user: stop it there, or run `mlstack down` as that user",
            ) from None
    left = _wait_exited(list(drivers.values()), timeout)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _wait_exited(left, 10)
    killed = {proc.pid for proc in left}
    return {run.id for run in runs if run.driver_pid not in killed}


def _wait_exited(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process has exited; the ones left after ``timeout`` seconds.

    An exited driver whose parent has not reaped it yet (a zombie) counts as exited:
    ``psutil.wait_procs`` would wait the whole timeout for it.
    """
    from stacks.common.process import is_alive

    def running(proc: psutil.Process) -> bool:  # create_time: psutil's, kept from the start
        return is_alive(proc.pid, proc.create_time())

    deadline = time.monotonic() + timeout
    left = [proc for proc in procs if running(proc)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [proc for proc in left if running(proc)]
    return left
