"""Where a pipeline's image goes, per registry kind: one repository per pipeline, or ECR's one."""

from __future__ import annotations

import re

import pytest

from runner.packaging import ImageError, image_location
from runner.registry_auth import MAX_TAG
from runner.serving_image import serving_ref, split_ref
from stacks.outputs import StackOutputs
from tests.conftest import aws_outputs_data, local_outputs_data

HASH = "0123456789abcdef0123"
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # the distribution spec's tag grammar
ECR = "123.dkr.ecr.eu-west-1.amazonaws.com/mlstack-demo-0001"


def _ref(outputs: StackOutputs, pipeline: str) -> str:
    registry, repository, tag = image_location(outputs, pipeline, HASH)
    return f"{registry}/{repository}:{tag}"


@pytest.mark.parametrize("kind", ["local", "kubernetes"])
def test_registries_of_many_repositories_keep_one_per_pipeline(kind: str) -> None:
    registry = {"kind": kind, "url": "http://127.0.0.1:5123"}
    outputs = StackOutputs.model_validate(local_outputs_data(container_registry=registry))
    assert _ref(outputs, "Train_Model") == f"127.0.0.1:5123/mlstack/train-model:{HASH}"


def test_ecr_images_go_to_the_stacks_one_repository_with_the_pipeline_in_the_tag() -> None:
    outputs = StackOutputs.model_validate(
        aws_outputs_data(container_registry={"kind": "ecr", "url": ECR})
    )
    assert image_location(outputs, "Train_Model", HASH) == (
        "123.dkr.ecr.eu-west-1.amazonaws.com",
        "mlstack-demo-0001",
        f"train-model-{HASH}",
    )
    assert _ref(outputs, "Train_Model") == f"{ECR}:train-model-{HASH}"
    # The serving image derives its tag: still the stack's repository.
    served = serving_ref(_ref(outputs, "Train_Model"))
    assert served.startswith(f"{ECR}:train-model-{HASH}-sagemaker")
    assert split_ref(served)[1] == "mlstack-demo-0001"


@pytest.mark.parametrize("name", ["x" * 300, "___", "a-" * 80, "Ünïcode pipeline 42"])
def test_ecr_tags_stay_valid_and_short_for_any_pipeline_name(name: str) -> None:
    outputs = StackOutputs.model_validate(
        aws_outputs_data(container_registry={"kind": "ecr", "url": ECR})
    )
    _, repository, tag = image_location(outputs, name, HASH)
    assert repository == "mlstack-demo-0001"
    served_tag = split_ref(serving_ref(f"{ECR}:{tag}"))[2]
    for candidate in (tag, served_tag):
        assert TAG.fullmatch(candidate) and len(candidate) <= MAX_TAG
        assert candidate.endswith(HASH) or HASH in candidate


def test_a_stack_without_a_registry_is_one_clear_error() -> None:
    outputs = StackOutputs.model_validate(local_outputs_data())
    with pytest.raises(ImageError, match="no container registry"):
        image_location(outputs, "train", HASH)
