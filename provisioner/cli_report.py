"""Tell a stack's metadata server what the CLI knows of the stack, for the dashboard.

The metadata server sees runs, not the CLI's state, so ``up``, ``extend`` and ``ui`` send it
the same figures ``mlstack status --json`` and ``mlstack cost --json`` print: provider,
status, creation and expiry, each service's health and the estimated spend so far. Best
effort: a stack whose server cannot be reached is reported on the next command that can.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioner.state import StateRegistry
    from stacks.outputs import StackOutputs

log = logging.getLogger(__name__)


def stack_report(name: str, registry: StateRegistry, outputs: StackOutputs) -> dict[str, Any]:
    """The fields of ``PUT /stacks/{name}``: the record, its services' health, its spend."""
    from provisioner import api
    from provisioner.cli_cost import runtime_usage
    from provisioner.cost.reaper import clock
    from provisioner.cost.spend import spend

    rec = api.record(name, registry)
    at = clock()
    services = api.status(rec, registry)
    total, budget = None, rec.spec.budget
    try:
        estimate = spend(rec, registry, at=at, usage=runtime_usage)
        total, budget = estimate.total, estimate.budget
    except Exception as exc:  # an estimate is a nicety here; the report goes out without it
        log.debug("spend of %s unknown: %s", name, exc)
    tracker = getattr(outputs.tracker, "uri", None)
    return {
        "provider": rec.provider,
        "status": rec.status,
        "created_at": rec.created_at,
        "expires_at": rec.expires_at,
        "budget_usd": budget,
        "spend_usd": total,
        "checked_at": at,
        "tracker_url": tracker if str(tracker or "").startswith(("http://", "https://")) else None,
        "services": [
            {"name": s.name, "state": s.state, "url": s.url, "detail": s.detail[:1000]}
            for s in services
        ],
    }


def report_stack(name: str, outputs: StackOutputs | None = None) -> bool:
    """Send the stack's report to its metadata server; False when it could not be sent."""
    from provisioner.cli_runs import metadata_client, stack_outputs
    from provisioner.state import StateRegistry

    try:
        outputs = outputs if outputs and outputs.metadata.token else stack_outputs(name)
        fields = stack_report(name, StateRegistry(), outputs)
        with metadata_client(outputs) as client:
            client.report_stack(name, **fields)
    except Exception as exc:  # never fails the command that reports
        log.debug("could not report stack %s to its metadata server: %s", name, exc)
        return False
    return True
