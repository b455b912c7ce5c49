"""Request and response models of the metadata API, shared by the server and the client.

This module imports pydantic only (no FastAPI, no SQLAlchemy) so the client stays light.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


class RunStatus(StrEnum):
    """Lifecycle of a pipeline run."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """Lifecycle of one step of a run; ``cached`` means its outputs were reused."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CACHED = "cached"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class DeploymentStatus(StrEnum):
    """Lifecycle of a model deployment."""

    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


class Direction(StrEnum):
    """Which way an artifact flows through a step."""

    INPUT = "input"
    OUTPUT = "output"


TERMINAL_RUN_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED},
)
TERMINAL_STEP_STATUSES = frozenset(
    {
        StepStatus.COMPLETED,
        StepStatus.FAILED,
        StepStatus.CACHED,
        StepStatus.SKIPPED,
        StepStatus.CANCELLED,
    },
)
LIVE_DEPLOYMENT_STATUSES = frozenset({DeploymentStatus.STARTING, DeploymentStatus.RUNNING})

NameStr = Annotated[str, Field(min_length=1, max_length=255)]
KeyStr = Annotated[str, Field(min_length=1, max_length=255)]
PID_MAX = 2**31 - 1  # pid_t is a signed 32-bit integer
# 0 or a negative pid would signal a whole process group; more than pid_t overflows os.kill.
Pid = Annotated[int, Field(gt=0, le=PID_MAX)]
SQL_INT_MAX = 2**63 - 1  # SQLite INTEGER and PostgreSQL BIGINT
Size = Annotated[int, Field(ge=0, le=SQL_INT_MAX)]
Seconds = Annotated[float, Field(ge=0, le=10**9, allow_inf_nan=False)]
EARLIEST_YEAR, LATEST_YEAR = 1970, 2999
MAX_OFFSET = timedelta(hours=14)  # the widest UTC offset in use (Pacific/Kiritimati)
MAX_JSON_DEPTH = 64
# A driver refreshes its run's heartbeat this often (runner/heartbeat.py); a run whose driver
# is on another host is taken for dead once its heartbeat is STALE_HEARTBEATS intervals old.
HEARTBEAT_SECONDS = 10.0
STALE_HEARTBEATS = 3
HeartbeatSeconds = Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)]


def _sane_time(value: datetime) -> datetime:
    """A timestamp the database, the OS and a human agree on, converted to UTC."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise ValueError("the UTC offset must be within +/-14:00")
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"the year must be within {EARLIEST_YEAR}..{LATEST_YEAR}")
    value = value.replace(tzinfo=UTC) if offset is None else value.astimezone(UTC)
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"the year must be within {EARLIEST_YEAR}..{LATEST_YEAR} in UTC")
    return value


def _not_a_number(value: Any) -> Any:
    if isinstance(value, int | float):
        raise ValueError("a time is an ISO 8601 string, e.g. 2024-05-01T12:00:00Z")
    return value


# An ISO 8601 string (or a datetime); a bare number (3.95e-170) is not taken for a Unix time.
Timestamp = Annotated[datetime, BeforeValidator(_not_a_number), AfterValidator(_sane_time)]


def _finite_json(value: Any, depth: int = 0) -> Any:
    """``value`` unchanged; NaN/Infinity (not JSON) and absurd nesting are refused."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON numbers; send a string or null")
    if isinstance(value, dict):
        for item in value.values():
            _finite_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _finite_json(item, depth + 1)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]


class _In(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422 instead of a silent no-op."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """Response bodies are read from ORM rows on the server and from JSON on the client."""

    model_config = ConfigDict(from_attributes=True)


# --- pipelines ------------------------------------------------------------------------------


class PipelineCreate(_In):
    """``POST /pipelines``: get-or-create a pipeline by name."""

    name: NameStr


class PipelineOut(_Out):
    """A pipeline: a named family of runs."""

    id: str
    name: str
    created_at: datetime


# --- runs -----------------------------------------------------------------------------------


class RunCreate(_In):
    """``POST /runs``: start recording a run (created ``pending``)."""

    pipeline: NameStr
    stack: NameStr
    params: JsonObject = Field(default_factory=dict)
    code_ref: str | None = None
    driver_pid: Pid | None = None
    host: NameStr | None = None  # where the driver runs (runner/heartbeat.py: this_host)
    heartbeat_seconds: HeartbeatSeconds | None = None  # how often its driver will beat


class RunUpdate(_In):
    """``PATCH /runs/{id}``: only the fields sent are changed."""

    status: RunStatus | None = None
    error: str | None = None
    tracker_run_id: str | None = None
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    driver_pid: Pid | None = None
    # Ask the run's driver to cancel (it sees this with its next heartbeat): only true.
    cancel_requested: Literal[True] | None = None


class RunOut(_Out):
    """A run as stored; ``pipeline`` is the pipeline's name."""

    id: str
    pipeline_id: str
    pipeline: str
    stack: str
    status: RunStatus
    params: dict[str, Any]
    code_ref: str | None
    tracker_run_id: str | None
    driver_pid: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    host: str | None = None
    heartbeat_seconds: float | None = None
    heartbeat_at: datetime | None = None
    # Seconds since the last heartbeat (or the run's creation), by the server's clock: no
    # skew between the driver's machine and the one asking.
    heartbeat_age: float | None = None
    cancel_requested_at: datetime | None = None

    @property
    def heartbeat_stale(self) -> bool:
        """Whether the driver missed STALE_HEARTBEATS beats (never, if it does not beat)."""
        if self.heartbeat_seconds is None or self.heartbeat_age is None:
            return False
        return self.heartbeat_age > STALE_HEARTBEATS * self.heartbeat_seconds


class ReapRequest(_In):
    """``POST /runs/reap``: optionally only the runs of one stack."""

    stack: str | None = None


class ReapResult(_Out):
    """Ids of the runs marked failed because their driver process was gone."""

    run_ids: list[str]


# --- steps ----------------------------------------------------------------------------------


class StepCreate(_In):
    """``POST /runs/{id}/steps``: a step's name is unique within its run."""

    name: NameStr
    spec: JsonObject = Field(default_factory=dict)
    cache_key: KeyStr | None = None
    status: StepStatus = StepStatus.PENDING
    log_uri: str | None = None


class StepUpdate(_In):
    """``PATCH /steps/{id}``: only the fields sent are changed."""

    status: StepStatus | None = None
    error: str | None = None
    cache_key: KeyStr | None = None
    log_uri: str | None = None
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None


MAX_BATCH = 1000


class StepBatchUpdate(StepUpdate):
    """One change of a ``POST /steps/batch``: the step's id and the fields to change."""

    id: str = Field(min_length=1, max_length=64)


class StepBatch(_In):
    """``POST /steps/batch``: several step changes in one request and one transaction."""

    updates: list[StepBatchUpdate] = Field(min_length=1, max_length=MAX_BATCH)


class StepOut(_Out):
    """A step of a run; ``spec`` is whatever the runner needs to execute it."""

    id: str
    run_id: str
    name: str
    status: StepStatus
    spec: dict[str, Any]
    cache_key: str | None
    error: str | None
    log_uri: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class RunDetail(RunOut):
    """A run with its steps, in creation order."""

    steps: list[StepOut]


# --- artifacts and lineage ------------------------------------------------------------------


class ArtifactCreate(_In):
    """``POST /artifacts``: with ``producer_step_id`` the output edge is recorded too."""

    uri: str = Field(min_length=1)
    content_hash: NameStr
    size: Size
    name: NameStr
    type_name: NameStr
    materializer: NameStr
    producer_step_id: str | None = None


class ArtifactOut(_Out):
    """A stored artifact; ``name`` is the output name of the step that produced it."""

    id: str
    uri: str
    content_hash: str
    size: int
    name: str
    type_name: str
    materializer: str
    producer_step_id: str | None
    created_at: datetime


class InputCreate(_In):
    """``POST /steps/{id}/inputs``: the step read ``artifact_id`` as its input ``name``."""

    artifact_id: str
    name: NameStr


class LineageEdge(_Out):
    """One edge of a run's lineage graph."""

    step_id: str
    step_name: str
    artifact_id: str
    artifact_uri: str
    direction: Direction
    name: str


class CacheHit(_Out):
    """The newest completed step with a cache key, and its outputs by output name."""

    step: StepOut
    outputs: dict[str, ArtifactOut]


# --- deployments ----------------------------------------------------------------------------


class DeploymentCreate(_In):
    """``POST /deployments``: a name is unique among a stack's live deployments, but for the
    ones listed in ``replaces`` (a redeploy starts beside what it replaces)."""

    name: NameStr
    stack: NameStr
    model_name: NameStr
    model_version: str = Field(min_length=1, max_length=64)
    endpoint_url: str | None = None
    status: DeploymentStatus = DeploymentStatus.STARTING
    run_id: str | None = None
    details: JsonObject = Field(default_factory=dict)
    replaces: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=100
    )


class DeploymentUpdate(_In):
    """``PATCH /deployments/{id}``: ``details`` are merged key by key (null removes a key)."""

    status: DeploymentStatus | None = None
    endpoint_url: str | None = None
    details: JsonObject | None = None


class DeploymentOut(_Out):
    """A model served as a prediction endpoint by a stack's deployer."""

    id: str
    name: str
    stack: str
    model_name: str
    model_version: str
    endpoint_url: str | None
    status: DeploymentStatus
    run_id: str | None
    details: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class HealthOut(BaseModel):
    """``GET /health``."""

    status: str = "ok"


# --- images ---------------------------------------------------------------------------------


class ImageAction(StrEnum):
    """What packaging did for a run: built a new image, reused one, or failed to build."""

    BUILT = "built"
    REUSED = "reused"
    FAILED = "failed"


class ImageCreate(_In):
    """``POST /images``: record one packaging outcome."""

    stack: NameStr
    pipeline: NameStr
    image: str = Field(min_length=1)
    tag: str = Field(min_length=1, max_length=128)
    action: ImageAction
    reason: str = ""
    seconds: Seconds
    details: JsonObject = Field(default_factory=dict)


class ImageOut(_Out):
    """A recorded packaging outcome; ``image`` is the full reference registry/repo:tag."""

    id: str
    stack: str
    pipeline: str
    image: str
    tag: str
    action: ImageAction
    reason: str
    seconds: float
    details: dict[str, Any]
    created_at: datetime


class LoginCode(_Out):
    """A one-time dashboard login code and the path that redeems it (``GET path``)."""

    code: str
    path: str
    expires_in: float


# --- the stack, as the CLI reports it --------------------------------------------------------

Usd = Annotated[float, Field(ge=0, le=10**9, allow_inf_nan=False)]


def _web_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL")
    return value


WebUrl = Annotated[str | None, Field(max_length=2048), AfterValidator(_web_url)]


class ServiceHealth(_In):
    """One service of the stack and its health when the CLI last checked it."""

    name: NameStr
    state: str = Field(min_length=1, max_length=32)
    url: str | None = Field(None, max_length=2048)
    detail: str = Field("", max_length=1000)


class StackReportIn(_In):
    """``PUT /stacks/{stack}``: what ``mlstack status --json`` and ``cost --json`` say of it.

    Sent by ``up``, ``extend`` and ``ui`` (bearer token only), shown by the dashboard.
    """

    provider: Literal["local", "aws", "kubernetes"]
    status: str = Field(min_length=1, max_length=32)
    created_at: Timestamp
    expires_at: Timestamp | None = None
    budget_usd: Usd | None = None
    spend_usd: Usd | None = Field(None, description="estimated spend so far; null if unknown")
    checked_at: Timestamp = Field(description="when health and spend were read")
    tracker_url: WebUrl = Field(None, description="the MLflow UI, for run links")
    services: list[ServiceHealth] = Field(default_factory=list, max_length=100)


class StackReportOut(StackReportIn):
    """A reported stack; ``reported_at`` is when the server received it."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    stack: str
    reported_at: datetime


# --- runtime resources ---------------------------------------------------------------------

# ``service:type`` in lower case, as the sweep names kinds: batch:job-definition, ecr:image.
KIND_PATTERN = r"^[a-z0-9]+:[a-z0-9-]+$"
ResourceKind = Annotated[str, Field(min_length=3, max_length=64, pattern=KIND_PATTERN)]
TagKey = Annotated[str, Field(min_length=1, max_length=128)]
TagMap = Annotated[dict[TagKey, Annotated[str, Field(max_length=256)]], Field(max_length=50)]


class ResourceCreate(_In):
    """``POST /resources``: record a runtime resource; the same (stack, kind, name) again
    updates the record (and brings a deleted one back to life)."""

    stack: NameStr
    kind: ResourceKind
    name: str = Field(min_length=1, max_length=1024)
    arn: str | None = Field(None, min_length=1, max_length=2048)
    region: str | None = Field(None, min_length=1, max_length=64)
    tags: TagMap = Field(default_factory=dict)
    details: JsonObject = Field(default_factory=dict)


class ResourceUpdate(_In):
    """``PATCH /resources/{id}``: mark the resource deleted (``deleted_at``, default now)."""

    deleted: Literal[True] = True
    deleted_at: Timestamp | None = None


class ResourceOut(_Out):
    """A recorded runtime resource; ``deleted_at`` is null while it is live."""

    id: str
    stack: str
    kind: str
    name: str
    arn: str | None
    region: str | None
    tags: dict[str, str]
    details: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
