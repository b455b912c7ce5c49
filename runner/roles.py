"""One small lazy registry per runtime role, keyed by the kind in the stack's outputs.

Each entry names ``module:attribute``; the module is imported only when that kind is used,
so a stack without Docker never imports the Docker SDK. An unknown kind is one clear error
listing the known ones. Adding a kind is one line in the role's table.
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from runner.errors import RunnerError

T = TypeVar("T")


class Role(Generic[T]):
    """The implementations of one runtime role (orchestrator, secrets backend, ...)."""

    def __init__(self, role: str, entries: dict[str, str]) -> None:
        self.role = role
        self.entries = dict(entries)

    def kinds(self) -> list[str]:
        return sorted(self.entries)

    def get(self, kind: str) -> type[T]:
        """The implementation class of ``kind``."""
        target = self.entries.get(kind)
        if target is None:
            raise RunnerError(
                f"{self.role} {kind!r} is not supported by this runner",
                f"known {self.role} kinds: {', '.join(self.kinds())}",
            )
        module, _, attribute = target.partition(":")
        found: Any = getattr(importlib.import_module(module), attribute)
        return found
