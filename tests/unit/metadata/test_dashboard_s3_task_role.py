"""The AWS metadata server's log panel as ECS runs it: the artifact root from the program's task
definition, credentials from its task role only (served like the ECS agent serves them), on a
moto server that enforces IAM. What the role grants is enough; take it away and the answer is
a documented 503 naming the permission, not a 500."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.artifacts import ArtifactStore
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import start_server
from tests.aws_stack import REGION, RoleCredentialsEndpoint, program_resources
from tests.conftest import aws_test_env, moto_process

pytestmark = [
    pytest.mark.services,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws"),
]

TOKEN = secrets.token_urlsafe(24)
# moto answers this many requests unauthenticated: the ones that make an admin user.
NO_AUTH_REQUESTS = 3


@dataclass(frozen=True)
class Aws:
    url: str
    admin: dict[str, str]  # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of an admin user
    admin_arn: str

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.admin["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.admin["AWS_SECRET_ACCESS_KEY"],
        )


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    """A moto server of its own that enforces IAM, and an admin user on it."""
    import boto3

    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(NO_AUTH_REQUESTS)}
    with moto_process(log, env) as url:
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        admin_arn = iam.create_user(UserName="admin")["User"]["Arn"]
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )  # fmt: skip
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        yield Aws(url, admin, admin_arn)


def test_the_task_role_reads_step_logs_and_losing_it_is_a_503(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**aws_test_env(aws.url), **aws.admin, "AWS_CONFIG_FILE": os.devnull}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)

    # What the AWS program declares for the metadata server: its task's environment and role.
    stack_id = f"dash-{uuid.uuid4().hex[:6]}"
    program = program_resources(stack_id, TOKEN, "mlstack/base:bookworm", name="dash")
    task = program.one("aws:ecs/taskDefinition:TaskDefinition", "metadata-task")
    container = json.loads(task.inputs["containerDefinitions"])[0]
    task_env = {e["name"]: e["value"] for e in container["environment"]}
    root = task_env["MLSTACK_METADATA_ARTIFACT_ROOT"]
    assert root == program.outputs["artifact_store"]["uri"]
    bucket = program.one("aws:s3/bucket:Bucket", "bucket").inputs["bucket"]
    role = program.one("aws:iam/role:Role", "metadata-task-role")
    policy = program.one("aws:iam/rolePolicy:RolePolicy", "metadata-task-policy")
    iam, s3 = aws.client("iam"), aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    # The program's trust names ecs-tasks.amazonaws.com; here the ECS agent's stand-in (the
    # admin user) assumes the role, so the role trusts it. Its permissions are the program's.
    (trust,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    agent = {**trust, "Principal": {"AWS": aws.admin_arn}}
    role_arn = iam.create_role(
        RoleName=role.inputs["name"],
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [agent]}),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=role.inputs["name"], PolicyName="logs", PolicyDocument=policy.inputs["policy"]
    )

    # A step's log, written by the runner's own store code with the steps' (admin) identity.
    writer = ArtifactStore(root, {"client_kwargs": {"endpoint_url": aws.url}})
    uri = writer.log_uri("run-1", "train")
    local = tmp_path / "train.log"
    local.write_text("epoch 1 ✓\n")
    writer.write_log(uri, local)
    s3.put_object(Bucket=bucket, Key="mlstack/objects/ab/model.pkl", Body=b"not a log")

    credentials = RoleCredentialsEndpoint(role_arn)  # the ECS agent's task-role endpoint
    try:
        # The server has no credentials of its own: only the task role's, as on Fargate.
        for key in aws.admin:
            monkeypatch.delenv(key)
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", credentials.url)
        with start_server(
            f"sqlite:///{tmp_path / 'metadata.db'}",
            TOKEN,
            log_path=tmp_path / "server.log",
            env={k: v for k, v in task_env.items() if k.startswith("MLSTACK_")},
        ) as server:
            with MetadataClient(server.url, TOKEN) as client:
                run = client.create_run("dash", "aws", {})
                ids = {}
                for name, log_uri in (
                    ("train", uri),
                    ("missing", writer.log_uri("run-1", "missing")),
                ):
                    ids[name] = client.create_step(run.id, name, {"fn": "f"}).id
                    client.update_step(ids[name], log_uri=log_uri)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=server.url, headers=headers, trust_env=False) as http:
                read = http.get(f"/steps/{ids['train']}/log")
                missing = http.get(f"/steps/{ids['missing']}/log")
                iam.delete_role_policy(RoleName=role.inputs["name"], PolicyName="logs")
                denied = http.get(f"/steps/{ids['train']}/log")
            server_log = server.log_tail(100)
    finally:
        credentials.close()

    assert read.status_code == 200, read.text
    assert read.json() == {"text": "epoch 1 ✓\n", "offset": 0, "next_offset": 12, "size": 12}
    assert missing.status_code == 404, missing.text  # ListBucket: a missing log is not a 403
    assert denied.status_code == 503, denied.text
    detail = denied.json()["detail"]
    assert "access denied" in detail and "s3:GetObject" in detail and f"{root}/logs/" in detail
    assert "Traceback" not in server_log
    for secret in credentials.served:
        assert secret not in server_log and secret not in denied.text
