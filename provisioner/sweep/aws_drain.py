"""Drain: remove what a stack created at run time, before ``down`` destroys what Pulumi made.

Runtime resources are found by the stack's exact tag (SageMaker endpoints, endpoint configs,
models, Batch job definitions), through the stack's job queues (active jobs) and its tagged
ECR repositories (pushed images; the repository itself stays for Pulumi to delete). Each
endpoint's delete schedule goes too. An endpoint counts as drained only once it is gone.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from provisioner.sweep.aws_delete import Deleter, _message, rank
from provisioner.sweep.aws_find import Clients, find
from provisioner.sweep.models import DrainResult, FoundResource
from stacks.common.errors import EngineError
from stacks.common.progress import Progress

if TYPE_CHECKING:
    from provisioner.state import StackRecord
    from provisioner.teardown import TeardownItem

RUNTIME_KINDS = frozenset(
    {
        "sagemaker:endpoint",
        "sagemaker:endpoint-config",
        "sagemaker:model",
        "batch:job",
        "batch:job-definition",
    }
)


def _images(
    clients: Clients, repositories: list[FoundResource]
) -> list[tuple[FoundResource, str, dict[str, str]]]:
    """Every image in the stack's repositories: (record, repository name, image id)."""
    ecr = clients("ecr")
    found = []
    for repo in repositories:
        for page in ecr.get_paginator("list_images").paginate(repositoryName=repo.name):
            for image in page.get("imageIds", []):
                ref = image.get("imageTag") or image.get("imageDigest", "")
                image_id = (
                    {"imageDigest": image["imageDigest"]}
                    if image.get("imageDigest")
                    else {"imageTag": ref}
                )
                record = FoundResource(
                    arn=f"{repo.arn}:{ref}",
                    kind="ecr:image",
                    name=f"{repo.name}:{ref}",
                    region=clients.region,
                )
                found.append((record, repo.name, image_id))
    return found


def drain(stack_id: str, region: str, *, session: Any = None, timeout: float = 900) -> DrainResult:
    clients = Clients(region, session)
    everything = find(clients, stack_id)
    runtime = sorted(
        (r for r in everything if r.kind in RUNTIME_KINDS), key=lambda r: (rank(r.kind), r.arn)
    )
    repositories = [r for r in everything if r.kind == "ecr:repository"]
    deleter = Deleter(clients, timeout)
    for res in runtime:
        try:
            deleter.delete(res)
        except Exception as exc:
            res.error = _message(exc)
        else:
            res.deleted = True
            if res.kind == "sagemaker:endpoint":
                _drop_endpoint_schedule(clients, stack_id, res.name)
    images = _images(clients, repositories)
    ecr = clients("ecr")
    for image, repo, image_id in images:
        try:
            failures = ecr.batch_delete_image(repositoryName=repo, imageIds=[image_id]).get(
                "failures", []
            )
        except Exception as exc:
            image.error = _message(exc)
            continue
        if failures and failures[0].get("failureCode") != "ImageNotFound":
            image.error = f"{failures[0].get('failureCode')}: {failures[0].get('failureReason')}"
        else:
            image.deleted = True
    return DrainResult(
        stack_id=stack_id, region=region, drained=[*runtime, *(i for i, _, _ in images)]
    )


def _drop_endpoint_schedule(clients: Clients, stack_id: str, endpoint: str) -> None:
    from stacks.common.aws_expiry import remove_endpoint_schedule

    # The schedule's group goes with the stack anyway; never block a drain on it.
    with contextlib.suppress(Exception):
        remove_endpoint_schedule(stack_id, endpoint, session=clients.session, region=clients.region)


def drain_before_destroy(
    name: str, stack_id: str, region: str, progress: Progress
) -> list[TeardownItem]:
    """What ``down`` does before destroy: drain, refuse to go on if anything remains, then
    remove the expiry schedules. Returns one item per resource removed."""
    from provisioner.teardown import TeardownItem
    from stacks.common.aws_expiry import remove_expiry

    progress.update("drain", "stopping", "endpoints, jobs, job definitions, images")
    result = drain(stack_id, region)
    if not result.complete:
        left = ", ".join(f"{r.kind} {r.name} ({r.error})" for r in result.remaining)
        progress.update("drain", "failed", left[:200])
        raise EngineError(
            f"stack {name}: {len(result.remaining)} runtime resources could not be drained: {left}",
            "nothing was destroyed; fix the cause and run `mlstack down` again",
        )
    removed = remove_expiry(stack_id, region=region)
    progress.update("drain", "stopped", f"{len(result.drained)} runtime resources")
    return [TeardownItem(kind=r.kind, name=r.name) for r in result.drained] + [
        TeardownItem(kind="scheduler:schedule", name=schedule, detail="expiry")
        for schedule in removed
    ]


def sweep_after_destroy(record: StackRecord) -> tuple[list[TeardownItem], list[TeardownItem]]:
    """The teardown report's sweep: what still carries the stack-id tag after destroy is
    deleted; (swept, leftovers). Registered for ``aws`` in :data:`provisioner.teardown.SWEEPERS`."""
    from provisioner.sweep import sweep_aws
    from provisioner.teardown import TeardownItem

    region = str(getattr(record.spec, "region", None) or "")
    result = sweep_aws(record.stack_id, region, delete=True)
    swept = [TeardownItem(kind=r.kind, name=r.name) for r in result.found if r.deleted]
    left = [
        TeardownItem(kind=r.kind, name=r.name, detail=r.error or "not deleted")
        for r in result.found
        if not r.deleted
    ]
    return swept, left
