"""Pulumi engine events -> progress lines, and Automation API errors -> one MlstackError.

This is the one place where the pulumi engine translates foreign errors: a failed update
becomes an :class:`EngineError` carrying the failing resource's own diagnostic, a lock held by
another (or a crashed) update points at ``mlstack recover``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stacks.common.errors import EngineError, MlstackError
from stacks.common.progress import NullProgress, Progress

# Types that are bookkeeping, not cloud resources: never shown as progress rows.
_HIDDEN = ("pulumi:pulumi:Stack", "pulumi:providers:", "mlstack:")
_CHANGING = {"create", "update", "replace", "create-replacement", "import", "import-replacement"}
_DELETING = {"delete", "delete-replaced", "discard", "discard-replaced"}
_PAST = {
    "create": "created",
    "update": "updated",
    "replace": "replaced",
    "create-replacement": "replaced",
    "import": "imported",
    "delete": "deleted",
    "delete-replaced": "deleted",
    "refresh": "refreshed",
}
_NOISE = re.compile(r"^(?:error:\s*)?(?:\S+\.go:\d+:\s*)?(?:sdk\.helper_schema:\s*)?", re.I)


def resource_name(urn: str) -> str:
    """The logical name at the end of a URN (``...::aws:s3/bucket:Bucket::bucket`` -> bucket)."""
    return urn.rsplit("::", 1)[-1] if urn else ""


def clean_diagnostic(message: str) -> str:
    """One readable line from a provider diagnostic (Go file prefixes and blank lines dropped)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    text = " ".join(_NOISE.sub("", ln) for ln in lines)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes, should any slip through
    return text if len(text) <= 400 else text[:397] + "..."


@dataclass
class EventRecorder:
    """``on_event`` callback: forwards each resource step to progress and keeps the story.

    ``ops`` maps resource name -> the last operation on it; ``errors`` maps resource name ->
    its error diagnostics (``""`` for errors not tied to one resource).
    """

    progress: Progress = field(default_factory=NullProgress)
    ops: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    _started: dict[str, float] = field(default_factory=dict)

    def __call__(self, event: Any) -> None:
        try:
            self._handle(event)
        except Exception:  # a display problem must never break the update itself
            return

    def _handle(self, event: Any) -> None:
        if event.diagnostic_event is not None:
            self._diagnostic(event.diagnostic_event)
            return
        for kind in ("resource_pre_event", "res_outputs_event", "res_op_failed_event"):
            step = getattr(event, kind)
            if step is None or getattr(step, "planning", False):
                continue
            meta = step.metadata
            if meta.type.startswith(_HIDDEN):
                return
            op = meta.op.value if hasattr(meta.op, "value") else str(meta.op)
            self._step(kind, resource_name(meta.urn), op, meta, float(event.timestamp or 0))

    def _step(self, kind: str, name: str, op: str, meta: Any, at: float) -> None:
        short = meta.type.rsplit(":", 1)[-1]
        if kind == "resource_pre_event":
            self._started[name] = at
            if op == "same":
                self.ops.setdefault(name, op)
                self.progress.update(name, "unchanged", short)
            elif op in _DELETING:
                self.ops[name] = op
                self.progress.update(name, "stopping", f"{op} {short}")
            else:
                self.ops[name] = op
                self.progress.update(name, "starting", f"{op} {short}")
            return
        if kind == "res_op_failed_event":
            self.ops[name] = "failed"
            self.progress.update(name, "failed", self.error_for(name) or f"{op} failed")
            return
        if op == "same":
            return
        took = at - self._started.get(name, at)
        detail = f"{_PAST.get(op, op)} {short}" + (f" in {took:.0f}s" if took >= 1 else "")
        if op == "refresh" and meta.diffs:
            self.drifted.append(name)
            detail = f"drifted: {', '.join(meta.diffs)}"
        if op in _DELETING:
            self.progress.update(name, "stopped", detail)
        else:
            self.progress.update(name, "ready" if op != "refresh" else "unchanged", detail)

    def _diagnostic(self, diag: Any) -> None:
        if diag.severity != "error":
            return
        urn = diag.urn or ""
        name = "" if not urn or "pulumi:pulumi:Stack" in urn else resource_name(urn)
        text = clean_diagnostic(diag.message)
        if text:
            self.errors.setdefault(name, []).append(text)

    def error_for(self, name: str) -> str:
        found = self.errors.get(name)
        return found[0] if found else ""

    def first_error(self) -> tuple[str, str] | None:
        """(resource, diagnostic) of the first resource that failed, else a general error."""
        for name, messages in self.errors.items():
            if name and messages:
                return name, messages[0]
        general = [m for m in self.errors.get("", []) if "update failed" not in m.lower()]
        return ("", general[0]) if general else None

    @property
    def changed(self) -> list[str]:
        return [n for n, op in self.ops.items() if op not in ("same", "failed")]

    @property
    def unchanged(self) -> list[str]:
        return [n for n, op in self.ops.items() if op == "same"]

    @property
    def deleted(self) -> list[str]:
        return [n for n, op in self.ops.items() if op in _DELETING]


def _stderr_error(exc: BaseException) -> str:
    """The last ``error:`` line of a CommandError's captured output, cleaned."""
    lines = [ln.strip() for ln in str(exc).splitlines() if "error:" in ln]
    return clean_diagnostic(lines[-1]) if lines else ""


# Failures with a known cause and what to do (matched in the lowercased headline).
KNOWN_CAUSES = (
    (
        "service linked role",
        "the account's first use of ECS/Batch: AWS is still creating its service-linked role"
        " (a minute or two); run `mlstack up` again (it resumes), or create it once with"
        " `aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com`",
    ),
    (
        "building the metadata server's image failed",
        "see the reason above; or set components.metadata.image to an image you pushed",
    ),
)


def translate(
    exc: BaseException, recorder: EventRecorder | None, name: str, verb: str, log: str = ""
) -> MlstackError:
    """Map an Automation API exception to the one error the CLI prints."""
    from pulumi.automation import errors

    if isinstance(exc, MlstackError):
        return exc
    see_log = f"; full log: {log}" if log else ""
    if isinstance(exc, errors.ConcurrentUpdateError):
        return EngineError(
            f"stack {name!r} is locked by another Pulumi operation, or by one that crashed",
            f"if no other mlstack command is working on it, run `mlstack recover {name}`",
        )
    if isinstance(exc, errors.StackNotFoundError):
        return EngineError(
            f"the Pulumi stack of {name!r} is not in the state backend",
            "check MLSTACK_PULUMI_BACKEND: it must be the backend that created the stack",
        )
    if isinstance(exc, errors.StackAlreadyExistsError):
        return EngineError(
            f"a Pulumi stack for {name!r} already exists in the state backend",
            f"run `mlstack recover {name}` to adopt it, or `mlstack down {name}` to remove it",
        )
    if isinstance(exc, errors.CommandError):
        failure = recorder.first_error() if recorder else None
        if failure and failure[0]:
            headline = f"{verb} of stack {name!r} failed at {failure[0]}: {failure[1]}"
        else:
            detail = failure[1] if failure else _stderr_error(exc) or "see the log"
            headline = f"{verb} of stack {name!r} failed: {detail}"
        hint = next((h for cause, h in KNOWN_CAUSES if cause in headline.lower()), None)
        return EngineError(
            headline,
            (hint or f"fix the cause and run `mlstack {verb}` again (it resumes)") + see_log,
        )
    return EngineError(f"{verb} of stack {name!r} failed: {type(exc).__name__}: {exc}")
