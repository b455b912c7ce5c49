"""Engines by provider: a small explicit registry; implementations import lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stacks.common.errors import UsageError

if TYPE_CHECKING:
    from provisioner.engines.base import Engine
    from provisioner.state import StateRegistry
    from stacks.common.progress import Progress

# provider -> "module:Class"; the module is imported only when that provider is used.
ENGINES: dict[str, str] = {
    "local": "provisioner.engines.local:LocalEngine",
    "aws": "provisioner.engines.pulumi:AwsEngine",
    "kubernetes": "provisioner.engines.pulumi:KubernetesEngine",
}


def get_engine(provider: str, registry: StateRegistry, progress: Progress | None = None) -> Engine:
    """The engine for ``provider``; an unknown or unavailable one errors with the valid names."""
    target = ENGINES.get(provider)
    if target is None:
        raise UsageError(
            f"provider {provider!r} has no engine in this version",
            f"available: {', '.join(sorted(ENGINES))}",
        )
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    engine: Engine = cls(registry, progress)
    return engine
