"""A pipeline image pushed to a stack's ECR registry is recorded for the drain, as pushed.

The real push path of ``ensure_image`` (Docker Engine, moto's ECR tokens, the stand-in
registry of test_registry_auth_ecr) and a live metadata server.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.metadata.client import MetadataClient
from runner.metadata.launcher import start_server
from runner.packaging import ensure_image
from runner.registry_auth import EcrAuth
from runner.sdk import Pipeline
from stacks.outputs import StackOutputs
from tests.conftest import aws_outputs_data
from tests.integration.test_packaging_docker import (  # noqa: F401 - fixtures
    base_image,
    engine,
    home,
    make_pipeline,
)
from tests.integration.test_registry_auth_ecr import (  # noqa: F401 - fixtures
    BEFORE,
    REGION,
    ecr_registry,
    fresh_cache,
)

pytestmark = [pytest.mark.docker, pytest.mark.services]

TOKEN = secrets.token_urlsafe(24)


def test_a_push_to_ecr_is_recorded_against_the_stack_and_a_reuse_adds_nothing(
    engine: Any,  # noqa: F811
    base_image: str,  # noqa: F811
    make_pipeline: Callable[..., Pipeline],  # noqa: F811
    aws_env: str,
    ecr_registry: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = uuid.uuid4().hex[:8]
    server = start_server(f"sqlite:///{tmp_path / 'm.db'}", TOKEN, log_path=tmp_path / "m.log")
    try:
        data = aws_outputs_data(f"rec-{session}", region=REGION)
        url = f"{ecr_registry}/mlstack-rec-{session}"
        data["container_registry"] = {"kind": "ecr", "url": url}
        data["orchestrator"] = {"kind": "docker", "base_image": base_image}
        data["artifact_store"] = {"kind": "local", "uri": "file:///tmp/unused"}
        data["metadata"] = {"url": server.url, "token": TOKEN}
        outputs = StackOutputs.model_validate(data)
        monkeypatch.setattr(EcrAuth, "clock", staticmethod(lambda: BEFORE))
        pipeline = make_pipeline(f"rec-{session}", ["six"])
        first = ensure_image(pipeline, outputs)
        try:
            second = ensure_image(pipeline, outputs)  # found in the registry: not pushed
            assert not second.built and second.tag == first.tag
            with MetadataClient(server.url, TOKEN) as client:
                rows = client.list_resources(stack=outputs.stack, live=True)
            repository = first.image.rsplit(":", 1)[0].split("/", 1)[1]  # below the host
            assert [(r.kind, r.name, r.arn) for r in rows] == [
                ("ecr:image", f"{repository}:{first.tag}", first.image)
            ]
            assert rows[0].details["repository"] == repository
            assert rows[0].details["tag"] == first.tag
            assert str(rows[0].details["digest"]).startswith("sha256:")
            assert rows[0].tags["mlstack:stack-id"] == outputs.stack_id
        finally:
            engine.images.remove(first.image, force=True)
    finally:
        server.stop()
