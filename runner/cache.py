"""Step cache keys: code (and what it reaches), parameters, input hashes, declared deps.

The key is a hash of named components; the components are stored in the step's spec
(``spec["cache"]``) so ``mlstack run-show`` can say which one changed between two runs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import PipelineDefinitionError
from runner.fingerprint import Fingerprinter

if TYPE_CHECKING:
    from runner.sdk import Invocation, Step

CACHE_VERSION = "2"


@dataclass
class CacheKey:
    """A step's cache key with the named components it was built from."""

    key: str
    components: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "components": self.components, "warnings": self.warnings}


def _dep_path(step: Step, dep: str) -> Path:
    """A relative ``cache_deps`` file is relative to the step's module, then to the cwd."""
    path = Path(dep)
    if path.is_absolute():
        return path
    mod_file = getattr(sys.modules.get(step.module), "__file__", None)
    if mod_file and (Path(mod_file).parent / path).exists():
        return Path(mod_file).parent / path
    return path


def check_dependencies(step: Step) -> None:
    """A ``cache_deps`` entry that names no file or no installed package is a definition error."""
    from importlib.metadata import PackageNotFoundError, version

    for dep in step.cache_deps:
        if dep.startswith("pkg:"):
            try:
                version(dep[4:])
            except PackageNotFoundError:
                raise PipelineDefinitionError(
                    f"step {step.name!r}: cache_deps names package {dep[4:]!r}, which is not"
                    " installed",
                    "fix the name (the distribution name, as pip knows it) or install it",
                ) from None
        elif not _dep_path(step, dep).exists():
            raise PipelineDefinitionError(
                f"step {step.name!r}: cache_deps file {dep!r} does not exist",
                "paths are relative to the step's module or the working directory",
            )


def dependency_fingerprint(step: Step, dep: str) -> str:
    """``pkg:NAME`` -> its installed version; a file -> its content; a folder -> its files."""
    if dep.startswith("pkg:"):
        from importlib.metadata import version

        return version(dep[4:])
    path = _dep_path(step, dep)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _sha(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(
    inv: Invocation, input_hashes: dict[str, str], fingerprinter: Fingerprinter | None = None
) -> CacheKey:
    """The key two executions share exactly when they would compute the same outputs."""
    code = (fingerprinter or Fingerprinter()).step(inv.step.func)
    components: dict[str, str] = {"v": CACHE_VERSION, "step": inv.step.name}
    components.update(code.components)
    components["outputs"] = _sha(list(inv.step.outputs))
    for name, value in sorted(inv.params.items()):
        components[f"param:{name}"] = _sha(value)
    for name, digest in sorted(input_hashes.items()):
        components[f"input:{name}"] = digest
    for dep in inv.step.cache_deps:
        components[f"dep:{dep}"] = dependency_fingerprint(inv.step, dep)
    key = hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()
    return CacheKey(key, components, list(code.warnings))


def explain(current: dict[str, Any] | None, previous: dict[str, Any] | None) -> str:
    """Why a step with cache info ``current`` did not match ``previous`` (both spec["cache"])."""
    if not current:
        return "no cache key recorded"
    if not previous:
        return "no earlier run of this step"
    now, before = current.get("components", {}), previous.get("components", {})
    changed = sorted(k for k in now.keys() & before.keys() if now[k] != before[k])
    added = sorted(now.keys() - before.keys())
    removed = sorted(before.keys() - now.keys())
    parts = [f"changed {', '.join(changed)}"] if changed else []
    parts += [f"new {', '.join(added)}"] if added else []
    parts += [f"gone {', '.join(removed)}"] if removed else []
    return (
        "; ".join(parts)
        or "key unchanged, but no reusable result (it failed, or its outputs are gone)"
    )
