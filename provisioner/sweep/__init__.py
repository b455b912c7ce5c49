"""Stack-scoped sweep and drain: what still carries a stack's tag, removed in dependency order.

``sweep_aws(stack_id, region)`` needs no state file and no Pulumi state: it asks AWS for the
exact ``mlstack:stack-id`` tag value. ``drain_aws`` removes a stack's runtime resources
(endpoints, jobs, job definitions, pushed images) before ``down`` destroys the rest. Both
return typed results (:mod:`provisioner.sweep.models`) a teardown report can include.
boto3 is imported only when one of them runs.
"""

from __future__ import annotations

from typing import Any

from provisioner.sweep.models import DrainResult, FoundResource, SweepError, SweepResult

__all__ = [
    "DrainResult",
    "FoundResource",
    "SweepError",
    "SweepResult",
    "drain_aws",
    "sweep_aws",
]


def sweep_aws(
    stack_id: str,
    region: str,
    *,
    delete: bool = False,
    session: Any = None,
    timeout: float = 900,
) -> SweepResult:
    """Find (and with ``delete``, remove) every AWS resource tagged with exactly ``stack_id``."""
    from provisioner.sweep.aws_delete import delete_all, rank
    from provisioner.sweep.aws_find import Clients, find

    clients = Clients(region, session)
    found = sorted(find(clients, stack_id), key=lambda r: (rank(r.kind), r.arn))
    if delete:
        delete_all(clients, found, timeout)
    return SweepResult(stack_id=stack_id, provider="aws", region=region, delete=delete, found=found)


def drain_aws(
    stack_id: str, region: str, *, session: Any = None, timeout: float = 900
) -> DrainResult:
    """Remove the stack's runtime resources: endpoints, configs, models, jobs, images."""
    from provisioner.sweep.aws_drain import drain

    return drain(stack_id, region, session=session, timeout=timeout)
