"""The metadata server's image as ``up`` builds it: real Docker Engine, real registry.

``stacks.aws.image.publish`` (what the AWS program runs once the repository exists) builds the
image for linux/amd64 and pushes it to Debian's docker-registry, standing in for ECR; the
image is then pulled back by digest, started (host network) and must answer /health.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
import pytest

from provisioner.engines.pulumi_image import require_docker
from runner.metadata.client import MetadataClient
from stacks.aws.image import publish
from stacks.common.errors import EngineError
from tests.conftest import aws_test_env
from tests.integration.test_packaging_docker import (  # noqa: F401 - fixtures
    base_image,
    engine,
    home,
    registry,
)

pytestmark = pytest.mark.docker

SESSION = uuid.uuid4().hex[:8]
_FAKE = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_builds_pushes_and_the_server_starts_from_the_image(
    engine: Any,  # noqa: F811 - the imported fixture
    registry: str,  # noqa: F811
    base_image: str,  # noqa: F811
    moto_server: str,
) -> None:
    ref = f"{registry}/mlstack-{SESSION}:metadata-test"
    started = time.monotonic()
    pinned = publish(ref, base_image)
    print(f"\nmetadata image built and pushed in {time.monotonic() - started:.1f}s: {pinned}")
    repository, _, digest = pinned.partition("@")
    assert repository == ref.rsplit(":", 1)[0] and digest.startswith("sha256:")
    tags = json.load(urllib.request.urlopen(f"http://{registry}/v2/mlstack-{SESSION}/tags/list"))
    assert tags["tags"] == ["metadata-test"]

    engine.images.remove(ref, force=True)  # start from what the registry holds
    image = engine.images.pull(pinned)
    assert image.attrs["Os"] == "linux" and image.attrs["Architecture"] == "amd64"
    assert image.labels.get("mlstack.role") == "metadata-server"

    # As on ECS: the artifact root in the environment, the step logs in the bucket (moto here).
    bucket = f"mlstack-image-{SESSION}"
    root = f"s3://{bucket}/mlstack"
    s3 = boto3.client("s3", endpoint_url=moto_server, **_FAKE)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key="mlstack/logs/r/train.log", Body="from the bucket ✓\n".encode()
    )
    port = _free_port()
    name = f"mlstack-metadata-{SESSION}"
    container = engine.containers.run(
        pinned,
        command=["python3", "-m", "runner.metadata.server", "--host", "127.0.0.1",
                 "--port", str(port), "--database-url", "sqlite:////tmp/metadata.db"],
        environment={"MLSTACK_METADATA_TOKEN": f"token-{SESSION}",
                     "MLSTACK_METADATA_ARTIFACT_ROOT": root, **aws_test_env(moto_server)},
        network_mode="host", name=name, detach=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert json.load(r)["status"] == "ok"
                    break
            except OSError:
                container.reload()
                if container.status == "exited" or time.monotonic() > deadline:
                    raise AssertionError(container.logs().decode()[-2000:]) from None
                time.sleep(0.5)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/runs")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401  # the token is required, as on ECS
        with MetadataClient(f"http://127.0.0.1:{port}", f"token-{SESSION}") as client:
            run = client.create_run("image", "aws")
            step = client.create_step(run.id, "train")
            client.update_step(step.id, log_uri=f"{root}/logs/r/train.log")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/steps/{step.id}/log",
            headers={"Authorization": f"Bearer token-{SESSION}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # s3fs is in the image
            assert json.load(answer)["text"] == "from the bucket ✓\n"
    finally:
        container.remove(force=True)
        for tag in (pinned, ref):
            with contextlib.suppress(Exception):  # already gone
                engine.images.remove(tag, force=True)


def test_without_a_docker_engine_up_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix:///tmp/no-docker-{SESSION}.sock")
    with pytest.raises(EngineError) as caught:
        require_docker()
    text = str(caught.value)
    assert "needs a Docker Engine" in text and "\n" not in caught.value.headline
    assert "components.metadata.image" in caught.value.hint
    assert "python -m runner.metadata.image build --platform linux/amd64" in caught.value.hint
