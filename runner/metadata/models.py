"""ORM tables of the metadata server (SQLAlchemy 2.x typed declarative)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    """A fresh primary key: a uuid4 as 32 hex characters."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and always timezone-aware when read back.

    SQLite has no timezone type, so values are stored there as naive UTC; PostgreSQL gets a
    ``timestamptz``. A naive value handed in is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every metadata table."""


def _id_column(**kwargs: Any) -> Mapped[str]:
    return mapped_column(String(32), primary_key=True, default=new_id, **kwargs)


class Pipeline(Base):
    """A named family of runs."""

    __tablename__ = "pipelines"

    id: Mapped[str] = _id_column()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    """One execution of a pipeline on a stack."""

    __tablename__ = "runs"

    id: Mapped[str] = _id_column()
    pipeline_id: Mapped[str] = mapped_column(ForeignKey("pipelines.id"), index=True)
    stack: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_ref: Mapped[str | None] = mapped_column(Text)
    tracker_run_id: Mapped[str | None] = mapped_column(String(255))
    driver_pid: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Added after the first release: nullable, so db.add_missing_columns can add them.
    host: Mapped[str | None] = mapped_column(String(255))
    heartbeat_seconds: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    pipeline: Mapped[Pipeline] = relationship(lazy="joined")


class Step(Base):
    """One step of a run; ``spec`` is whatever the runner needs to execute it."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_steps_run_name"),)

    id: Mapped[str] = _id_column()
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cache_key: Mapped[str | None] = mapped_column(String(255), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    log_uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Artifact(Base):
    """A stored step output, addressed by URI and content hash."""

    __tablename__ = "artifacts"

    id: Mapped[str] = _id_column()
    uri: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(255), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    type_name: Mapped[str] = mapped_column(String(255))
    materializer: Mapped[str] = mapped_column(String(255))
    producer_step_id: Mapped[str | None] = mapped_column(ForeignKey("steps.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lineage(Base):
    """An edge between a step and an artifact it read (input) or wrote (output)."""

    __tablename__ = "lineage"
    __table_args__ = (
        UniqueConstraint("step_id", "direction", "name", name="uq_lineage_step_direction_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_id: Mapped[str] = mapped_column(ForeignKey("steps.id"), index=True)
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(255))


class Deployment(Base):
    """A model served as a prediction endpoint; ``details`` holds pid, port, log path..."""

    __tablename__ = "deployments"

    id: Mapped[str] = _id_column()
    name: Mapped[str] = mapped_column(String(255), index=True)
    stack: Mapped[str] = mapped_column(String(255), index=True)
    model_name: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(64))
    endpoint_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Image(Base):
    """One packaging outcome: an image built, reused from the registry, or a failed build."""

    __tablename__ = "images"

    id: Mapped[str] = _id_column()
    stack: Mapped[str] = mapped_column(String(255), index=True)
    pipeline: Mapped[str] = mapped_column(String(255))
    image: Mapped[str] = mapped_column(Text)
    tag: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class StackReport(Base):
    """The stack as the CLI last saw it (``up``, ``extend``, ``ui``): for the dashboard."""

    __tablename__ = "stack_reports"

    stack: Mapped[str] = mapped_column(String(255), primary_key=True)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Resource(Base):
    """Something a run or deploy created in the cloud (a job definition, a pushed image, a
    SageMaker model...), recorded as it is created so ``down`` can drain it by name."""

    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("stack", "kind", "name", name="uq_resources_stack_kind_name"),
    )

    id: Mapped[str] = _id_column()
    stack: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(1024))
    arn: Mapped[str | None] = mapped_column(String(2048))
    region: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
