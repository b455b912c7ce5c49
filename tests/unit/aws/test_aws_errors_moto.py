"""AWS failures become one line naming the action, the identity and the fix (runner.aws_errors).

Denials come from a moto server of its own that enforces IAM (``INITIAL_NO_AUTH_ACTION_COUNT``:
the setup's calls run unauthenticated, every later one is checked against the caller's IAM
policy), so the AccessDenied is the one AWS's IAM would give, over real HTTP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.state import StackRecord, StateRegistry
from runner.aws_clients import aws_client, clear_clients
from runner.aws_errors import (
    AwsAccessDenied,
    AwsCredentialsError,
    AwsError,
    AwsNotFound,
    aws_errors,
)
from runner.secrets import secrets_backend
from stacks.outputs import StackOutputs, load_outputs
from tests.conftest import MOTO_SERVER, aws_outputs_data, run_cli

pytestmark = pytest.mark.services

REGION = "eu-west-1"
STACK = f"den-{uuid.uuid4().hex[:6]}"
USER = "mlstack-reader"
# The setup below makes exactly this many calls before IAM is enforced.
SETUP_CALLS = 4
ALLOWED = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}],
    }
)


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto server enforcing IAM, a user allowed only ListSecrets; its URL and keys."""
    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS), "NO_PROXY": "*"}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        while True:
            try:
                with opener.open(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        iam = boto3.client("iam", region_name=REGION, endpoint_url=url, **keys)
        iam.create_user(UserName=USER)  # 1
        iam.put_user_policy(UserName=USER, PolicyName="list", PolicyDocument=ALLOWED)  # 2
        key = iam.create_access_key(UserName=USER)["AccessKey"]  # 3
        sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=url, **keys)
        sm.create_secret(Name=f"mlstack/{STACK}-0001/db", SecretString="v")  # 4
        yield {"url": url, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def as_reader(
    iam_moto: dict[str, str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> StackOutputs:
    """This process and the CLI talk to the IAM-enforcing moto as the reader user."""
    for key, value in {
        "AWS_ENDPOINT_URL": iam_moto["url"],
        "AWS_ACCESS_KEY_ID": iam_moto["key"],
        "AWS_SECRET_ACCESS_KEY": iam_moto["secret"],
        "AWS_REGION": REGION,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    clear_clients()
    data = aws_outputs_data(STACK)
    data["secrets"] = {
        "kind": "aws_secrets_manager",
        "prefix": f"mlstack/{STACK}-0001/",
        "region": REGION,
    }
    outputs = load_outputs(data)
    StateRegistry(home).save(
        StackRecord(
            name=STACK, stack_id=f"{STACK}-0001", provider="aws", status="up",
            spec={"name": STACK, "provider": "aws", "region": REGION},
            spec_hash="0123456789abcdef", outputs=outputs,
        )
    )  # fmt: skip
    return outputs


def test_access_denied_names_action_identity_and_fix(as_reader: StackOutputs) -> None:
    backend = secrets_backend(as_reader)
    assert backend.names() == ["db"]  # allowed: IAM really is checked per action
    with pytest.raises(AwsAccessDenied) as denied:
        backend.get("db")
    text = str(denied.value)
    assert "\n" not in text
    assert text.startswith("AWS denied secretsmanager:GetSecretValue to ")
    assert f"arn:aws:iam::123456789012:user/{USER}" in denied.value.headline
    assert f"reading secret 'db' of stack '{STACK}'" in denied.value.headline
    assert denied.value.hint and "grant secretsmanager:GetSecretValue" in denied.value.hint


def test_access_denied_through_the_cli_is_one_line(as_reader: StackOutputs) -> None:
    done = run_cli("secret", "set", STACK, "api-key", input="value-not-shown")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "AWS denied secretsmanager:PutSecretValue" in lines[0]
    assert f"user/{USER}" in lines[0] and "grant" in lines[0]
    assert "value-not-shown" not in done.stdout + done.stderr


def test_a_role_given_by_the_caller_is_named(as_reader: StackOutputs) -> None:
    role = "arn:aws:iam::123456789012:role/mlstack-job"
    what = "reading a secret in a step"
    with pytest.raises(AwsAccessDenied) as denied, aws_errors("secretsmanager", what, role=role):
        aws_client("secretsmanager", REGION).get_secret_value(SecretId="x")
    assert f"to {role} while reading a secret in a step" in denied.value.headline


def test_unknown_credentials(as_reader: StackOutputs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    clear_clients()
    with pytest.raises(AwsCredentialsError) as rejected:
        secrets_backend(as_reader).names()
    text = str(rejected.value)
    assert "AWS rejected the credentials for secretsmanager:ListSecrets" in text
    assert "AWS_PROFILE" in text and "\n" not in text


def test_no_credentials_at_all(aws_env: str, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role lookup here
    clear_clients()
    outputs = load_outputs(aws_outputs_data("nocreds"))
    with pytest.raises(AwsCredentialsError) as none:
        secrets_backend(outputs).get("x")
    assert str(none.value).startswith("no AWS credentials for secretsmanager while reading")


def test_missing_resource_names_it_and_the_fix(aws_env: str) -> None:
    clear_clients()
    what = "looking up repository mlstack-gone"
    with (
        pytest.raises(AwsNotFound) as missing,
        aws_errors("ecr", what, missing_hint="run up"),
    ):
        aws_client("ecr", REGION).describe_repositories(repositoryNames=["mlstack-gone"])
    assert missing.value.headline.startswith("looking up repository mlstack-gone: not found")
    assert "ecr:DescribeRepositories" in missing.value.headline
    assert missing.value.hint == "run up"


def test_expired_token_shape(aws_env: str) -> None:
    """moto never expires a session token: botocore's Stubber gives AWS's response shape."""
    from botocore.stub import Stubber

    client = aws_client("secretsmanager", REGION)
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value",
            service_error_code="ExpiredTokenException",
            service_message="The security token included in the request is expired",
            http_status_code=400,
        )
        with (
            pytest.raises(AwsCredentialsError) as expired,
            aws_errors("secretsmanager", "reading secret 'x'"),
        ):
            client.get_secret_value(SecretId="x")
    assert "(ExpiredTokenException)" in str(expired.value)
    assert "refresh them" in str(expired.value)


def test_other_errors_are_still_one_line(aws_env: str) -> None:
    with pytest.raises(AwsError) as failed, aws_errors("secretsmanager", "storing secret 'x'"):
        aws_client("secretsmanager", REGION).create_secret(Name="", SecretString="v")
    assert "\n" not in str(failed.value) and "storing secret 'x'" in str(failed.value)


def test_a_missing_queue_is_not_found_though_batch_says_client_exception(aws_env: str) -> None:
    clear_clients()
    what = "submitting step train to job queue mlstack-gone"
    with pytest.raises(AwsNotFound) as missing, aws_errors("batch", what):
        aws_client("batch", REGION).submit_job(
            jobName="train", jobQueue="mlstack-gone", jobDefinition="mlstack-gone:1"
        )
    assert missing.value.headline.startswith(f"{what}: not found in AWS (batch:SubmitJob")
    assert "\n" not in str(missing.value)
