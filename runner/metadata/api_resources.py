"""Endpoints for runtime resources: what runs and deploys created in the cloud, by stack.

Each is recorded as it is created (``POST /resources``, idempotent on stack, kind and name)
and marked deleted when it goes (``PATCH /resources/{id}``); ``down``'s drain lists the live
ones of its stack and deletes them by name, before the tag-based sweep.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import status as http
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from runner.metadata.db import SessionDep, fetch_or_404
from runner.metadata.guard import NOT_FOUND
from runner.metadata.models import Resource, utcnow
from runner.metadata.schemas import KIND_PATTERN, ResourceCreate, ResourceOut, ResourceUpdate

router = APIRouter(tags=["resources"])

_ALREADY: dict[int | str, dict[str, Any]] = {
    200: {"model": ResourceOut, "description": "Already recorded; the record updated."}
}


def _find(session: Session, body: ResourceCreate) -> Resource | None:
    return session.scalars(
        select(Resource).where(
            Resource.stack == body.stack, Resource.kind == body.kind, Resource.name == body.name
        )
    ).first()


@router.post("/resources", status_code=http.HTTP_201_CREATED, responses=_ALREADY)
def record_resource(body: ResourceCreate, session: SessionDep, response: Response) -> ResourceOut:
    """Record a runtime resource (201); the same stack, kind and name again updates its
    ARN, region, tags and details and clears ``deleted_at`` (200)."""
    now = utcnow()
    fields = body.model_dump()
    row = _find(session, body)
    if row is None:
        row = Resource(**fields, created_at=now, updated_at=now)
        session.add(row)
        try:
            session.commit()
            return ResourceOut.model_validate(row)
        except IntegrityError:  # a racing create of the same resource won
            session.rollback()
            row = _find(session, body)
            assert row is not None
    for key in ("arn", "region", "tags", "details"):
        setattr(row, key, fields[key])
    row.deleted_at = None
    row.updated_at = now
    session.commit()
    response.status_code = http.HTTP_200_OK
    return ResourceOut.model_validate(row)


@router.get("/resources")
def list_resources(
    session: SessionDep,
    stack: Annotated[str | None, Query(max_length=255)] = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=KIND_PATTERN)] = None,
    live: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[ResourceOut]:
    """Recorded resources, oldest first; ``live=true`` only those not marked deleted,
    ``live=false`` only those that are."""
    query = select(Resource)
    if stack is not None:
        query = query.where(Resource.stack == stack)
    if kind is not None:
        query = query.where(Resource.kind == kind)
    if live is not None:
        gone = Resource.deleted_at.is_(None)
        query = query.where(gone if live else ~gone)
    query = query.order_by(Resource.created_at, Resource.id).limit(limit)
    return [ResourceOut.model_validate(row) for row in session.scalars(query)]


@router.patch("/resources/{resource_id}", responses=NOT_FOUND)
def update_resource(resource_id: str, body: ResourceUpdate, session: SessionDep) -> ResourceOut:
    """Mark the resource deleted, at ``deleted_at`` (default: now); once is enough, a second
    mark keeps the first time."""
    row = fetch_or_404(session, Resource, resource_id, "resource")
    if row.deleted_at is None:
        row.deleted_at = body.deleted_at or utcnow()
        row.updated_at = utcnow()
        session.commit()
    return ResourceOut.model_validate(row)
