"""Typed results of a sweep and a drain: what carries the stack's tag, what went, what failed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field


class FoundResource(BaseModel):
    """One resource that carries the stack's exact stack-id tag (or label)."""

    arn: str  # an AWS ARN, or for local resources ``local:<kind>:<id>``
    kind: str  # ``s3:bucket``, ``sagemaker:endpoint``, ``local:process`` ...
    name: str
    region: str
    deleted: bool = False
    error: str | None = None  # why deleting it failed (it is still there)


class SweepError(BaseModel):
    arn: str
    kind: str
    message: str


class SweepResult(BaseModel):
    """Everything a sweep found for one stack id; with ``delete``, what it removed."""

    stack_id: str
    provider: Literal["aws", "local"]
    region: str | None = None
    delete: bool = False
    found: list[FoundResource] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deleted(self) -> list[str]:
        return [r.arn for r in self.found if r.deleted]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def errors(self) -> list[SweepError]:
        return [SweepError(arn=r.arn, kind=r.kind, message=r.error) for r in self.found if r.error]

    @property
    def leftovers(self) -> list[FoundResource]:
        """What still exists after this sweep (all of ``found`` on a dry run)."""
        return [r for r in self.found if not r.deleted]

    def summary(self) -> str:
        if not self.found:
            return f"nothing carries stack id {self.stack_id}"
        if not self.delete:
            return f"{len(self.found)} resources carry stack id {self.stack_id} (dry run)"
        return (
            f"{len(self.deleted)} of {len(self.found)} resources of stack {self.stack_id}"
            f" deleted, {len(self.errors)} failed"
        )


class DrainResult(BaseModel):
    """Runtime resources removed before destroy (endpoints, jobs, job definitions, images)."""

    stack_id: str
    region: str | None = None
    drained: list[FoundResource] = Field(default_factory=list)

    @property
    def remaining(self) -> list[FoundResource]:
        return [r for r in self.drained if not r.deleted]

    @property
    def complete(self) -> bool:
        return not self.remaining
