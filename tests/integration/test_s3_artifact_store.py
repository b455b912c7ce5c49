"""``artifact_store: s3`` on a local stack, against a real moto server over HTTP on 127.0.0.1.

Runs on the local and the docker orchestrators read and write their artifacts in the bucket;
the AWS credentials come from the environment and never reach the state or the outputs;
``down`` leaves a user's bucket (and everything in it) alone and removes only a bucket the
stack created.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.integration.test_docker_orchestrator import engine_ready

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "pipelines" / "toy.py"
BASE = os.environ.get("MLSTACK_TEST_BASE_IMAGE", "mlstack/base:bookworm")
REGION = "us-east-1"
NONE = "  tracker: none\n  deployer: none\n"


@dataclass(frozen=True)
class Env:
    url: str
    home: Path
    secret: str  # the AWS secret key: must never be written anywhere by mlstack

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION)


@pytest.fixture(scope="module")
def env(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """This module's MLSTACK_HOME and AWS environment (credentials only in the environment)."""
    home = tmp_path_factory.mktemp("s3-home")
    secret = f"secret-{uuid.uuid4().hex}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLSTACK_HOME", str(home))
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE"):
            mp.delenv(name, raising=False)
        yield Env(moto_server, home, secret)


def bucket_name() -> str:
    return f"mlstack-it-{uuid.uuid4().hex[:10]}"


@dataclass
class Stack:
    name: str
    bucket: str
    outputs: dict[str, Any]


def up(env: Env, bucket: str, *, create: bool = False, docker: bool = False) -> Stack:
    name = f"s3-{uuid.uuid4().hex[:6]}"
    components = (
        f"  artifact_store:\n    flavor: s3\n    bucket: {bucket}\n    prefix: runs\n"
        f"    endpoint_url: {env.url}\n    create: {str(create).lower()}\n" + NONE
    )
    if docker:
        components += (
            f"  container_registry: local\n  orchestrator: {{flavor: docker, base_image: {BASE}}}\n"
        )
    spec = env.home / f"{name}.yaml"
    spec.write_text(f"name: {name}\nprovider: local\ncomponents:\n{components}")
    run_cli("up", str(spec), check=True, timeout=300)
    outputs = json.loads(run_cli("outputs", name, "--json", check=True).stdout)
    return Stack(name, bucket, outputs)


def run_fan(stack: Stack) -> dict[str, Any]:
    proc = run_cli("run", f"{TOY}:fan", "--stack", stack.name, "--json", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert {s["status"] for s in result["steps"].values()} == {"completed"}
    return result


def load(env: Env, art: dict[str, Any]) -> object:
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(
        f"s3://{art['uri'].removeprefix('s3://').split('/')[0]}",
        {"client_kwargs": {"endpoint_url": env.url, "region_name": REGION}},
    )
    return store.load(art["uri"], art["materializer"], art["type_name"])


def keys(env: Env, bucket: str) -> list[str]:
    pages = env.s3().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def bucket_exists(env: Env, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        env.s3().head_bucket(Bucket=bucket)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchBucket"), exc
        return False
    return True


def assert_no_credentials_written(env: Env, stack: Stack) -> None:
    shown = run_cli("outputs", stack.name, "--json", "--show-secrets", check=True).stdout
    assert env.secret not in shown
    for path in env.home.rglob("*"):
        if path.is_file():
            assert env.secret.encode() not in path.read_bytes(), path


def check_a_run_lives_in_the_bucket(env: Env, stack: Stack) -> None:
    store = stack.outputs["artifact_store"]
    assert store == {
        "kind": "s3",
        "uri": f"s3://{stack.bucket}/runs",
        "region": None,
        "endpoint_url": env.url,
    }
    result = run_fan(stack)
    report = result["steps"]["report"]["outputs"]["output"]
    assert report["uri"].startswith(f"s3://{stack.bucket}/runs/objects/")
    assert load(env, report) == {"total": 10, "doubled": [0, 2, 4, 6, 8], "range": [0, 4]}
    stored = keys(env, stack.bucket)
    assert report["uri"].removeprefix(f"s3://{stack.bucket}/") in stored
    assert any(k.startswith("runs/logs/") for k in stored), stored  # step logs too
    check_the_dashboard_reads_a_step_log(stack, result["run_id"])
    assert_no_credentials_written(env, stack)


def check_the_dashboard_reads_a_step_log(stack: Stack, run_id: str) -> None:
    """The stack's metadata server reads the step's log from the bucket (its log panel)."""
    import httpx

    shown = json.loads(
        run_cli("outputs", stack.name, "--json", "--show-secrets", check=True).stdout
    )
    metadata = shown["metadata"]
    headers = {"Authorization": f"Bearer {metadata['token']}"}
    with httpx.Client(base_url=metadata["url"], headers=headers, trust_env=False) as http:
        steps = http.get(f"/runs/{run_id}").json()["steps"]
        step = next(s for s in steps if s["name"] == "numbers")
        assert step["log_uri"].startswith(f"s3://{stack.bucket}/runs/logs/"), step
        answer = http.get(f"/steps/{step['id']}/log")
    assert answer.status_code == 200, answer.text
    chunk = answer.json()
    assert "making 5 numbers" in chunk["text"]
    assert chunk["next_offset"] == chunk["size"] == len(chunk["text"].encode())


@pytest.mark.services
def test_local_runs_use_the_users_bucket_and_down_leaves_it_alone(env: Env) -> None:
    bucket = bucket_name()
    env.s3().create_bucket(Bucket=bucket)
    env.s3().put_object(Bucket=bucket, Key="theirs/keep.txt", Body=b"not mlstack's")
    stack = up(env, bucket)
    try:
        check_a_run_lives_in_the_bucket(env, stack)
        before = keys(env, bucket)
    finally:
        run_cli("down", stack.name, "--yes", check=True)

    assert bucket_exists(env, bucket)
    assert keys(env, bucket) == before and "theirs/keep.txt" in before


@pytest.mark.services
def test_a_bucket_the_stack_created_is_emptied_and_removed_at_down(env: Env) -> None:
    bucket = bucket_name()
    assert not bucket_exists(env, bucket)
    stack = up(env, bucket, create=True)
    try:
        assert bucket_exists(env, bucket)
        run_fan(stack)
        assert keys(env, bucket)
    finally:
        down = run_cli("down", stack.name, "--yes", check=True)

    assert not bucket_exists(env, bucket)
    assert f"bucket {bucket}" in down.stdout + down.stderr


@pytest.mark.services
def test_a_missing_user_bucket_is_one_line_at_up(env: Env) -> None:
    bucket = bucket_name()
    name = f"s3-{uuid.uuid4().hex[:6]}"
    spec = env.home / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\nprovider: local\ncomponents:\n  artifact_store:\n    flavor: s3\n"
        f"    bucket: {bucket}\n    endpoint_url: {env.url}\n" + NONE
    )
    try:
        proc = run_cli("up", str(spec), timeout=300)
        assert proc.returncode == 1
        assert proc.stderr.splitlines()[-1] == (
            f"error: artifact_store: bucket {bucket!r} at {env.url}: does not exist"
            " (create the bucket, or set artifact_store.create: true)"
        )
        assert "Traceback" not in proc.stderr
    finally:
        run_cli("down", name, "--yes")
    assert not bucket_exists(env, bucket)


@pytest.mark.docker
def test_docker_runs_read_and_write_the_bucket(env: Env) -> None:
    reason = engine_ready()
    if reason:
        pytest.skip(reason)
    built = run_cli("base-image", "build", "--tag", BASE, timeout=1800)
    assert built.returncode == 0, built.stderr
    bucket = bucket_name()
    env.s3().create_bucket(Bucket=bucket)
    stack = up(env, bucket, docker=True)
    try:
        check_a_run_lives_in_the_bucket(env, stack)
        import docker

        client = docker.from_env()
        for image in client.images.list(name="*/mlstack/fan"):
            assert env.secret not in json.dumps(image.attrs)  # not in any image config
    finally:
        run_cli("down", stack.name, "--yes", check=True)
    assert bucket_exists(env, bucket)
