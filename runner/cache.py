"""Step cache keys: code, parameters, input content hashes and declared dependencies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runner.sdk import Invocation

CACHE_VERSION = "1"


def dependency_fingerprint(dep: str) -> str:
    """``pkg:NAME`` -> its installed version; an existing file -> its content hash."""
    if dep.startswith("pkg:"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"{dep}=={version(dep[4:])}"
        except PackageNotFoundError:
            return f"{dep}==missing"
    path = Path(dep)
    if path.is_file():
        return f"file:{dep}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return dep


def cache_key(inv: Invocation, input_hashes: dict[str, str]) -> str:
    """The key two executions share exactly when they would compute the same outputs."""
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "step": inv.step.name,
            "source": inv.step.source(),
            "params": inv.params,
            "inputs": dict(sorted(input_hashes.items())),
            "deps": [dependency_fingerprint(d) for d in inv.step.cache_deps],
            "outputs": list(inv.step.outputs),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
