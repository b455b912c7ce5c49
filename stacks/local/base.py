"""What a local component is: a passive resource (a folder, a file) or a supervised daemon."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.spec import LocalStackSpec as StackSpec

# What marks a stack id's local resources: its daemons' environment and its folder.
STACK_ID_ENV = "MLSTACK_STACK_ID"
STACK_ID_FILE = ".stack-id"


@dataclass(frozen=True)
class LocalContext:
    """Where one local stack lives on disk, and the interpreter its daemons use."""

    spec: StackSpec
    stack_dir: Path
    python: str = sys.executable

    def path(self, *parts: str) -> Path:
        return self.stack_dir.joinpath(*parts)


@dataclass
class ServiceDef:
    """One local service. ``argv`` is None for passive resources (folders, files)."""

    name: str
    component: str
    config: dict[str, Any]
    argv: Callable[[int], list[str]] | None = None
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    fixed_port: int | None = None
    start_timeout: float = 90.0
    prepare: Callable[[], None] | None = None
    check: Callable[[], str | None] | None = None

    @property
    def is_process(self) -> bool:
        return self.argv is not None

    def config_hash(self) -> str:
        """Hash of what, when changed, needs a restart (the fixed port included)."""
        blob = json.dumps({"config": self.config, "port": self.fixed_port}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
