"""The example training pipeline on an AWS stack on moto: every step a Batch job, the deploy
step (in its job's container) creates the SageMaker model, endpoint config and endpoint.

The stack is the AWS program's on moto (tests/aws_stack.py) with a SageMaker deployer and a
real local MLflow (tracker + model registry) reachable from the jobs on the host network. The
driver builds the pipeline image and, because the deployer is SageMaker, its serving image.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from runner.deployers import deployer_for
from runner.driver import run
from runner.loader import load_pipeline
from runner.metadata.client import MetadataClient
from runner.serving_image import serving_ref, split_ref
from stacks.common.aws_naming import physical_name
from stacks.common.tags import STACK_ID_TAG
from stacks.outputs import MlflowTrackerOutputs, SageMakerDeployerOutputs, StackOutputs
from tests.aws_stack import REGION, batch_harness

pytestmark = [pytest.mark.docker, pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "pipelines" / "train.py"
BASE = os.environ.get("MLSTACK_TEST_BASE_IMAGE", "mlstack/base:bookworm")
LOCAL = "it-sm-local"
LOCAL_SPEC = (
    f"name: {LOCAL}\nprovider: local\ncomponents:\n  container_registry: local\n"
    "  tracker: mlflow\n  deployer: none\n"
)


@pytest.fixture(scope="module")
def outputs(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackOutputs]:
    home = tmp_path_factory.mktemp("sm-e2e-home")
    with batch_harness(moto_server, home, LOCAL, LOCAL_SPEC, BASE) as (local, batch):
        role = batch.outputs.orchestrator.job_role_arn  # type: ignore[union-attr]
        yield batch.outputs.model_copy(
            update={
                "tracker": MlflowTrackerOutputs(uri=local["outputs"]["tracker"]["uri"]),
                "deployer": SageMakerDeployerOutputs(role_arn=role, instance_type="ml.m5.large"),
            }
        )


@pytest.mark.timeout(1500)  # the example's image (pandas, pyarrow, scikit-learn) is large
def test_example_pipeline_deploys_a_tagged_sagemaker_endpoint_from_a_batch_job(
    outputs: StackOutputs,
) -> None:
    result = run(load_pipeline(f"{TRAIN}:training"), outputs, no_cache=True)
    assert result.status == "completed", {n: (s.error, s.log_tail) for n, s in result.steps.items()}
    endpoint = physical_name(outputs.stack_id, "diabetes-ridge")
    sm = boto3.session.Session(region_name=REGION).client("sagemaker")
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"
    tags = {
        t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=described["EndpointArn"])["Tags"]
    }
    assert tags[STACK_ID_TAG] == outputs.stack_id
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    image = model["PrimaryContainer"]["Image"]
    # The serving image of the run's pipeline image, built by the driver and pushed.
    token = outputs.metadata.token.get_secret_value()  # type: ignore[union-attr]
    with MetadataClient(outputs.metadata.url, token) as client:
        deploy_step = next(s for s in client.list_steps(result.run_id) if s.name == "deploy")
        assert image == serving_ref(deploy_step.spec["image"])
        (dep,) = [d for d in client.list_deployments(stack=outputs.stack) if d.status == "running"]
        assert dep.run_id == result.run_id
        assert {r["kind"] for r in dep.details["resources"]} == {
            "sagemaker:model", "sagemaker:endpoint-config", "sagemaker:endpoint",
        }  # fmt: skip
        assert dep.details["model_data"].startswith(f"s3://{outputs.artifact_store.uri[5:]}")
        registry, repository, tag = split_ref(image)
        listed = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{registry}/v2/{repository}/tags/list", timeout=5
        )
        assert tag in json.load(listed)["tags"]
        assert dep.endpoint_url and dep.endpoint_url.endswith(f"/endpoints/{endpoint}")
        deployer_for(outputs).undeploy(client, dep)
    with pytest.raises(sm.exceptions.ClientError):
        sm.describe_endpoint(EndpointName=endpoint)
