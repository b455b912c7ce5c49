"""Record what runs and deploys create in the cloud on the stack's metadata server.

Each resource is recorded as it is created, against its stack and with the stack's tags
(``POST /resources``), and marked deleted when mlstack deletes it; ``down``'s drain
(:mod:`provisioner.sweep.aws_drain`) deletes the live ones by name before destroy. Recording
is best effort: a metadata server that cannot be reached never fails the run or the deploy,
and the tag-based sweep remains the backstop for anything not recorded.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from runner.errors import MetadataError
from stacks.common.tags import STACK_ID_TAG, STACK_TAG

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient
    from stacks.outputs import StackOutputs


def stack_tags(outputs: StackOutputs) -> dict[str, str]:
    """The tags every runtime resource of the stack carries."""
    return {**outputs.tags, STACK_TAG: outputs.stack, STACK_ID_TAG: outputs.stack_id}


def record(
    client: MetadataClient | None,
    outputs: StackOutputs,
    kind: str,
    name: str,
    *,
    arn: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record resource ``kind`` ``name`` of the stack (best effort)."""
    if client is None:
        return
    with contextlib.suppress(MetadataError):
        client.record_resource(
            outputs.stack,
            kind,
            name,
            arn=arn,
            region=outputs.region,
            tags=stack_tags(outputs),
            details=details,
        )


def mark_deleted(client: MetadataClient | None, stack: str, kind: str, name: str) -> None:
    """Mark the live records of resource ``kind`` ``name`` of ``stack`` deleted (best effort)."""
    if client is None:
        return
    with contextlib.suppress(MetadataError):
        for found in client.list_resources(stack=stack, kind=kind, live=True):
            if found.name == name:
                client.mark_resource_deleted(found.id)


def record_pushed_image(
    client: MetadataClient | None,
    outputs: StackOutputs,
    repository: str,
    tag: str,
    digest: str | None,
) -> None:
    """The image ``repository:tag`` (``host/name``, as pushed) on the stack's ECR registry;
    other registries go with the stack's own services, so only ECR images are recorded."""
    if getattr(outputs.container_registry, "kind", None) != "ecr":
        return
    name = repository.split("://", 1)[-1].split("/", 1)[-1]  # the ECR repository's name
    details = {"repository": name, "tag": tag, "digest": digest}
    ref = f"{repository}:{tag}"
    record(client, outputs, "ecr:image", f"{name}:{tag}", arn=ref, details=details)
