"""Endpoints for packaging outcomes: which image each run used, and why it was (re)built."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import status as http
from sqlalchemy import select

from runner.metadata.db import SessionDep
from runner.metadata.models import Image
from runner.metadata.schemas import ImageCreate, ImageOut

router = APIRouter(tags=["images"])


@router.post("/images", status_code=http.HTTP_201_CREATED)
def record_image(body: ImageCreate, session: SessionDep) -> ImageOut:
    """Record that an image was built, reused or failed to build."""
    fields = body.model_dump()
    fields["action"] = body.action.value
    image = Image(**fields)
    session.add(image)
    session.commit()
    return ImageOut.model_validate(image)


@router.get("/images")
def list_images(
    session: SessionDep,
    stack: str | None = None,
    pipeline: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[ImageOut]:
    """Packaging outcomes, newest first, optionally of one stack and pipeline."""
    query = select(Image)
    if stack is not None:
        query = query.where(Image.stack == stack)
    if pipeline is not None:
        query = query.where(Image.pipeline == pipeline)
    query = query.order_by(Image.created_at.desc(), Image.id).limit(limit)
    return [ImageOut.model_validate(row) for row in session.scalars(query)]
