"""One set of stack tags for every provider: aws, kubernetes and local build them alike.

The AWS provider's default tags and the kubernetes and local outputs' ``tags`` are all
``stacks.common.tags.stack_tags`` of the same identity: a sweep or a drain that matches on
``mlstack:stack-id`` finds any stack's resources, and ``mlstack outputs`` shows one shape.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from provisioner.engines.pulumi_plan import plan_config, run_stack_program
from provisioner.state import StateRegistry
from stacks.common.tags import EXPIRES_TAG, STACK_ID_TAG, expiry_tag, stack_tags
from stacks.spec import StackSpec
from tests.conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

STACK_ID = "demo-a1b2c3"
EXPIRES = "2030-01-01T08:00:00Z"
OWNER = "alice"
EXTRA = {"team": "ml", "cost-centre": "42"}
KEYS = {"mlstack:stack", STACK_ID_TAG, "mlstack:owner", EXPIRES_TAG, "mlstack:managed-by"}


def program_run(provider: str, module: str, **fields: Any) -> Any:
    spec = StackSpec.model_validate(
        {"name": "demo", "provider": provider, "owner": OWNER, "tags": EXTRA, **fields}
    )
    mod = __import__(module, fromlist=["SECRET_CONFIG"])
    config = plan_config(spec, mod.SECRET_CONFIG)
    generate = getattr(mod, "generated_config", None)
    config.update({f"mlstack:{k}": v for k, (v, _) in (generate(spec) if generate else {}).items()})
    config["mlstack:expiresAt"] = EXPIRES
    return run_stack_program(spec, module, STACK_ID, config)


def expected(name: str, stack_id: str, expires_at: str) -> dict[str, str]:
    return stack_tags(name=name, stack_id=stack_id, owner=OWNER, expires_at=expires_at, extra=EXTRA)


def test_the_aws_provider_tags_every_resource_with_the_shared_stack_tags() -> None:
    run = program_run("aws", "stacks.aws.program", region="eu-west-1")

    tags = json.loads(run.named("aws").inputs["defaultTags"])["tags"]
    assert tags == expected("demo", STACK_ID, EXPIRES)
    assert run.outputs["tags"] == tags
    assert set(tags) >= KEYS


def test_the_kubernetes_outputs_carry_the_shared_stack_tags() -> None:
    run = program_run(
        "kubernetes", "stacks.kubernetes.program", kubernetes={"kubeconfig": "k", "context": "c"}
    )

    assert run.outputs["tags"] == expected("demo", STACK_ID, EXPIRES)


@pytest.mark.services
def test_a_local_stacks_outputs_carry_the_shared_stack_tags(home: Path, tmp_path: Path) -> None:
    name = f"tags-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "stack.yaml"
    spec.write_text(
        f"name: {name}\nprovider: local\nowner: {OWNER}\nttl: 2h\n"
        f"tags: {json.dumps(EXTRA)}\n"
        "components: {tracker: none, deployer: none, container_registry: none}\n"
    )
    try:
        run_cli("up", str(spec), check=True)
        record = StateRegistry(home).get(name)
        assert record is not None and record.outputs is not None
        assert record.expires_at is not None
        assert record.outputs.tags == expected(name, record.stack_id, expiry_tag(record.expires_at))
        assert set(record.outputs.tags) >= KEYS
    finally:
        run_cli("down", name, "--yes", check=True)
