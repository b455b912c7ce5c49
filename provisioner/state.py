"""The state registry: one TinyDB record per stack under ``$MLSTACK_HOME``.

Writes are atomic (temp file + fsync + rename) and serialised across processes with a file
lock; a corrupted file raises :class:`StateError` and is never overwritten. A separate
non-blocking per-stack lock keeps two commands from changing the same stack at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field, ValidationError, field_serializer, field_validator
from tinydb import Query, TinyDB
from tinydb.storages import Storage

from stacks.common.errors import StackLocked, StateError, writing
from stacks.common.home import mlstack_home
from stacks.outputs import StackOutputs, load_outputs
from stacks.spec import StackSpec
from stacks.spec.stored import load_stored_spec

Status = Literal["creating", "up", "degraded", "failed", "destroying", "destroyed"]
MAX_EVENTS = 200


def now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    at: datetime = Field(default_factory=now)
    kind: str
    message: str


class ServiceRecord(BaseModel):
    """A supervised local process (or a passive resource such as a folder)."""

    name: str
    component: str
    config_hash: str
    port: int | None = None
    health_path: str = "/health"
    pid: int | None = None
    create_time: float | None = None
    log: str | None = None
    started_at: datetime | None = None


class StackRecord(BaseModel):
    """What mlstack knows about one stack. Holds no secret value."""

    name: str
    stack_id: str
    provider: str
    status: Status
    spec: StackSpec
    spec_hash: str
    spec_path: str | None = None
    outputs: StackOutputs | None = None
    services: dict[str, ServiceRecord] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    expires_at: datetime | None = None
    ttl: str | None = None
    events: list[Event] = Field(default_factory=list)

    @field_validator("spec", mode="before")
    @classmethod
    def _spec(cls, value: Any) -> Any:
        return load_stored_spec(value) if isinstance(value, dict) else value

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, value: Any) -> Any:
        return load_outputs(value) if isinstance(value, dict) else value

    @field_serializer("spec")
    def _dump_spec(self, spec: StackSpec) -> dict[str, Any]:
        return spec.redacted()  # passwords in URLs masked

    @field_serializer("outputs")
    def _dump_outputs(self, outputs: StackOutputs | None) -> dict[str, Any] | None:
        return outputs.public() if outputs is not None else None  # no secret value

    def log(self, kind: str, message: str) -> None:
        self.events.append(Event(kind=kind, message=message))
        del self.events[:-MAX_EVENTS]


def recovery_hint(path: Path) -> str:
    """How to repair a corrupted state file without orphaning the local stacks' daemons."""
    move = f"move it aside (mv {path} {path}.bak) to start over"
    folders = sorted(p.name for p in (path.parent / "stacks").glob("*") if p.is_dir())
    if not folders:
        return f"inspect it, or {move}"
    shown = "; ".join(f"mlstack recover {name}" for name in folders[:5])
    more = f" (and {len(folders) - 5} more under {path.parent / 'stacks'})" if folders[5:] else ""
    return (
        f"inspect it, or stop the local stacks' daemons first ({shown}{more}), then {move}"
        " and run `mlstack up SPEC` again"
    )


class AtomicJSONStorage(Storage):
    """TinyDB storage that never leaves a half-written file and refuses corrupt ones."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"state file {self.path} cannot be read: {exc.strerror}") from None
        except UnicodeDecodeError:
            text = "\x00not utf-8"
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            for table in data.values():
                if not isinstance(table, dict) or not all(
                    isinstance(doc, dict) for doc in table.values()
                ):
                    raise ValueError("a table is not an object of records")
        except ValueError as exc:
            raise StateError(
                f"state file {self.path} is corrupted ({str(exc).splitlines()[0]}); it was"
                " left untouched",
                recovery_hint(self.path),
            ) from None
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StateError(
                    f"state file {self.path} cannot be written: {exc.strerror or exc}; the"
                    " previous version is intact"
                ) from None
            raise

    def close(self) -> None:
        pass


class StateRegistry:
    """All stack records; every method is one short locked transaction."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or mlstack_home()
        self.path = self.home / "state.json"
        self._lock = FileLock(str(self.path) + ".lock", timeout=60)

    @contextlib.contextmanager
    def _db(self) -> Iterator[Any]:
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock:
            db = TinyDB(str(self.path), storage=AtomicJSONStorage)
            try:
                yield db.table("stacks")
            finally:
                db.close()

    def _record(self, doc: Any) -> StackRecord:
        try:
            return StackRecord.model_validate(doc)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise StateError(
                f"state file {self.path} is corrupted (a record is invalid at {where!r});"
                " it was left untouched",
                recovery_hint(self.path),
            ) from None

    def get(self, name: str) -> StackRecord | None:
        with self._db() as table:
            doc = table.get(Query().name == name)
        return self._record(doc) if doc else None

    def list(self) -> list[StackRecord]:
        with self._db() as table:
            docs = table.all()
        return sorted((self._record(d) for d in docs), key=lambda r: r.name)

    def save(self, record: StackRecord) -> None:
        record.updated_at = now()
        doc = record.model_dump(mode="json")
        with self._db() as table:
            table.upsert(doc, Query().name == record.name)

    def check_readable(self) -> None:
        """Raise StateError now if the state file is corrupted."""
        with self._db() as table:
            table.all()

    @contextlib.contextmanager
    def stack_lock(self, name: str) -> Iterator[None]:
        """Hold the per-stack change lock; fail at once if another process holds it."""
        locks = self.home / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        owner = locks / f"{name}.owner"
        lock = FileLock(str(locks / f"{name}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = owner.read_text().strip() if owner.exists() else "another process"
            raise StackLocked(
                f"stack {name!r} is locked: another mlstack command ({holder}) is changing it",
                "wait for that command to finish, then run this one again",
            ) from None
        try:
            with writing(owner):
                owner.write_text(f"pid {os.getpid()} since {now():%H:%M:%S}")
            yield
        finally:
            owner.unlink(missing_ok=True)
            lock.release()
