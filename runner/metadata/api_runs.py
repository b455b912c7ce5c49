"""Endpoints for pipelines, runs and steps, and the reaper of orphaned runs."""

from __future__ import annotations

import os
import sys
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi import status as http
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from runner.metadata.db import SessionDep, commit_or_409, fetch_or_404
from runner.metadata.guard import CONFLICT, NOT_FOUND
from runner.metadata.models import Pipeline, Run, Step, utcnow
from runner.metadata.schemas import (
    PID_MAX,
    TERMINAL_RUN_STATUSES,
    TERMINAL_STEP_STATUSES,
    PipelineCreate,
    PipelineOut,
    ReapRequest,
    ReapResult,
    RunCreate,
    RunDetail,
    RunOut,
    RunStatus,
    RunUpdate,
    StepBatch,
    StepCreate,
    StepOut,
    StepStatus,
    StepUpdate,
)

router = APIRouter()

REAPED_ERROR = "driver process exited"
STALE_ERROR = "driver on {host} stopped sending heartbeats"


def run_out(run: Run) -> RunOut:
    """The response model of a run row (its pipeline is loaded with it)."""
    age = None
    if run.heartbeat_seconds is not None:
        last = run.heartbeat_at or run.created_at
        age = max(0.0, (utcnow() - last.replace(tzinfo=last.tzinfo or UTC)).total_seconds())
    return RunOut.model_validate(
        {**_columns(run), "pipeline": run.pipeline.name, "heartbeat_age": age}
    )


def _columns(row: Any) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def _stamp(fields: dict[str, Any], row: Run | Step, terminal: frozenset[Any]) -> None:
    """Fill ``started_at``/``ended_at`` from a status change unless the caller sent them."""
    new_status = fields.get("status")
    if new_status is None:
        return
    now = utcnow()
    if new_status == "running" and row.started_at is None:
        fields.setdefault("started_at", now)
    if new_status in terminal and row.ended_at is None:
        fields.setdefault("ended_at", now)


def _new_attempt(fields: dict[str, Any], step: Step) -> None:
    """A step entering ``running`` starts an attempt: count it in ``spec["attempt"]``.

    A retry (by the driver, or by an orchestrator such as AWS Batch) runs the same step
    record again: the new attempt starts without the last one's end time and error.
    """
    if fields.get("status") != "running" or step.status == "running":
        return
    step.spec = {**(step.spec or {}), "attempt": int((step.spec or {}).get("attempt", 0)) + 1}
    if step.status in TERMINAL_STEP_STATUSES:
        fields.setdefault("ended_at", None)
        fields.setdefault("error", None)


def _changes(body: RunUpdate | StepUpdate) -> dict[str, Any]:
    """The fields a PATCH sent; an explicit null status means "leave it"."""
    fields = body.model_dump(exclude_unset=True, exclude={"id"})
    if fields.get("status", "") is None:
        del fields["status"]
    if fields.pop("cancel_requested", None):
        fields["cancel_requested_at"] = utcnow()
    return fields


def _apply(row: Any, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        setattr(row, key, value.value if isinstance(value, RunStatus | StepStatus) else value)


def _get_or_create_pipeline(session: Session, name: str) -> Pipeline:
    found = session.scalars(select(Pipeline).where(Pipeline.name == name)).first()
    if found is not None:
        return found
    pipeline = Pipeline(name=name)
    session.add(pipeline)
    try:
        session.commit()
    except IntegrityError:
        # Another request created it between our select and insert.
        session.rollback()
        return session.scalars(select(Pipeline).where(Pipeline.name == name)).one()
    return pipeline


# --- pipelines ------------------------------------------------------------------------------


@router.post("/pipelines", tags=["pipelines"])
def create_pipeline(body: PipelineCreate, session: SessionDep) -> PipelineOut:
    """Get or create the pipeline called ``name``."""
    return PipelineOut.model_validate(_get_or_create_pipeline(session, body.name))


@router.get("/pipelines", tags=["pipelines"])
def list_pipelines(session: SessionDep) -> list[PipelineOut]:
    """All pipelines, by name."""
    rows = session.scalars(select(Pipeline).order_by(Pipeline.name))
    return [PipelineOut.model_validate(row) for row in rows]


# --- runs -----------------------------------------------------------------------------------


@router.post("/runs", status_code=http.HTTP_201_CREATED, tags=["runs"])
def create_run(body: RunCreate, session: SessionDep) -> RunOut:
    """Record a new run (``pending``), creating its pipeline on first use."""
    pipeline = _get_or_create_pipeline(session, body.pipeline)
    run = Run(
        pipeline=pipeline,
        stack=body.stack,
        status=RunStatus.PENDING.value,
        params=body.params,
        code_ref=body.code_ref,
        driver_pid=body.driver_pid,
        host=body.host,
        heartbeat_seconds=body.heartbeat_seconds,
    )
    session.add(run)
    session.commit()
    return run_out(run)


@router.get("/runs", tags=["runs"])
def list_runs(
    session: SessionDep,
    stack: str | None = None,
    pipeline: str | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[RunOut]:
    """Runs, newest first, optionally filtered by stack, pipeline name and status."""
    query = select(Run).join(Run.pipeline)
    if stack is not None:
        query = query.where(Run.stack == stack)
    if pipeline is not None:
        query = query.where(Pipeline.name == pipeline)
    if status is not None:
        query = query.where(Run.status == status.value)
    query = query.order_by(Run.created_at.desc(), Run.id).limit(limit)
    return [run_out(run) for run in session.scalars(query).unique()]


@router.post("/runs/reap", tags=["runs"])
def reap_runs(session: SessionDep, body: ReapRequest | None = None) -> ReapResult:
    """Fail the unfinished runs whose driver is gone: its process, when it ran on this host
    (or did not say where); its heartbeat, missed for STALE_HEARTBEATS intervals, elsewhere."""
    from runner.heartbeat import this_host

    query = select(Run).where(
        Run.status.in_([RunStatus.PENDING.value, RunStatus.RUNNING.value]),
        Run.driver_pid.is_not(None) | Run.heartbeat_seconds.is_not(None),
    )
    if body is not None and body.stack is not None:
        query = query.where(Run.stack == body.stack)
    reaped: list[str] = []
    now = utcnow()
    here = this_host()
    for run in session.scalars(query).unique():
        # Whatever a record holds (written by hand, or before validation), reap never fails.
        if run.host is not None and run.host != here:
            if not run_out(run).heartbeat_stale:
                continue
            error = STALE_ERROR.format(host=run.host)
        elif not isinstance(run.driver_pid, int) or pid_alive(run.driver_pid):
            continue
        else:
            error = REAPED_ERROR
        run.status = RunStatus.FAILED.value
        run.error = error
        run.ended_at = run.ended_at or now
        unfinished = [StepStatus.PENDING.value, StepStatus.RUNNING.value]
        for step in session.scalars(
            select(Step).where(Step.run_id == run.id, Step.status.in_(unfinished))
        ):
            step.status = StepStatus.CANCELLED.value
            step.ended_at = step.ended_at or now
        reaped.append(run.id)
    session.commit()
    return ReapResult(run_ids=reaped)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as exited)."""
    if not 0 < pid <= PID_MAX:
        return False  # os.kill(0 or -n, ...) would address a group; > pid_t cannot exist
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True  # it exists, it just belongs to another user
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                # "pid (comm) S ...": the state letter follows the last ')'.
                state = stat.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            return True
        return state not in (b"Z", b"X")
    return True


@router.get("/runs/{run_id}", tags=["runs"], responses=NOT_FOUND)
def get_run(run_id: str, session: SessionDep) -> RunDetail:
    """A run with its steps."""
    run = fetch_or_404(session, Run, run_id, "run")
    steps = _steps_of(session, run_id)
    return RunDetail.model_validate({**run_out(run).model_dump(), "steps": steps})


@router.post("/runs/{run_id}/heartbeat", tags=["runs"], responses=NOT_FOUND)
def heartbeat(run_id: str, session: SessionDep) -> RunOut:
    """The run's driver is alive: stamp ``heartbeat_at`` (server clock). The answer says
    whether a cancellation was requested (``cancel_requested_at``)."""
    run = fetch_or_404(session, Run, run_id, "run")
    run.heartbeat_at = utcnow()
    session.commit()
    return run_out(run)


@router.patch("/runs/{run_id}", tags=["runs"], responses=NOT_FOUND)
def update_run(run_id: str, body: RunUpdate, session: SessionDep) -> RunOut:
    """Change the fields sent; a status change also stamps started_at/ended_at if unset."""
    run = fetch_or_404(session, Run, run_id, "run")
    fields = _changes(body)
    _stamp(fields, run, TERMINAL_RUN_STATUSES)
    _apply(run, fields)
    session.commit()
    return run_out(run)


# --- steps ----------------------------------------------------------------------------------


def _steps_of(session: Session, run_id: str) -> list[StepOut]:
    rows = session.scalars(
        select(Step).where(Step.run_id == run_id).order_by(Step.created_at, Step.name)
    )
    return [StepOut.model_validate(row) for row in rows]


@router.post(
    "/runs/{run_id}/steps",
    status_code=http.HTTP_201_CREATED,
    tags=["steps"],
    responses={**NOT_FOUND, **CONFLICT},
)
def create_step(run_id: str, body: StepCreate, session: SessionDep) -> StepOut:
    """Record a step of a run; its name must be new within the run."""
    fetch_or_404(session, Run, run_id, "run")
    fields: dict[str, Any] = {"status": body.status}
    step = Step(
        run_id=run_id, name=body.name, spec=body.spec, cache_key=body.cache_key,
        log_uri=body.log_uri,
    )  # fmt: skip
    _stamp(fields, step, TERMINAL_STEP_STATUSES)
    _apply(step, fields)
    session.add(step)
    commit_or_409(session, f"run {run_id!r} already has a step named {body.name!r}")
    return StepOut.model_validate(step)


@router.get("/runs/{run_id}/steps", tags=["steps"], responses=NOT_FOUND)
def list_steps(run_id: str, session: SessionDep) -> list[StepOut]:
    """The steps of a run, in creation order."""
    fetch_or_404(session, Run, run_id, "run")
    return _steps_of(session, run_id)


@router.get("/steps/{step_id}", tags=["steps"], responses=NOT_FOUND)
def get_step(step_id: str, session: SessionDep) -> StepOut:
    """One step."""
    return StepOut.model_validate(fetch_or_404(session, Step, step_id, "step"))


@router.patch("/steps/{step_id}", tags=["steps"], responses=NOT_FOUND)
def update_step(step_id: str, body: StepUpdate, session: SessionDep) -> StepOut:
    """Change the fields sent; a status change also stamps started_at/ended_at if unset."""
    step = fetch_or_404(session, Step, step_id, "step")
    fields = _changes(body)
    _new_attempt(fields, step)
    _stamp(fields, step, TERMINAL_STEP_STATUSES)
    _apply(step, fields)
    session.commit()
    return StepOut.model_validate(step)


@router.post("/steps/batch", tags=["steps"], responses=NOT_FOUND)
def update_steps(body: StepBatch, session: SessionDep) -> list[StepOut]:
    """Apply several step changes at once, in order, all or none (404 names a missing step).

    The runner's status updates in one round trip and one commit: far more per second
    than one PATCH each.
    """
    ids = {update.id for update in body.updates}
    rows = {row.id: row for row in session.scalars(select(Step).where(Step.id.in_(ids)))}
    missing = sorted(ids - rows.keys())
    if missing:
        raise HTTPException(http.HTTP_404_NOT_FOUND, detail=f"step {missing[0]!r} not found")
    for update in body.updates:
        step = rows[update.id]
        fields = _changes(update)
        _new_attempt(fields, step)
        _stamp(fields, step, TERMINAL_STEP_STATUSES)
        _apply(step, fields)
    session.commit()
    return [StepOut.model_validate(rows[update.id]) for update in body.updates]
