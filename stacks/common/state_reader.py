"""Read-only access to a stack's outputs in ``$MLSTACK_HOME/state.json``.

The provisioner owns the state file (a TinyDB document: ``{"stacks": {id: record}}``); the
runner's Python API (``runner.run(pipeline, stack="name")``) only needs the outputs of a
stack that is up (the runner resolves the metadata token through its secrets registry). This
reader gives it exactly that without importing the provisioner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.common.home import mlstack_home
from stacks.outputs import StackOutputs, load_outputs


class StackNotFound(Exception):
    """No stack of that name is up under this ``$MLSTACK_HOME``; says which are."""


def state_file() -> Path:
    return mlstack_home() / "state.json"


def live_stacks() -> dict[str, dict[str, Any]]:
    """Name -> record of every stack not destroyed (an absent state file: none)."""
    path = state_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise StackNotFound(f"state file {path} is not valid JSON ({exc})") from None
    records = (data.get("stacks") or {}).values()
    return {r["name"]: r for r in records if r.get("status") != "destroyed" and r.get("outputs")}


def read_outputs(name: str | None) -> StackOutputs:
    """The outputs of stack ``name`` (or of the only one up), as recorded (no token)."""
    live = live_stacks()
    if name is None:
        if len(live) != 1:
            up = ", ".join(sorted(live)) or "none"
            raise StackNotFound(f"choose a stack with stack=NAME (stacks up: {up})")
        name = next(iter(live))
    record = live.get(name)
    if record is None:
        up = ", ".join(sorted(live)) or "none"
        raise StackNotFound(f"stack {name!r} is not up under {state_file().parent} (up: {up})")
    return load_outputs(record["outputs"])
