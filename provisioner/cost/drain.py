"""Drain before destroy, local stacks: runtime resources go first, and are checked gone.

What runs create against a local stack: model endpoints (one ``mlflow models serve`` daemon
per deployment, recorded as ``stacks/NAME/deployments/*.json``), step containers and built
images (labelled ``mlstack.stack=NAME`` in the local Docker Engine). ``down`` drains them
before it stops the stack's services (an endpoint depends on the tracker) and fails while
any remain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from provisioner.state import StackRecord
from provisioner.teardown import TeardownItem
from stacks.common.docker_engine import remove_docker_objects
from stacks.common.process import is_alive, stop
from stacks.common.progress import Progress
from stacks.local import pids


def _endpoints(stack_dir: Path) -> list[tuple[Path, dict]]:
    found = []
    for marker in sorted((stack_dir / "deployments").glob("*.json")):
        try:
            found.append((marker, json.loads(marker.read_text())))
        except (OSError, ValueError):
            continue
    return found


def _uses_docker(record: StackRecord) -> bool:
    flavor = record.spec.flavor_of("orchestrator")
    return bool(record.services.get("registry")) or flavor == "docker"


def drain_local(record: StackRecord, stack_dir: Path, progress: Progress) -> list[TeardownItem]:
    """Stop every recorded endpoint (a marker goes only once its process is gone), then
    remove the stack's containers and images.

    An endpoint is one or more backend processes behind a stable front (``role: front``,
    which keeps the URL across redeploys); both kinds of record are stopped, and the
    endpoint is reported once, with every pid it had."""
    drained: list[TeardownItem] = []
    by_name: dict[str, list[tuple[Path, dict]]] = {}
    for marker, data in _endpoints(stack_dir):
        by_name.setdefault(str(data.get("name", marker.stem)), []).append((marker, data))
    for name, records in by_name.items():
        progress.update(f"endpoint {name}", "stopping", "drain")
        records.sort(key=lambda r: r[1].get("role") == "front")  # backends before the front
        pids, alive = [], []
        for marker, data in records:
            stop(data.get("pid"), data.get("create_time"))
            pids.append(f"{data.get('role', 'model')} pid {data.get('pid')}")
            if is_alive(data.get("pid"), data.get("create_time")):
                alive.append(str(data.get("pid")))
            else:
                marker.unlink(missing_ok=True)
        if alive:
            progress.update(f"endpoint {name}", "failed", f"pid {', '.join(alive)} still runs")
            continue
        drained.append(TeardownItem(kind="endpoint", name=name, detail=", ".join(pids)))
        progress.update(f"endpoint {name}", "stopped", "drained")
    if _uses_docker(record):
        for removed in remove_docker_objects(record.name):
            kind, _, name = removed.partition(" ")
            drained.append(TeardownItem(kind=kind, name=name))
            progress.update(removed, "stopped", "drained")
    return drained


def local_leftovers(
    record: StackRecord, stack_dir: Path, after: Literal["drain", "destroy"]
) -> list[TeardownItem]:
    """Live endpoints after the drain; after destroy also live services and the folder."""
    left = [
        TeardownItem(
            kind="endpoint", name=str(data.get("name", m.stem)), detail=f"pid {data.get('pid')}"
        )
        for m, data in _endpoints(stack_dir)
        if is_alive(data.get("pid"), data.get("create_time"))
    ]
    if after == "destroy":
        left += [
            TeardownItem(kind="service", name=svc.name, detail=f"pid {svc.pid}")
            for svc in record.services.values()
            if svc.pid and is_alive(svc.pid, svc.create_time)
        ]
        recorded = {s.pid for s in record.services.values()}
        left += [
            TeardownItem(kind="process", name=str(proc.pid), detail="of the stack, unrecorded")
            for proc in pids.stack_processes(stack_dir, {record.stack_id})
            if proc.pid not in recorded
        ]
        if stack_dir.exists():
            left.append(TeardownItem(kind="folder", name=str(stack_dir)))
    return left
