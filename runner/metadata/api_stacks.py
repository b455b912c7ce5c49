"""The stack as the CLI last reported it: provider, status, lifetime, health, spend.

The metadata server cannot see the CLI's state, so ``up``, ``extend`` and ``ui`` report it
(``PUT``, bearer token only); the dashboard's stacks page reads it back.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from runner.metadata.db import SessionDep, fetch_or_404
from runner.metadata.guard import NOT_FOUND
from runner.metadata.models import StackReport, utcnow
from runner.metadata.schemas import NameStr, StackReportIn, StackReportOut

router = APIRouter(tags=["stacks"])


def _out(row: StackReport) -> StackReportOut:
    return StackReportOut.model_validate(
        {**row.report, "stack": row.stack, "reported_at": row.reported_at}
    )


@router.put("/stacks/{stack}")
def report_stack(stack: NameStr, body: StackReportIn, session: SessionDep) -> StackReportOut:
    """Replace the stack's report with the CLI's latest view of it."""
    row = session.get(StackReport, stack)
    data = body.model_dump(mode="json")
    if row is None:
        row = StackReport(stack=stack, report=data)
        session.add(row)
    else:
        row.report, row.reported_at = data, utcnow()
    session.commit()
    return _out(row)


@router.get("/stacks")
def list_stacks(session: SessionDep) -> list[StackReportOut]:
    """Every reported stack, by name."""
    return [_out(r) for r in session.scalars(select(StackReport).order_by(StackReport.stack))]


@router.get("/stacks/{stack}", responses=NOT_FOUND)
def get_stack(stack: str, session: SessionDep) -> StackReportOut:
    """One stack's latest report."""
    return _out(fetch_or_404(session, StackReport, stack, "stack report"))
