"""Endpoints for artifacts, lineage edges and the step cache."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi import status as http
from sqlalchemy import select
from sqlalchemy.orm import Session

from runner.metadata.db import SessionDep, commit_or_409, fetch_or_404
from runner.metadata.guard import CONFLICT, NOT_FOUND
from runner.metadata.models import Artifact, Lineage, Run, Step
from runner.metadata.schemas import (
    ArtifactCreate,
    ArtifactOut,
    CacheHit,
    Direction,
    InputCreate,
    LineageEdge,
    StepOut,
    StepStatus,
)

router = APIRouter()


@router.post(
    "/artifacts",
    status_code=http.HTTP_201_CREATED,
    tags=["artifacts"],
    responses={**NOT_FOUND, **CONFLICT},
)
def create_artifact(body: ArtifactCreate, session: SessionDep) -> ArtifactOut:
    """Record an artifact; with ``producer_step_id`` also its output lineage edge."""
    if body.producer_step_id is not None:
        fetch_or_404(session, Step, body.producer_step_id, "step")
    artifact = Artifact(**body.model_dump())
    session.add(artifact)
    if body.producer_step_id is not None:
        session.flush()  # assigns artifact.id for the edge
        session.add(
            Lineage(
                step_id=body.producer_step_id,
                artifact_id=artifact.id,
                direction=Direction.OUTPUT.value,
                name=body.name,
            )
        )
    commit_or_409(session, f"step {body.producer_step_id!r} already has an output {body.name!r}")
    return ArtifactOut.model_validate(artifact)


@router.get("/artifacts", tags=["artifacts"])
def list_artifacts(
    session: SessionDep,
    content_hash: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ArtifactOut]:
    """Artifacts, newest first, optionally only those with a given content hash."""
    query = select(Artifact)
    if content_hash is not None:
        query = query.where(Artifact.content_hash == content_hash)
    query = query.order_by(Artifact.created_at.desc(), Artifact.id).limit(limit)
    return [ArtifactOut.model_validate(row) for row in session.scalars(query)]


@router.get("/artifacts/{artifact_id}", tags=["artifacts"], responses=NOT_FOUND)
def get_artifact(artifact_id: str, session: SessionDep) -> ArtifactOut:
    """One artifact."""
    return ArtifactOut.model_validate(fetch_or_404(session, Artifact, artifact_id, "artifact"))


@router.post(
    "/steps/{step_id}/inputs",
    status_code=http.HTTP_201_CREATED,
    tags=["lineage"],
    responses={**NOT_FOUND, **CONFLICT},
)
def add_input(step_id: str, body: InputCreate, session: SessionDep) -> LineageEdge:
    """Record that a step read an artifact as its input ``name``.

    Idempotent for the same artifact: a retried attempt of the step records its inputs
    again. A different artifact under a recorded name is a 409.
    """
    step = fetch_or_404(session, Step, step_id, "step")
    artifact = fetch_or_404(session, Artifact, body.artifact_id, "artifact")
    if _has_input(session, step_id, body.name, artifact.id):
        return _input_edge(step, artifact, body.name)
    session.add(
        Lineage(
            step_id=step_id,
            artifact_id=artifact.id,
            direction=Direction.INPUT.value,
            name=body.name,
        )
    )
    commit_or_409(session, f"step {step_id!r} already has an input {body.name!r}")
    return _input_edge(step, artifact, body.name)


def _has_input(session: Session, step_id: str, name: str, artifact_id: str) -> bool:
    found = session.scalars(
        select(Lineage.artifact_id).where(
            Lineage.step_id == step_id,
            Lineage.direction == Direction.INPUT.value,
            Lineage.name == name,
        )
    ).first()
    return found == artifact_id


def _input_edge(step: Step, artifact: Artifact, name: str) -> LineageEdge:
    return LineageEdge(
        step_id=step.id,
        step_name=step.name,
        artifact_id=artifact.id,
        artifact_uri=artifact.uri,
        direction=Direction.INPUT,
        name=name,
    )


@router.get("/runs/{run_id}/lineage", tags=["lineage"], responses=NOT_FOUND)
def run_lineage(run_id: str, session: SessionDep) -> list[LineageEdge]:
    """Every edge between the run's steps and the artifacts they read and wrote."""
    fetch_or_404(session, Run, run_id, "run")
    rows = session.execute(
        select(Lineage, Step.name, Artifact.uri)
        .join(Step, Step.id == Lineage.step_id)
        .join(Artifact, Artifact.id == Lineage.artifact_id)
        .where(Step.run_id == run_id)
        .order_by(Step.created_at, Step.name, Lineage.direction, Lineage.name)
    )
    return [
        LineageEdge(
            step_id=edge.step_id,
            step_name=step_name,
            artifact_id=edge.artifact_id,
            artifact_uri=uri,
            direction=Direction(edge.direction),
            name=edge.name,
        )
        for edge, step_name, uri in rows
    ]


@router.get("/cache/{cache_key}", tags=["cache"], responses=NOT_FOUND)
def lookup_cache(cache_key: str, session: SessionDep) -> CacheHit:
    """The newest completed step with this cache key and its outputs; 404 if none."""
    step = session.scalars(
        select(Step)
        .where(Step.cache_key == cache_key, Step.status == StepStatus.COMPLETED.value)
        .order_by(Step.created_at.desc(), Step.id)
        .limit(1)
    ).first()
    if step is None:
        raise HTTPException(
            http.HTTP_404_NOT_FOUND, detail=f"no completed step with cache key {cache_key!r}"
        )
    rows = session.execute(
        select(Lineage.name, Artifact)
        .join(Artifact, Artifact.id == Lineage.artifact_id)
        .where(Lineage.step_id == step.id, Lineage.direction == Direction.OUTPUT.value)
    )
    outputs = {name: ArtifactOut.model_validate(artifact) for name, artifact in rows}
    return CacheHit(step=StepOut.model_validate(step), outputs=outputs)
