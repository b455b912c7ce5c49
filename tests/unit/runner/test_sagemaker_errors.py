"""How the SageMaker deployer words AWS's refusals: one line, the action, the role.

AccessDenied is also tested end to end on an IAM-enforcing moto server
(tests/unit/aws/test_sagemaker_deployer_moto.py). moto does not check execution roles, so the
missing-role answer is SageMaker's own error shape, fed through the one translation point.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from runner.deploy import DeployError
from runner.deploy_sagemaker import SageMakerDeployer
from stacks.outputs import StackOutputs
from tests.conftest import aws_outputs_data

ROLE = "arn:aws:iam::123456789012:role/mlstack-demo-0001-sagemaker"


@pytest.fixture
def deployer() -> SageMakerDeployer:
    data = aws_outputs_data(
        deployer={"kind": "sagemaker", "role_arn": ROLE, "instance_type": "ml.t3.medium"}
    )
    return SageMakerDeployer(StackOutputs.model_validate(data))


def _error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_a_missing_execution_role_names_the_role(deployer: SageMakerDeployer) -> None:
    message = (
        f"Could not assume role {ROLE}. Please ensure that the role exists and allows"
        " principal 'sagemaker.amazonaws.com' to assume the role."
    )
    with pytest.raises(DeployError) as caught, deployer._aws("sagemaker:CreateModel"):
        raise _error("ValidationException", message, "CreateModel")
    error = caught.value
    assert str(error).count("\n") == 0
    assert error.headline.startswith(f"SageMaker cannot use execution role {ROLE}")
    assert "sagemaker.amazonaws.com" in error.hint


def test_access_denied_names_the_denied_action_and_the_assumed_role(
    deployer: SageMakerDeployer,
) -> None:
    who = "arn:aws:sts::123456789012:assumed-role/mlstack-demo-0001-job/batch-step"
    message = f"User: {who} is not authorized to perform: iam:PassRole on resource: {ROLE}"
    with pytest.raises(DeployError) as caught, deployer._aws("sagemaker:CreateModel"):
        raise _error("AccessDeniedException", message, "CreateModel")
    assert caught.value.headline == f"AWS denied iam:PassRole (for sagemaker:CreateModel) to {who}"
    assert caught.value.hint.startswith("allow iam:PassRole for that role")
    assert "\n" not in str(caught.value)


def test_other_errors_keep_code_and_message_on_one_line(deployer: SageMakerDeployer) -> None:
    with pytest.raises(DeployError) as caught, deployer._aws("sagemaker:CreateEndpoint"):
        raise _error("ResourceLimitExceeded", "The account-level service limit", "CreateEndpoint")
    assert caught.value.headline == (
        "sagemaker:CreateEndpoint failed: ResourceLimitExceeded: The account-level service limit"
    )


def test_no_credentials_is_one_line_with_the_fix(
    deployer: SageMakerDeployer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real boto3 call with an empty credential chain (no network is reached)."""
    from runner.aws_errors import AwsCredentialsError

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(key, "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    with pytest.raises(AwsCredentialsError) as caught:
        deployer.invoke("ridge", b"{}")
    assert caught.value.headline.startswith("no AWS credentials for sagemaker")
    assert "AWS_PROFILE" in caught.value.hint and "\n" not in str(caught.value)
