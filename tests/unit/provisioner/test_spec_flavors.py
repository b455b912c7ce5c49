"""Per-flavor specs: a setting of another flavor or provider is an error naming the flavor.

Checked twice: by the parser (one line naming the field, the flavor and its settings) and by
the JSON Schema ``mlstack schema`` prints (validated with the ``jsonschema`` package), so an
editor rejects what ``mlstack validate`` rejects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stacks.common.errors import SpecError
from stacks.spec.parse import parse_spec_data

MLSTACK = str(Path(sys.executable).parent / "mlstack")
AWS: dict[str, Any] = {"name": "demo", "provider": "aws", "region": "eu-west-1"}
K8S: dict[str, Any] = {
    "name": "demo",
    "provider": "kubernetes",
    "kubernetes": {"kubeconfig": "~/.kube/config", "context": "kind-dev"},
}
LOCAL: dict[str, Any] = {"name": "demo"}


def spec(base: dict[str, Any], component: str, value: Any) -> dict[str, Any]:
    return {**base, "components": {component: value}}


# (spec, the error line's expected text): each a setting that belongs to another flavor.
CROSS_FLAVOR = [
    pytest.param(
        spec(LOCAL, "tracker", {"cpu": 1}),
        "components.tracker.cpu: not a setting of the mlflow tracker on a local stack"
        " (settings: port)",
        id="local-tracker-cpu",
    ),
    pytest.param(
        spec(LOCAL, "tracker", {"db_instance_class": "db.t4g.micro"}),
        "components.tracker.db_instance_class: not a setting of the mlflow tracker on a local"
        " stack (settings: port)",
        id="local-tracker-db-instance-class",
    ),
    pytest.param(
        spec(LOCAL, "orchestrator", {"max_vcpus": 4}),
        "components.orchestrator.max_vcpus: not a setting of the local orchestrator on a local"
        " stack (settings: max_parallel)",
        id="local-orchestrator-max-vcpus",
    ),
    pytest.param(
        spec(LOCAL, "orchestrator", {"flavor": "local", "base_image": "x"}),
        "components.orchestrator.base_image: not a setting of the local orchestrator",
        id="local-orchestrator-base-image",
    ),
    pytest.param(
        spec(LOCAL, "orchestrator", {"flavor": "docker", "max_vcpus": 4}),
        "components.orchestrator.max_vcpus: not a setting of the docker orchestrator on a local"
        " stack (settings: max_parallel, base_image)",
        id="docker-orchestrator-max-vcpus",
    ),
    pytest.param(
        spec(LOCAL, "artifact_store", {"versioning": True}),
        "components.artifact_store.versioning: not a setting of the local artifact store on a"
        " local stack (settings: path)",
        id="local-artifact-store-versioning",
    ),
    pytest.param(
        spec(LOCAL, "artifact_store", {"bucket": "my-bucket"}),
        "components.artifact_store.bucket: not a setting of the local artifact store",
        id="local-artifact-store-bucket",
    ),
    pytest.param(
        spec(LOCAL, "artifact_store", {"flavor": "s3", "bucket": "my-bucket", "path": "/x"}),
        "components.artifact_store.path: not a setting of the s3 artifact store on a local stack",
        id="s3-artifact-store-path",
    ),
    pytest.param(
        spec(LOCAL, "deployer", {"instance_type": "ml.m5.large"}),
        "components.deployer.instance_type: not a setting of the local deployer on a local stack",
        id="local-deployer-instance-type",
    ),
    pytest.param(
        spec(LOCAL, "container_registry", {"flavor": "local", "scan_on_push": True}),
        "components.container_registry.scan_on_push: not a setting of the local container"
        " registry on a local stack (settings: port)",
        id="local-registry-scan-on-push",
    ),
    pytest.param(
        spec(LOCAL, "metadata", {"cpu": 1}),
        "components.metadata.cpu: not a setting of the mlstack metadata server on a local stack",
        id="local-metadata-cpu",
    ),
    pytest.param(
        spec(AWS, "tracker", {"port": 5000}),
        "components.tracker.port: not a setting of the mlflow tracker on an aws stack"
        " (settings: db_instance_class, cpu, memory_gib)",
        id="aws-tracker-port",
    ),
    pytest.param(
        spec(AWS, "artifact_store", {"path": "/data"}),
        "components.artifact_store.path: not a setting of the s3 artifact store on an aws stack"
        " (settings: versioning)",
        id="aws-artifact-store-path",
    ),
    pytest.param(
        spec(K8S, "tracker", {"db_instance_class": "db.t4g.micro"}),
        "components.tracker.db_instance_class: not a setting of the mlflow tracker on a"
        " kubernetes stack (settings: cpu, memory_gib, image)",
        id="kubernetes-tracker-db-instance-class",
    ),
    pytest.param(
        spec(K8S, "artifact_store", {"versioning": True}),
        "components.artifact_store.versioning: not a setting of the minio artifact store on a"
        " kubernetes stack (settings: size_gib)",
        id="kubernetes-minio-versioning",
    ),
    pytest.param(
        spec(K8S, "orchestrator", {"max_vcpus": 3}),
        "components.orchestrator.max_vcpus: not a setting of the kubernetes orchestrator",
        id="kubernetes-orchestrator-max-vcpus",
    ),
]


@pytest.mark.parametrize(("data", "expected"), CROSS_FLAVOR)
def test_a_setting_of_another_flavor_is_an_error_naming_the_flavor(
    data: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_data(data, source="stack.yaml")

    assert str(info.value).startswith(f"stack.yaml: {expected}")


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> jsonschema.Draft202012Validator:
    """A validator for the schema the real ``mlstack schema`` command prints."""
    home = tmp_path_factory.mktemp("home")
    proc = subprocess.run(
        [MLSTACK, "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, MLSTACK_HOME=str(home)),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(("data", "expected"), CROSS_FLAVOR)
def test_the_json_schema_rejects_a_setting_of_another_flavor(
    validator: jsonschema.Draft202012Validator, data: dict[str, Any], expected: str
) -> None:
    assert not validator.is_valid(data), f"schema accepted {data}"


@pytest.mark.parametrize(
    "data",
    [
        spec(LOCAL, "tracker", {"port": 5000}),
        {**LOCAL, "components": {"orchestrator": "docker", "container_registry": "local"}},
        {
            **LOCAL,
            "components": {
                "orchestrator": {"flavor": "docker", "base_image": "mlstack/base:bookworm"},
                "container_registry": {"flavor": "local", "port": 5999},
            },
        },
        spec(LOCAL, "artifact_store", {"flavor": "s3", "bucket": "my-bucket", "prefix": "runs"}),
        spec(AWS, "tracker", {"cpu": 1, "memory_gib": 2, "db_instance_class": "db.t4g.micro"}),
        spec(AWS, "orchestrator", {"max_vcpus": 8}),
        spec(K8S, "artifact_store", {"size_gib": 20}),
    ],
    ids=lambda d: "-".join([d.get("provider", "local"), *d["components"]]),
)
def test_the_json_schema_and_the_parser_accept_each_flavors_own_settings(
    validator: jsonschema.Draft202012Validator, data: dict[str, Any]
) -> None:
    assert validator.is_valid(data), list(validator.iter_errors(data))
    parse_spec_data(data, source="stack.yaml")
