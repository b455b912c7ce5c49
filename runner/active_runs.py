"""Runs still active on a stack, and cancelling them: what ``mlstack down`` checks first.

A run is active while the metadata server has it pending or running and its driver process
(recorded at ``create_run``) is alive on this host. Cancelling sends the driver SIGTERM: it
stops its steps (processes or containers), records them cancelled and exits, as on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.metadata.schemas import RunOut
    from stacks.outputs import StackOutputs

CANCEL_TIMEOUT_SECONDS = 60.0  # then the driver is killed; `down` removes what it left


class RunsActive(RunnerError):
    """``down`` was asked to tear down a stack that runs are using."""


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


def active_runs(outputs: StackOutputs) -> list[RunOut]:
    """The stack's pending or running runs whose driver is alive, oldest first."""
    from runner.metadata.client import MetadataClient

    token = outputs.metadata.token
    if token is None:
        raise RunnerError("the stack outputs carry no metadata token", "resolve secrets first")
    with MetadataClient(
        outputs.metadata.url, token.get_secret_value(), ca_pem=outputs.metadata.ca_pem
    ) as client:
        found = [
            run
            for status in ("pending", "running")
            for run in client.list_runs(stack=outputs.stack, status=status, limit=1000)
        ]
    return sorted((r for r in found if driver_alive(r)), key=lambda r: r.created_at)


def describe(runs: list[RunOut]) -> str:
    """``run 1a2b3c4d5e6f (pipeline train)``, comma-separated."""
    return ", ".join(f"run {r.id[:12]} ({r.pipeline})" for r in runs)


def cancel_runs(runs: list[RunOut], timeout: float = CANCEL_TIMEOUT_SECONDS) -> list[RunOut]:
    """SIGTERM each run's driver and wait until every one has exited (its steps stopped).

    A driver still there after ``timeout`` seconds is killed; returns the runs cancelled.
    """
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
    _, left = psutil.wait_procs(list(drivers.values()), timeout=timeout)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(left, timeout=10)
    return runs
