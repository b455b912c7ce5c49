"""Drain on a real moto server: runtime resources go, the stack's infrastructure stays."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from stack_resources import REGION, client, create_stack, exists, new_stack_id

from provisioner.sweep import drain_aws

if TYPE_CHECKING:
    from provisioner.state import StateRegistry

pytestmark = pytest.mark.services

RUNTIME = (
    "sagemaker:endpoint",
    "sagemaker:endpoint-config",
    "sagemaker:model",
    "batch:job-definition",
)
INFRA = ("s3:bucket", "ecr:repository", "batch:job-queue", "batch:compute-environment", "iam:role")


def test_drain_removes_endpoints_configs_models_definitions_and_images(aws_env: str) -> None:
    ours = create_stack(new_stack_id())
    theirs = create_stack(f"{ours.stack_id}-{new_stack_id('two')}")
    result = drain_aws(ours.stack_id, REGION, timeout=60)
    assert result.complete, result.remaining
    kinds = [r.kind for r in result.drained]
    assert set(RUNTIME) | {"ecr:image"} == set(kinds)
    assert kinds.index("sagemaker:endpoint") < kinds.index("sagemaker:endpoint-config")
    assert kinds.index("sagemaker:endpoint-config") < kinds.index("sagemaker:model")
    for kind in RUNTIME:
        assert not exists(kind, ours), kind
    images = client("ecr").list_images(repositoryName=ours.names["ecr:repository"])["imageIds"]
    assert images == []
    for kind in INFRA:  # Pulumi's to destroy, not drain's
        assert exists(kind, ours), kind
    for kind in RUNTIME + INFRA:
        assert exists(kind, theirs), kind
    theirs_images = client("ecr").list_images(repositoryName=theirs.names["ecr:repository"])
    assert len(theirs_images["imageIds"]) == 1
    again = drain_aws(ours.stack_id, REGION, timeout=60)
    assert again.drained == []


def recorded(home: Path, stack_id: str) -> StateRegistry:
    """The registry under ``home`` with an up AWS stack ``stack_id`` recorded, as `up` leaves it."""
    from provisioner.state import StackRecord, StateRegistry

    name = stack_id.rsplit("-", 1)[0]
    spec = {"name": name, "provider": "aws", "region": REGION}
    registry = StateRegistry(home)
    registry.save(
        StackRecord(
            name=name, stack_id=stack_id, provider="aws", status="up", spec=spec, spec_hash="x"
        )
    )
    return registry


def test_down_drains_before_destroy_starts(
    aws_env: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.engines.pulumi import AwsEngine, PulumiEngine
    from provisioner.state import StackRecord
    from stacks.common.progress import NullProgress

    stack = create_stack(new_stack_id())
    name = stack.stack_id.rsplit("-", 1)[0]
    registry = recorded(home, stack.stack_id)
    seen: dict[str, bool] = {}

    def destroy(self: PulumiEngine, rec: StackRecord) -> tuple[list[str], list[str]]:
        # Stands in for the Pulumi destroy (no Pulumi CLI here): what exists when it starts.
        seen.update({kind: exists(kind, stack) for kind in RUNTIME + INFRA})
        return ["pulumi destroy"], []

    monkeypatch.setattr(PulumiEngine, "_down", destroy)
    monkeypatch.setattr(PulumiEngine, "_command", lambda self: object())  # no Pulumi CLI here
    result = AwsEngine(registry, NullProgress()).down(name)
    assert seen == {**dict.fromkeys(RUNTIME, False), **dict.fromkeys(INFRA, True)}
    drained = [str(item) for item in result.drained]
    assert f"sagemaker:endpoint mlstack-{stack.stack_id}-endpoint" in drained
    assert result.stopped == ["pulumi destroy"] and result.kept == []


@pytest.mark.docker
def test_down_removes_the_stacks_pipeline_images_from_the_local_engine(
    aws_env: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images built here for an AWS stack (pushed to its ECR repository) carry the label
    ``mlstack.stack=<name>``; `down` removes them from this machine's Docker Engine, and no
    other stack's."""
    import io

    import docker

    from provisioner.engines.pulumi import AwsEngine, PulumiEngine
    from stacks.common.progress import NullProgress

    try:
        engine = docker.from_env()
        engine.ping()
    except Exception as exc:
        pytest.skip(f"no Docker Engine reachable ({type(exc).__name__})")
    stack = create_stack(new_stack_id())
    name = stack.stack_id.rsplit("-", 1)[0]
    other = f"{name}-other"
    tags = {}
    for owner in (name, other):  # an empty image is enough: only labels and tags matter
        tag = f"127.0.0.1:1/mlstack-{owner}:flow-{new_stack_id()}"
        dockerfile = f"FROM scratch\nLABEL mlstack.stack={owner}\n".encode()
        engine.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
        tags[owner] = tag
    try:
        registry = recorded(home, stack.stack_id)
        monkeypatch.setattr(PulumiEngine, "_down", lambda self, rec: (["pulumi destroy"], []))
        monkeypatch.setattr(PulumiEngine, "_command", lambda self: object())  # no Pulumi CLI
        result = AwsEngine(registry, NullProgress()).down(name)
        assert f"image {tags[name]} (local Docker Engine)" in [str(i) for i in result.drained]
        assert engine.images.list(name=tags[name].rsplit(":", 1)[0]) == []
        assert [i.tags for i in engine.images.list(name=tags[other].rsplit(":", 1)[0])] == [
            [tags[other]]
        ]
    finally:
        for tag in tags.values():
            with contextlib.suppress(docker.errors.ImageNotFound):
                engine.images.remove(tag, force=True)
