"""Endpoints for model deployments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import status as http
from sqlalchemy import select
from sqlalchemy.orm import Session

from runner.metadata.db import SessionDep, fetch_or_404
from runner.metadata.guard import CONFLICT, NOT_FOUND
from runner.metadata.models import Deployment, Run, utcnow
from runner.metadata.schemas import (
    LIVE_DEPLOYMENT_STATUSES,
    DeploymentCreate,
    DeploymentOut,
    DeploymentStatus,
    DeploymentUpdate,
)

router = APIRouter(tags=["deployments"])

_LIVE = [status.value for status in LIVE_DEPLOYMENT_STATUSES]


@router.post("/deployments", status_code=http.HTTP_201_CREATED, responses={**NOT_FOUND, **CONFLICT})
def create_deployment(
    body: DeploymentCreate, session: SessionDep, request: Request
) -> DeploymentOut:
    """Record a deployment; 409 while the stack has a live one with the same name that it
    does not replace. Check and insert are one step: two racing creates cannot both pass."""
    with request.app.state.deployments_lock:
        return _create(body, session)


def _create(body: DeploymentCreate, session: Session) -> DeploymentOut:
    if body.run_id is not None:
        fetch_or_404(session, Run, body.run_id, "run")
    clash = session.scalars(
        select(Deployment.id).where(
            Deployment.stack == body.stack,
            Deployment.name == body.name,
            Deployment.status.in_(_LIVE),
            Deployment.id.not_in(body.replaces),
        )
    ).first()
    if clash is not None:
        raise HTTPException(
            http.HTTP_409_CONFLICT,
            detail=f"stack {body.stack!r} already has a live deployment named {body.name!r}"
            f" ({clash}); stop it first",
        )
    now = utcnow()
    fields = body.model_dump(exclude={"replaces"})
    fields["status"] = body.status.value
    deployment = Deployment(**fields, created_at=now, updated_at=now)
    session.add(deployment)
    session.commit()
    return DeploymentOut.model_validate(deployment)


@router.get("/deployments")
def list_deployments(
    session: SessionDep,
    stack: str | None = None,
    status: DeploymentStatus | None = None,
) -> list[DeploymentOut]:
    """Deployments, newest first, optionally filtered by stack and status."""
    query = select(Deployment)
    if stack is not None:
        query = query.where(Deployment.stack == stack)
    if status is not None:
        query = query.where(Deployment.status == status.value)
    query = query.order_by(Deployment.created_at.desc(), Deployment.id)
    return [DeploymentOut.model_validate(row) for row in session.scalars(query)]


@router.get("/deployments/{deployment_id}", responses=NOT_FOUND)
def get_deployment(deployment_id: str, session: SessionDep) -> DeploymentOut:
    """One deployment."""
    return DeploymentOut.model_validate(
        fetch_or_404(session, Deployment, deployment_id, "deployment")
    )


@router.patch("/deployments/{deployment_id}", responses=NOT_FOUND)
def update_deployment(
    deployment_id: str, body: DeploymentUpdate, session: SessionDep
) -> DeploymentOut:
    """Change status/endpoint; ``details`` are merged key by key, a null value drops a key."""
    deployment = fetch_or_404(session, Deployment, deployment_id, "deployment")
    fields = body.model_dump(exclude_unset=True)
    if fields.get("status") is not None:
        deployment.status = DeploymentStatus(fields["status"]).value
    if "endpoint_url" in fields:
        deployment.endpoint_url = fields["endpoint_url"]
    if fields.get("details") is not None:
        merged: dict[str, Any] = dict(deployment.details or {})
        for key, value in fields["details"].items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        deployment.details = merged  # a new dict, so the JSON column sees the change
    deployment.updated_at = utcnow()
    session.commit()
    return DeploymentOut.model_validate(deployment)
