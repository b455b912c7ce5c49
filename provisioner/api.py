"""The provisioner as a library: ``plan``, ``up``, ``down``, ``status``, ``outputs``, secrets.

The CLI is a thin layer over these functions; they work from Python without click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.engines import get_engine
from provisioner.errors import SecretsError, UsageError
from provisioner.progress import Progress
from provisioner.spec import StackSpec
from provisioner.state import StackRecord, StateRegistry

if TYPE_CHECKING:
    from provisioner.engines.base import DownResult, PlanResult, ServiceStatus, UpResult
    from stacks.local.secrets import FernetStore
    from stacks.outputs import StackOutputs


def plan(spec: StackSpec, registry: StateRegistry | None = None) -> PlanResult:
    """What ``up`` would start, stop or change for ``spec``."""
    registry = registry or StateRegistry()
    return get_engine(spec.provider.value, registry).plan(spec)


def up(
    spec: StackSpec,
    registry: StateRegistry | None = None,
    progress: Progress | None = None,
    spec_path: str | None = None,
) -> UpResult:
    """Converge the stack to ``spec``; idempotent."""
    registry = registry or StateRegistry()
    return get_engine(spec.provider.value, registry, progress).up(spec, spec_path=spec_path)


def record(name: str, registry: StateRegistry | None = None) -> StackRecord:
    """The state record of stack ``name``; UsageError when there is none."""
    found = (registry or StateRegistry()).get(name)
    if found is None:
        raise UsageError(f"no stack named {name!r}", "see `mlstack status` for known stacks")
    return found


def down(
    name: str, registry: StateRegistry | None = None, progress: Progress | None = None
) -> DownResult:
    """Stop and remove everything of stack ``name``."""
    registry = registry or StateRegistry()
    rec = record(name, registry)
    return get_engine(rec.provider, registry, progress).down(name)


def status(rec: StackRecord, registry: StateRegistry | None = None) -> list[ServiceStatus]:
    """Live status of every service of a stack (pids and health endpoints checked now)."""
    if rec.status == "destroyed":
        return []
    return get_engine(rec.provider, registry or StateRegistry()).status(rec)


def _live(name: str, registry: StateRegistry | None) -> StackRecord:
    rec = record(name, registry)
    if rec.status == "destroyed" or rec.outputs is None:
        raise UsageError(f"stack {name!r} is not up", f"run `mlstack up` for {name!r} first")
    return rec


def outputs(
    name: str, registry: StateRegistry | None = None, resolve_secrets: bool = False
) -> StackOutputs:
    """The stack's outputs; with ``resolve_secrets`` the metadata token is filled in."""
    from stacks.outputs import StackOutputs

    out = StackOutputs.model_validate(_live(name, registry).outputs)
    if resolve_secrets:
        token = secret_store(name, registry).get(out.metadata.token_secret)
        if token is None:
            raise SecretsError(
                f"the metadata token of stack {name!r} is missing from its secrets backend",
                f"run `mlstack up` for {name!r} to restore it",
            )
        out = out.with_token(token)
    return out


def secret_store(name: str, registry: StateRegistry | None = None) -> FernetStore:
    """The secrets backend of stack ``name`` (local stacks: the encrypted file store)."""
    from stacks.local.secrets import FernetStore

    rec = _live(name, registry)
    assert rec.outputs is not None
    coords: dict[str, Any] = rec.outputs["secrets"]
    if coords["kind"] != "local":
        raise UsageError(f"secrets backend {coords['kind']} is not reachable from this machine")
    store = FernetStore(coords["path"], coords["key_file"])
    if not store.exists():
        raise SecretsError(
            f"the secrets backend of stack {name!r} is missing ({store.path})",
            f"run `mlstack up` for {name!r} to recreate it",
        )
    return store
