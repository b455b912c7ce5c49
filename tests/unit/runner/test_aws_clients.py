"""runner.aws_clients: endpoint overrides read by boto3 itself, region given, clients cached."""

from __future__ import annotations

import pytest

from runner.aws_clients import aws_client, clear_clients


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    clear_clients()


def test_region_is_the_one_given() -> None:
    assert aws_client("ecr", "ap-south-1").meta.region_name == "ap-south-1"
    assert "ap-south-1" in aws_client("ecr", "ap-south-1").meta.endpoint_url


def test_the_global_and_the_per_service_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert aws_client("batch", "eu-west-1").meta.endpoint_url == "http://127.0.0.1:4566"
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:5000")
    assert aws_client("ecr", "eu-west-1").meta.endpoint_url == "http://127.0.0.1:5000"
    assert aws_client("batch", "eu-west-1").meta.endpoint_url == "http://127.0.0.1:4566"


def test_clients_are_cached_until_the_environment_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    first = aws_client("logs", "eu-west-1")
    assert aws_client("logs", "eu-west-1") is first
    assert aws_client("logs", "us-east-1") is not first
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:9")
    moved = aws_client("logs", "eu-west-1")
    assert moved is not first and moved.meta.endpoint_url == "http://127.0.0.1:9"
