"""Where mlstack keeps its state and caches, read per call (no import-time globals)."""

from __future__ import annotations

import os
from pathlib import Path


def mlstack_home() -> Path:
    """``$MLSTACK_HOME`` or ``~/.mlstack``."""
    return Path(os.environ.get("MLSTACK_HOME") or Path.home() / ".mlstack").expanduser()


def stack_dir(name: str) -> Path:
    """The folder of stack ``name``'s data, logs and pids: ``$MLSTACK_HOME/stacks/NAME``."""
    return mlstack_home() / "stacks" / name
