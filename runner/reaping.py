"""Finishing what a killed driver left: its run failed, its MLflow run ended, its scratch gone.

A driver killed with SIGKILL cleans nothing up. Its worker stops the steps (their process
groups, SIGKILL after a grace period); the rest is done by the next command that touches
the stack (``run``, ``runs``, ``run-show``, ``status``, ``up``, ``down``), through
:func:`reap`: the metadata server fails the runs whose driver is gone, each one's MLflow
run is ended as FAILED, and every scratch folder whose driver is gone is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from stacks.outputs import StackOutputs

SCRATCH_PREFIX = "mlstack-run-"
OWNER_FILE = ".driver"


def make_scratch() -> Path:
    """A fresh scratch folder for this driver, marked with its pid and start time."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    me = psutil.Process()
    (scratch / OWNER_FILE).write_text(
        json.dumps({"pid": me.pid, "create_time": me.create_time()}), encoding="utf-8"
    )
    return scratch


def _driver_alive(folder: Path) -> bool:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        proc = psutil.Process(int(owner["pid"]))
        return abs(proc.create_time() - float(owner["create_time"])) < 0.05
    except FileNotFoundError:
        return True  # not marked (yet, or not ours): never removed
    except (psutil.Error, OSError, ValueError, KeyError, TypeError):
        return False


def remove_dead_scratch() -> list[Path]:
    """Remove this user's scratch folders whose driver no longer runs; the ones removed."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not _driver_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def reap(outputs: StackOutputs, client: MetadataClient) -> list[str]:
    """Fail the stack's runs whose driver died, end their MLflow runs, drop dead scratch."""
    from runner.tracking import TrackerClient

    reaped = client.reap_runs(outputs.stack)
    for run_id in reaped:
        with contextlib.suppress(RunnerError):  # an unreachable tracker: keep going
            tracker = TrackerClient.for_outputs(outputs)
            tracker.end_run(client.get_run(run_id).tracker_run_id, "failed")
    remove_dead_scratch()
    return reaped
