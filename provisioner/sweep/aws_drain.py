"""Drain: remove what a stack created at run time, before ``down`` destroys what Pulumi made.

First the runtime resources recorded on the stack's metadata server as they were created
(``GET /resources?live=true``: job definitions, pushed ECR images, SageMaker models, endpoint
configs and endpoints) are deleted by name and marked deleted there. Then, the backstop for
what was never recorded: runtime resources found by the stack's exact tag (SageMaker
endpoints, endpoint configs, models, Batch job definitions), through the stack's job queues
(active jobs) and its tagged ECR repositories (pushed images; the repository itself stays for
Pulumi to delete). Each endpoint's delete schedule goes too. An endpoint counts as drained
only once it is gone.
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


def _gone(exc: Exception) -> bool:
    """A delete that failed because the resource is already gone (deleted out of band)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", "")).lower()
    return (
        code.endswith("NotFoundException")
        or "could not find" in message
        or "not found" in message
        or "does not exist" in message
    )


def _delete_image(clients: Clients, row: Any) -> None:
    repository = str(row.details.get("repository") or row.name.rsplit(":", 1)[0])
    tag = str(row.details.get("tag") or row.name.rsplit(":", 1)[-1])
    answer = clients("ecr").batch_delete_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}]
    )
    failures = answer.get("failures", [])
    if failures and failures[0].get("failureCode") != "ImageNotFound":
        raise RuntimeError(f"{failures[0].get('failureCode')}: {failures[0].get('failureReason')}")


def drain_recorded(
    client: Any, stack: str, stack_id: str, region: str, deleter: Deleter
) -> list[FoundResource]:
    """Delete the live resources recorded for ``stack`` (endpoints before configs before
    models, then job definitions, then images) and mark each one deleted; a resource that
    is already gone counts as deleted. What fails keeps its error (a leftover)."""
    # ``client`` is the stack's MetadataClient (the CLI makes it: the provisioner never
    # imports the runner); any failure of it leaves the tag-based drain to do the work.
    try:
        rows = client.list_resources(stack=stack, live=True, limit=10000)
    except Exception:  # the server went away: the tag-based drain still runs
        return []
    drained = []
    for row in sorted(rows, key=lambda r: (rank(r.kind), r.created_at)):
        res = FoundResource(
            arn=row.arn or row.name, kind=row.kind, name=row.name, region=row.region or region
        )
        clients = deleter.c
        if res.region != clients.region:
            clients = Clients(res.region, clients.session)
        try:
            if row.kind == "ecr:image":
                _delete_image(clients, row)
            else:
                Deleter(clients, deleter.timeout).delete(res)
        except Exception as exc:
            if not _gone(exc):
                res.error = _message(exc)
        if res.error is None:
            res.deleted = True
            if res.kind == "sagemaker:endpoint":
                _drop_endpoint_schedule(clients, stack_id, res.name)
            with contextlib.suppress(Exception):  # gone all the same; a later drain re-marks
                client.mark_resource_deleted(row.id)
        drained.append(res)
    return drained


def drain(
    stack_id: str,
    region: str,
    *,
    session: Any = None,
    timeout: float = 900,
    client: Any = None,
    stack: str | None = None,
) -> DrainResult:
    """Drain the stack's runtime resources: with ``client`` (the stack's metadata server)
    and ``stack`` (its name) the recorded ones first, then whatever carries the stack's tag."""
    clients = Clients(region, session)
    deleter = Deleter(clients, timeout)
    recorded = drain_recorded(client, stack, stack_id, region, deleter) if client and stack else []
    handled = {(r.kind, r.arn) for r in recorded} | {(r.kind, r.name) for r in recorded}
    everything = [
        r
        for r in find(clients, stack_id)
        if (r.kind, r.arn) not in handled and (r.kind, r.name) not in handled
    ]
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
    images = [i for i in _images(clients, repositories) if ("ecr:image", i[0].name) not in handled]
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
        stack_id=stack_id,
        region=region,
        drained=[*recorded, *runtime, *(i for i, _, _ in images)],
    )


def _metadata_client(name: str, progress: Progress) -> Any:
    """A client of the stack's metadata server, or None (noted) when it cannot be reached:
    the tag-based drain still runs."""
    try:
        from provisioner.cli_runs import metadata_client, stack_outputs

        client = metadata_client(stack_outputs(name), timeout=10.0)
        if not client.health():
            client.close()
            raise ConnectionError("not answering")
        return client
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        progress.update("drain", "stopping", f"no recorded resources ({reason}); by tag only")
        return None


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
    client = _metadata_client(name, progress)
    try:
        result = drain(stack_id, region, client=client, stack=name)
    finally:
        if client is not None:
            client.close()
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
