"""What a local component is: a passive resource (a folder, a file) or a supervised daemon."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.spec import LocalStackSpec as StackSpec

# What marks a stack id's local resources: its daemons' environment and its folder.
STACK_ID_ENV = "MLSTACK_STACK_ID"
STACK_ID_FILE = ".stack-id"
# A random id made when the folder is made: a deleted and recreated folder is a new one.
FOLDER_ID_FILE = ".folder-id"


def digest(value: str) -> str:
    """A short one-way digest of a secret input, for a config hash (never the value)."""
    return hashlib.sha256(b"mlstack-identity:" + value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LocalContext:
    """Where one local stack lives on disk, and the interpreter its daemons use."""

    spec: StackSpec
    stack_dir: Path
    python: str = sys.executable

    def path(self, *parts: str) -> Path:
        return self.stack_dir.joinpath(*parts)

    def folder_id(self, create: bool = False) -> str:
        """The identity of the stack's folder ("missing" when it has none and not ``create``)."""
        marker = self.path(FOLDER_ID_FILE)
        with contextlib.suppress(OSError):
            return marker.read_text(encoding="utf-8").strip() or "missing"
        if not create:
            return "missing"
        import secrets

        self.stack_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another writer won: use its id
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_hex(8))
        return marker.read_text(encoding="utf-8").strip()


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
    # Inputs the daemon starts with that are not shown (hashes of the token, the folder id).
    identity: dict[str, str] = field(default_factory=dict)

    @property
    def is_process(self) -> bool:
        return self.argv is not None

    def config_hash(self) -> str:
        """Hash of what, when changed, needs a restart: settings, fixed port, identity."""
        blob = json.dumps(
            {"config": self.config, "port": self.fixed_port, "identity": self.identity},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
