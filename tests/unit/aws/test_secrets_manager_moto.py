"""The Secrets Manager backend on a real moto server, through the real `mlstack secret` CLI.

A recorded AWS stack (state + outputs, as `up` leaves them) whose prefix lives in moto; the
CLI and the library reach moto through AWS_ENDPOINT_URL only.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from provisioner.state import StackRecord, StateRegistry
from runner.aws_clients import clear_clients
from runner.secrets import resolve_token, secrets_backend
from stacks.outputs import StackOutputs, load_outputs
from tests.conftest import aws_outputs_data, run_cli

pytestmark = pytest.mark.services

REGION = "eu-west-1"


def _boto(service: str = "secretsmanager") -> Any:
    import boto3

    return boto3.client(service, region_name=REGION)


def _record(home: Path, name: str, stack_id: str) -> StackOutputs:
    data = aws_outputs_data(name, stack_id=stack_id, tags={"mlstack:stack-id": stack_id})
    data["secrets"] = {
        "kind": "aws_secrets_manager",
        "prefix": f"mlstack/{stack_id}/",
        "region": REGION,
    }
    outputs = load_outputs(data)
    StateRegistry(home).save(
        StackRecord(
            name=name, stack_id=stack_id, provider="aws", status="up",
            spec={"name": name, "provider": "aws", "region": REGION},
            spec_hash="0123456789abcdef", outputs=outputs,
        )
    )  # fmt: skip
    return outputs


@pytest.fixture
def stack(aws_env: str, home: Path) -> StackOutputs:
    clear_clients()  # a client cached by an earlier test may point at an older endpoint
    name = f"aws-{uuid.uuid4().hex[:6]}"
    return _record(home, name, f"{name}-0001")


def test_cli_set_get_list_rm_round_trip(stack: StackOutputs) -> None:
    name, value = stack.stack, f"pw-{uuid.uuid4().hex}"
    done = run_cli("secret", "set", name, "db-password", input=value + "\n", check=True)
    assert done.stdout.strip() == f"secret db-password set in stack {name}"
    stored = _boto().get_secret_value(SecretId=f"mlstack/{stack.stack_id}/db-password")
    assert stored["SecretString"] == value
    tags = _boto().describe_secret(SecretId=f"mlstack/{stack.stack_id}/db-password")["Tags"]
    assert {"Key": "mlstack:stack-id", "Value": stack.stack_id} in tags

    masked = run_cli("secret", "get", name, "db-password", check=True)
    assert value not in masked.stdout + masked.stderr
    assert f"({len(value)} characters" in masked.stdout
    shown = run_cli("secret", "get", name, "db-password", "--show-secrets", check=True)
    assert shown.stdout.strip() == value

    newer = f"pw2-{uuid.uuid4().hex}"
    run_cli("secret", "set", name, "db-password", input=newer, check=True)  # a new version
    assert run_cli("secret", "get", name, "db-password", "--show-secrets").stdout.strip() == newer
    listed = run_cli("secret", "list", name, check=True)
    assert listed.stdout.split() == ["db-password"]
    assert run_cli("secret", "list", name, "--json", check=True).stdout.count("db-password") == 1
    for out in (done, listed):
        assert value not in out.stdout + out.stderr and newer not in out.stdout + out.stderr

    assert run_cli("secret", "rm", name, "db-password", check=True).returncode == 0
    gone = run_cli("secret", "get", name, "db-password")
    assert gone.returncode == 1 and "secret 'db-password' not found" in gone.stderr
    assert (
        run_cli("secret", "list", name, check=True).stdout.strip() == f"no secrets in stack {name}"
    )
    again = run_cli("secret", "rm", name, "db-password")
    assert again.returncode == 1 and "not found" in again.stderr
    # Deleted without a recovery window: the name is free again at once.
    run_cli("secret", "set", name, "db-password", input="third", check=True)
    assert run_cli("secret", "get", name, "db-password", "--show-secrets").stdout.strip() == "third"


def test_another_stacks_prefix_is_untouched(stack: StackOutputs, home: Path) -> None:
    # One stack id is a prefix of the other's: only the trailing slash tells them apart.
    other = _record(home, f"{stack.stack}x", f"{stack.stack_id}-two")
    mine, theirs = secrets_backend(stack), secrets_backend(other)
    mine.set("shared-name", "mine")
    theirs.set("shared-name", "theirs")
    theirs.set("only-theirs", "t")
    _boto().create_secret(Name=f"mlstack/{stack.stack_id}", SecretString="no slash")
    assert mine.names() == ["shared-name"]
    assert theirs.names() == ["only-theirs", "shared-name"]
    assert mine.delete("shared-name") and not mine.delete("only-theirs")
    assert theirs.get("shared-name") == "theirs" and mine.get("shared-name") is None
    assert run_cli("secret", "list", other.stack, check=True).stdout.split() == [
        "only-theirs",
        "shared-name",
    ]


def test_names_page_through_more_than_one_page(stack: StackOutputs) -> None:
    client = _boto()
    expected = sorted(f"key-{i:03d}" for i in range(130))
    for key in expected:
        client.create_secret(Name=f"{stack.secrets.prefix}{key}", SecretString="v")  # type: ignore[union-attr]
    first = client.list_secrets(Filters=[{"Key": "name", "Values": [stack.secrets.prefix]}])  # type: ignore[union-attr]
    assert "NextToken" in first  # really more than one page
    assert secrets_backend(stack).names() == expected


def test_the_metadata_token_and_get_secret_in_a_step(stack: StackOutputs) -> None:
    from runner import context
    from runner.errors import SecretNotFound

    backend = secrets_backend(stack)
    backend.set(stack.metadata.token_secret, "token-value-123")
    backend.set("api-key", "k-456")
    resolved = resolve_token(stack)
    assert resolved.metadata.token is not None
    assert resolved.metadata.token.get_secret_value() == "token-value-123"
    assert "token-value-123" not in repr(resolved) + str(resolved.public())

    ctx = context.StepContext(resolved, "run-1", "step-1", "train", "training")
    context._CURRENT.append(ctx)
    try:
        assert context.get_secret("api-key") == "k-456"
        with pytest.raises(SecretNotFound) as missing:
            context.get_secret("nope")
        assert f"mlstack secret set {stack.stack} nope" in str(missing.value)
    finally:
        context._CURRENT.remove(ctx)


def test_a_missing_token_and_a_bad_name_are_one_line(stack: StackOutputs) -> None:
    from stacks.common.errors import SecretsError

    with pytest.raises(SecretsError) as missing:
        resolve_token(stack)
    assert "metadata token" in str(missing.value) and "mlstack up" in str(missing.value)
    bad = run_cli("secret", "set", stack.stack, "no spaces allowed", input="v")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: secret name 'no spaces allowed' is invalid (use 1-128 of A-Z a-z 0-9 _ . -)"
    ]
    assert "Traceback" not in bad.stderr


def test_endpoint_override_per_service(
    stack: StackOutputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_SECRETS_MANAGER wins over AWS_ENDPOINT_URL (boto3 reads both)."""
    moto = __import__("os").environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto)
    secrets_backend(stack).set("via-service-endpoint", "x")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SECRETS_MANAGER")
    from runner.aws_errors import AwsUnreachable

    with pytest.raises(AwsUnreachable) as unreachable:
        secrets_backend(stack).names()
    assert "127.0.0.1:9" in str(unreachable.value)
    assert "AWS_ENDPOINT_URL" in str(unreachable.value)


def test_the_sweep_at_down_removes_user_secrets_by_their_tag(stack: StackOutputs) -> None:
    """`down` sweeps what still carries the stack-id tag after destroy: set secrets too."""
    from provisioner.sweep import sweep_aws

    backend = secrets_backend(stack)
    backend.set("db-password", "v1")
    swept = sweep_aws(stack.stack_id, REGION, delete=True, timeout=60)
    found = [r for r in swept.found if r.kind == "secretsmanager:secret"]
    assert [r.name.startswith(f"mlstack/{stack.stack_id}/db-password") for r in found] == [True]
    assert found[0].deleted and backend.names() == []
    backend.set("db-password", "v2")  # an `up` again may reuse the name at once
    assert backend.get("db-password") == "v2"
