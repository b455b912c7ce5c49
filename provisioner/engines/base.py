"""The Engine interface and its typed results.

The public methods (``plan``, ``up``, ``down``) are template methods: they take the stack
lock, record state and events, and map errors; engines implement ``_plan``, ``_up``,
``_down`` and ``_status``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, Field

from provisioner.state import StackRecord, StateRegistry
from provisioner.teardown import TeardownItem
from stacks.common.errors import MlstackError, UsageError
from stacks.common.progress import NullProgress, Progress
from stacks.outputs import StackOutputs
from stacks.spec import StackSpec

# update and replace come from a real `pulumi preview` of a live cloud stack.
Action = Literal["create", "start", "restart", "update", "replace", "unchanged", "delete"]


class PlannedChange(BaseModel):
    """One thing ``up`` would do to one service or resource."""

    component: str
    resource: str
    action: Action
    reason: str = ""
    type: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class PlanResult(BaseModel):
    stack: str
    provider: str
    changes: list[PlannedChange]
    # What the plan is (a real preview or the desired resources) and settings worth a warning.
    notes: list[str] = Field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        if not self.has_changes:
            return "no changes: the stack matches the spec"
        return ", ".join(f"{n} to {a}" for a, n in counts.items() if a != "unchanged")


class UpResult(BaseModel):
    stack: str
    changed: list[str]
    unchanged: list[str]
    seconds: float
    outputs: StackOutputs

    def __repr_args__(self) -> Any:  # outputs hide their secrets already; keep repr short
        yield "stack", self.stack
        yield "changed", self.changed


class DownResult(BaseModel):
    stack: str
    stopped: list[str]
    seconds: float
    kept: list[str] = Field(default_factory=list)
    drained: list[TeardownItem] = Field(default_factory=list)
    leftovers: list[TeardownItem] = Field(default_factory=list)


class ServiceStatus(BaseModel):
    name: str
    component: str
    state: Literal["healthy", "unhealthy", "stopped", "ready", "missing"]
    pid: int | None = None
    port: int | None = None
    url: str | None = None
    detail: str = ""


class Engine(ABC):
    """Turns a StackSpec into running infrastructure and back."""

    provider: str = ""

    def __init__(self, registry: StateRegistry, progress: Progress | None = None) -> None:
        self.registry = registry
        self.progress: Progress = progress or NullProgress()

    def plan(self, spec: StackSpec) -> PlanResult:
        record = self.registry.get(spec.name)
        self._check_provider(spec, record)
        return self._plan(spec, record)

    def up(self, spec: StackSpec, spec_path: str | None = None) -> UpResult:
        started = time.monotonic()
        with self.registry.stack_lock(spec.name):
            record = self.registry.get(spec.name)
            self._check_provider(spec, record)
            if record is None or record.status == "destroyed":
                record = self._new_record(spec, record)
            record.status = "creating"
            record.spec, record.spec_hash = spec, spec.spec_hash()
            record.spec_path = spec_path
            ttl = spec.ttl_delta
            expires = record.created_at + ttl if ttl else None
            # `mlstack extend` pushed the expiry out: an up with the same TTL keeps it.
            extended = record.ttl == spec.ttl and record.expires_at and expires
            if not (extended and record.expires_at and expires and record.expires_at > expires):
                record.expires_at = expires
            record.ttl = spec.ttl
            record.log("up", "up started")
            self.registry.save(record)
            try:
                changed, unchanged, outputs = self._up(spec, record)
            except BaseException as exc:
                error = self._failed(record, exc, "up failed")
                if error is exc:
                    raise
                raise error from exc
            record.status = "up"
            record.outputs = outputs
            record.log("up", f"up done: changed {changed or 'nothing'}")
            self.registry.save(record)
        return UpResult(
            stack=spec.name,
            changed=changed,
            unchanged=unchanged,
            seconds=time.monotonic() - started,
            outputs=outputs,
        )

    def down(self, name: str) -> DownResult:
        started = time.monotonic()
        with self.registry.stack_lock(name):
            record = self.registry.get(name)
            if record is None or record.status == "destroyed":
                raise UsageError(f"stack {name!r} is not up", "see `mlstack status`")
            record.status = "destroying"
            record.log("down", "down started")
            self.registry.save(record)
            try:
                drained = self._drain(record)
                self._fail_on_leftovers(record, "drain")
                stopped, kept = self._down(record)
                self._fail_on_leftovers(record, "destroy")
            except BaseException as exc:
                error = self._failed(record, exc, "down failed")
                if error is exc:
                    raise
                raise error from exc
            record.status = "destroyed"
            record.outputs = None
            record.services = {}
            record.expires_at = None
            record.log("down", "destroyed")
            self.registry.save(record)
        return DownResult(
            stack=name,
            stopped=stopped,
            kept=kept,
            drained=drained,
            seconds=time.monotonic() - started,
        )

    def _failed(self, record: StackRecord, exc: BaseException, what: str) -> BaseException:
        """Record a failed up/down; the error to raise (foreign errors translated once).

        Ctrl-C, SystemExit and mlstack's own errors pass through unchanged.
        """
        record.status = "failed"
        record.log("error", f"{what}: {(str(exc) or type(exc).__name__).splitlines()[0][:300]}")
        self.registry.save(record)
        if isinstance(exc, MlstackError) or not isinstance(exc, Exception):
            return exc
        return self._translate(exc)

    def _drain(self, record: StackRecord) -> list[TeardownItem]:
        """Remove runtime resources recorded against the stack (endpoints, jobs, images)."""
        return []

    def _leftovers(
        self, record: StackRecord, after: Literal["drain", "destroy"]
    ) -> list[TeardownItem]:
        """What is still there after the drain (runtime resources) or destroy (anything)."""
        return []

    def _fail_on_leftovers(self, record: StackRecord, after: Literal["drain", "destroy"]) -> None:
        from stacks.common.errors import EngineError

        left = self._leftovers(record, after)
        if left:
            when = "after the drain, before destroy" if after == "drain" else "after destroy"
            raise EngineError(
                f"down of {record.name!r} is not done: {len(left)} left {when}: "
                + ", ".join(str(i) for i in left[:5]),
                f"run `mlstack down {record.name}` again",
            )

    def status(self, record: StackRecord) -> list[ServiceStatus]:
        return self._status(record)

    def _check_provider(self, spec: StackSpec, record: StackRecord | None) -> None:
        if record and record.status != "destroyed" and record.provider != spec.provider.value:
            raise UsageError(
                f"stack {spec.name!r} exists with provider {record.provider}, the spec says"
                f" {spec.provider.value}",
                f"run `mlstack down {spec.name}` first or choose another name",
            )

    def _new_record(self, spec: StackSpec, old: StackRecord | None) -> StackRecord:
        import secrets

        record = StackRecord(
            name=spec.name,
            stack_id=f"{spec.name}-{secrets.token_hex(3)}",
            provider=spec.provider.value,
            status="creating",
            spec=spec,
            spec_hash=spec.spec_hash(),
        )
        if old is not None:
            record.events = old.events
        return record

    def _translate(self, exc: BaseException) -> MlstackError:
        """Map a foreign error to an MlstackError (engines override for their SDKs)."""
        from stacks.common.errors import EngineError

        return EngineError(f"{self.provider} engine failed: {type(exc).__name__}: {exc}")

    @abstractmethod
    def _plan(self, spec: StackSpec, record: StackRecord | None) -> PlanResult: ...

    @abstractmethod
    def _up(
        self, spec: StackSpec, record: StackRecord
    ) -> tuple[list[str], list[str], StackOutputs]: ...

    @abstractmethod
    def _down(self, record: StackRecord) -> tuple[list[str], list[str]]: ...

    @abstractmethod
    def _status(self, record: StackRecord) -> list[ServiceStatus]: ...
