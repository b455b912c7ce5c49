"""The SageMaker deployer against a real moto server, a real metadata server and real MLflow.

moto's SageMaker is API-only (endpoints are InService at once, InvokeEndpoint answers canned
data) and has no UpdateEndpoint: a redeploy there takes the deployer's recreate path under
the same name. The serving container itself is tested in
tests/integration/test_sagemaker_serving.py.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runner.deploy import DeployError
from runner.deploy_sagemaker import SageMakerDeployer
from runner.deployers import deployer_for
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, start_server
from runner.serving_image import serving_ref
from stacks.common.aws_naming import physical_name
from stacks.common.tags import STACK_ID_TAG, stack_tags
from stacks.outputs import StackOutputs
from tests.conftest import MOTO_SERVER, aws_outputs_data

pytestmark = pytest.mark.services

REGION = "us-east-1"
TOKEN = f"mlstack-test-token-{uuid.uuid4().hex}"
IMAGE = "127.0.0.1:5000/mlstack/training:0123456789abcdef0123"
MODEL = "diabetes_ridge"
ROLE = "arn:aws:iam::123456789012:role/mlstack-sm-test"
KINDS = ("sagemaker:model", "sagemaker:endpoint-config", "sagemaker:endpoint")


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("sm-metadata")
    server = start_server(f"sqlite:///{folder / 'm.db'}", TOKEN, log_path=folder / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An MLflow model registry (sqlite store) holding two versions of a small sklearn model."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import Ridge

    folder = tmp_path_factory.mktemp("sm-mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("sm", artifact_location=(folder / "art").as_uri())
    x = np.arange(40, dtype=float).reshape(20, 2)
    for alpha in (1.0, 2.0):
        with mlflow.start_run(experiment_id=experiment):
            model = Ridge(alpha=alpha).fit(x, x @ [1.5, -2.0] + 3)
            mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL)
    return uri


@pytest.fixture
def outputs(aws_env: str, metadata: ServerProcess, registry: str) -> StackOutputs:
    """A fresh stack id, its bucket in moto, and the outputs of an aws stack using SageMaker."""
    stack = f"sm{uuid.uuid4().hex[:6]}"
    stack_id = f"{stack}-{uuid.uuid4().hex[:8]}"
    bucket = f"mlstack-{stack_id}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
    tags = stack_tags(name=stack, stack_id=stack_id, owner="tester", extra={"team": "ml"})
    data = aws_outputs_data(
        stack,
        stack_id=stack_id,
        region=REGION,
        tags=tags,
        artifact_store={"kind": "s3", "uri": f"s3://{bucket}/mlstack"},
        tracker={"kind": "mlflow", "uri": registry},
        deployer={"kind": "sagemaker", "role_arn": ROLE, "instance_type": "ml.m5.large"},
        metadata={"url": metadata.url, "token": TOKEN},
    )
    return StackOutputs.model_validate(data)


def _client(outputs: StackOutputs) -> MetadataClient:
    token = outputs.metadata.token
    assert token is not None
    return MetadataClient(outputs.metadata.url, token.get_secret_value())


def _sm() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def _tags(arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in _sm().list_tags(ResourceArn=arn)["Tags"]}


def _gone(call: Any) -> bool:
    try:
        call()
    except ClientError as exc:
        return "could not find" in exc.response["Error"]["Message"].lower()
    return False


def test_deploy_creates_tagged_model_config_endpoint_recorded_as_runtime_resources(
    outputs: StackOutputs, aws_env: str, tmp_path: Path
) -> None:
    from provisioner.sweep.aws_find import Clients, find

    deployer = deployer_for(outputs)
    assert isinstance(deployer, SageMakerDeployer)
    started = time.monotonic()
    dep = deployer.deploy(model_name=MODEL, version="1", name="ridge", run_id=None, image=IMAGE)
    print(f"\ndeploy against moto: {time.monotonic() - started:.2f}s")
    endpoint = physical_name(outputs.stack_id, "ridge")
    assert dep.endpoint_url == f"{aws_env}/endpoints/{endpoint}"
    sm = _sm()
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large"
    model = sm.describe_model(ModelName=variant["ModelName"])
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == serving_ref(IMAGE)
    assert serving_ref(IMAGE) == f"{IMAGE}-sagemaker1"
    # The model data is the registered version's files, at the root of model.tar.gz.
    url = model["PrimaryContainer"]["ModelDataUrl"]
    bucket, _, key = url.removeprefix("s3://").partition("/")
    assert key.startswith("mlstack/sagemaker/ridge/") and key.endswith("/model.tar.gz")
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read()), mode="r:gz") as tar:
        assert "MLmodel" in tar.getnames()
        tar.extractall(tmp_path / "model", filter="data")
    import mlflow.pyfunc
    import numpy as np

    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    packed = mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(x)
    registered = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(x)
    assert list(packed) == list(registered)
    # Every resource carries the stack's tags (the drain finds runtime resources by them).
    arns = {
        "sagemaker:model": model["ModelArn"],
        "sagemaker:endpoint-config": config["EndpointConfigArn"],
        "sagemaker:endpoint": described["EndpointArn"],
    }
    for arn in arns.values():
        tags = _tags(arn)
        assert {k: tags[k] for k in outputs.tags} == outputs.tags
        assert tags[STACK_ID_TAG] == outputs.stack_id and tags["mlstack:deployment"] == "ridge"
    # ...and each is recorded on the deployment, with its ARN.
    with _client(outputs) as client:
        record = client.get_deployment(dep.id)
    assert record.status.value == "running"
    assert record.details["instance_type"] == "ml.m5.large"
    recorded = {r["kind"]: r for r in record.details["resources"]}
    assert set(recorded) == set(KINDS)
    assert {k: r["arn"] for k, r in recorded.items()} == arns
    assert all(r["state"] == "created" for r in recorded.values())
    assert record.details["model_data"] == url
    found = {r.arn: r.kind for r in find(Clients(REGION), outputs.stack_id)}
    assert {arn: found.get(arn) for arn in arns.values()} == {v: k for k, v in arns.items()}
    # InvokeEndpoint through sagemaker-runtime (moto answers canned data) and the live status.
    assert deployer.invoke("ridge", json.dumps({"inputs": [[1.0, 2.0]]})) == b"body"
    assert deployer.describe(record) == "InService"
    with _client(outputs) as client:
        deployer.undeploy(client, client.get_deployment(dep.id))


def test_redeploy_keeps_the_name_and_moves_to_the_new_config(outputs: StackOutputs) -> None:
    deployer = deployer_for(outputs)
    first = deployer.deploy(model_name=MODEL, version="1", name="ridge", run_id=None, image=IMAGE)
    endpoint = physical_name(outputs.stack_id, "ridge")
    sm = _sm()
    old_config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    old_model = sm.describe_endpoint_config(EndpointConfigName=old_config)[
        "ProductionVariants"][0]["ModelName"]  # fmt: skip
    second = deployer.deploy(model_name=MODEL, version="2", name="ridge", run_id=None, image=IMAGE)
    assert second.endpoint_url == first.endpoint_url and second.id != first.id
    now = sm.describe_endpoint(EndpointName=endpoint)
    assert now["EndpointStatus"] == "InService"
    assert now["EndpointConfigName"] != old_config
    new_model = sm.describe_endpoint_config(EndpointConfigName=now["EndpointConfigName"])[
        "ProductionVariants"][0]["ModelName"]  # fmt: skip
    assert "/ridge/" in sm.describe_model(ModelName=new_model)["PrimaryContainer"]["ModelDataUrl"]
    assert _tags(now["EndpointArn"])[STACK_ID_TAG] == outputs.stack_id
    # The replaced config and model are gone; the replaced deployment is stopped.
    assert _gone(lambda: sm.describe_endpoint_config(EndpointConfigName=old_config))
    assert _gone(lambda: sm.describe_model(ModelName=old_model))
    with _client(outputs) as client:
        records = {d.id: d for d in client.list_deployments(stack=outputs.stack)}
        assert records[first.id].status.value == "stopped"
        assert records[second.id].status.value == "running"
        assert records[second.id].model_version == "2"
        deployer.undeploy(client, records[second.id])


def test_undeploy_removes_endpoint_config_and_model(outputs: StackOutputs) -> None:
    from provisioner.sweep.aws_find import Clients, find
    from runner.deploy import find as find_deployment

    deployer = deployer_for(outputs)
    dep = deployer.deploy(model_name=MODEL, version="1", name="ridge", run_id=None, image=IMAGE)
    with _client(outputs) as client:
        record = find_deployment(client, outputs.stack, "ridge")  # as `mlstack undeploy` does
        assert record.id == dep.id
        live = client.list_resources(stack=outputs.stack, live=True)  # recorded for the drain
        assert sorted(r.kind for r in live) == sorted(KINDS) and all(r.arn for r in live)
        deployer.undeploy(client, record)
        after = client.get_deployment(dep.id)
        assert client.list_resources(stack=outputs.stack, live=True) == []  # marked deleted
    assert after.status.value == "stopped"
    assert {r["state"] for r in after.details["resources"]} == {"deleted"}
    sm = _sm()
    names = {r["kind"]: r["name"] for r in after.details["resources"]}
    assert _gone(lambda: sm.describe_endpoint(EndpointName=names["sagemaker:endpoint"]))
    assert _gone(
        lambda: sm.describe_endpoint_config(EndpointConfigName=names["sagemaker:endpoint-config"])
    )
    assert _gone(lambda: sm.describe_model(ModelName=names["sagemaker:model"]))
    assert [r for r in find(Clients(REGION), outputs.stack_id) if r.kind in KINDS] == []


def test_down_drains_what_a_deploy_created(outputs: StackOutputs) -> None:
    """What ``down`` runs before destroy finds the deploy's resources by tag and removes them."""
    from provisioner.sweep import drain_aws

    deployer_for(outputs).deploy(
        model_name=MODEL, version="1", name="ridge", run_id=None, image=IMAGE
    )
    result = drain_aws(outputs.stack_id, REGION, timeout=60)
    assert result.complete, result.remaining
    assert sorted(r.kind for r in result.drained) == sorted(KINDS)
    assert result.drained[0].kind == "sagemaker:endpoint"


# -- AccessDenied: a second moto server that enforces IAM ------------------------------------


@pytest.fixture
def denied_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata: ServerProcess, registry: str
) -> Iterator[tuple[StackOutputs, str]]:
    """moto with IAM enforced: a role allowed S3 but not sagemaker:CreateModel, assumed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "moto.log", "wb")  # noqa: SIM115 - closed in finally
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "6", "NO_PROXY": "127.0.0.1"}
    server = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )  # fmt: skip
    try:
        _wait_http(f"{url}/moto-api/", server)
        for key, value in {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "NO_PROXY": "127.0.0.1,localhost",
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        iam = boto3.session.Session(region_name=REGION).client("iam")
        trust = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
        role = iam.create_role(
            RoleName="mlstack-job", AssumeRolePolicyDocument=json.dumps(_doc(trust))
        )["Role"]["Arn"]  # fmt: skip
        allowed = {"Effect": "Allow", "Action": ["s3:*", "sagemaker:Describe*"], "Resource": "*"}
        iam.put_role_policy(
            RoleName="mlstack-job", PolicyName="p", PolicyDocument=json.dumps(_doc(allowed))
        )
        iam.create_user(UserName="driver")
        key = iam.create_access_key(UserName="driver")["AccessKey"]
        assume = {"Effect": "Allow", "Action": ["sts:AssumeRole", "s3:*"], "Resource": "*"}
        iam.put_user_policy(
            UserName="driver", PolicyName="p", PolicyDocument=json.dumps(_doc(assume))
        )  # the sixth unauthenticated call: everything from here is checked
        user = boto3.session.Session(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
        )
        creds = user.client("sts", region_name=REGION).assume_role(
            RoleArn=role, RoleSessionName="step"
        )["Credentials"]  # fmt: skip
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
        stack_id = f"smdeny-{uuid.uuid4().hex[:8]}"
        # A new session: boto3's default one keeps the credentials it resolved first.
        s3 = boto3.session.Session(region_name=REGION).client("s3")
        s3.create_bucket(Bucket=f"mlstack-{stack_id}")
        data = aws_outputs_data(
            "smdeny",
            stack_id=stack_id,
            region=REGION,
            artifact_store={"kind": "s3", "uri": f"s3://mlstack-{stack_id}/mlstack"},
            tracker={"kind": "mlflow", "uri": registry},
            deployer={"kind": "sagemaker", "role_arn": ROLE, "instance_type": "ml.m5.large"},
            metadata={"url": metadata.url, "token": TOKEN},
        )
        yield StackOutputs.model_validate(data), role
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def _doc(statement: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [statement]}


def _wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "moto_server exited"
        try:
            with opener.open(url, timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.1)


def test_access_denied_is_one_line_naming_the_action_and_the_role(
    denied_env: tuple[StackOutputs, str],
) -> None:
    outputs, role = denied_env
    with pytest.raises(DeployError) as caught:
        deployer_for(outputs).deploy(
            model_name=MODEL, version="1", name="ridge", run_id=None, image=IMAGE
        )
    text = str(caught.value)
    assert "\n" not in text and "Traceback" not in text
    assert "sagemaker:CreateModel" in caught.value.headline
    assert "assumed-role/mlstack-job/step" in caught.value.headline
    assert role.split("/")[-1] in caught.value.headline
    with _client(outputs) as client:  # the reserved deployment is marked failed
        (record,) = client.list_deployments(stack=outputs.stack)
    assert record.status.value == "failed"
    assert [r["state"] for r in record.details["resources"]] == ["creating"]


def test_deploy_without_the_pipeline_image_is_one_clear_error(outputs: StackOutputs) -> None:
    with pytest.raises(DeployError, match="needs the image of the pipeline"):
        deployer_for(outputs).deploy(model_name=MODEL, version="1", name="x", run_id=None)
    with _client(outputs) as client:  # refused before anything was reserved or created
        assert client.list_deployments(stack=outputs.stack) == []


def test_cli_deployments_shows_the_endpoint_and_undeploy_removes_all_three(
    outputs: StackOutputs, aws_env: str, home: Path, tmp_path: Path
) -> None:
    """``mlstack deployments --stack`` and ``mlstack undeploy NAME`` on a recorded aws stack
    (its secrets in a local store here: the Secrets Manager backend is tested on its own)."""
    from provisioner.state import StackRecord, StateRegistry
    from stacks.common.fernet import FernetStore
    from stacks.outputs import LocalSecretsOutputs
    from tests.conftest import run_cli

    store = FernetStore.create(tmp_path / "secrets.enc", tmp_path / "secrets.key")
    token = outputs.metadata.token
    assert token is not None
    store.set(outputs.metadata.token_secret, token.get_secret_value())
    secrets = LocalSecretsOutputs(path=str(store.path), key_file=str(tmp_path / "secrets.key"))
    public = outputs.model_copy(update={"secrets": secrets}).public()
    spec = {"name": outputs.stack, "provider": "aws", "region": REGION}
    StateRegistry(home).save(
        StackRecord(
            name=outputs.stack,
            stack_id=outputs.stack_id,
            provider="aws",
            status="up",
            spec=spec,
            spec_hash="x",
            outputs=public,
        )
    )
    dep = deployer_for(outputs).deploy(
        model_name=MODEL, version="1", name="ridge", run_id=None, image=IMAGE
    )
    endpoint = physical_name(outputs.stack_id, "ridge")
    shown = run_cli("deployments", "--stack", outputs.stack, check=True).stdout
    assert f"{dep.id[:12]}  ridge  {MODEL} v1  running (InService)" in shown
    assert f"{aws_env}/endpoints/{endpoint}/invocations" in shown
    assert token.get_secret_value() not in shown
    gone = run_cli("undeploy", "ridge", "--stack", outputs.stack, check=True)
    assert gone.stdout.strip() == f"deployment ridge ({dep.id[:12]}) stopped"
    sm = _sm()
    assert _gone(lambda: sm.describe_endpoint(EndpointName=endpoint))
    with _client(outputs) as client:
        names = {r["kind"]: r["name"] for r in client.get_deployment(dep.id).details["resources"]}
    assert _gone(
        lambda: sm.describe_endpoint_config(EndpointConfigName=names["sagemaker:endpoint-config"])
    )
    assert _gone(lambda: sm.describe_model(ModelName=names["sagemaker:model"]))
    assert run_cli("deployments", "--stack", outputs.stack).stdout.strip() == (
        f"no deployments on stack {outputs.stack}"
    )


def test_a_new_endpoint_gets_a_delete_schedule_at_the_stack_expiry(outputs: StackOutputs) -> None:
    from stacks.common.aws_expiry_targets import endpoint_schedule_name
    from stacks.common.aws_naming import expiry_group, expiry_role_name
    from stacks.common.tags import EXPIRES_TAG

    expiring = outputs.model_copy(
        update={"tags": {**outputs.tags, EXPIRES_TAG: "2030-01-02T03:04:05Z"}}
    )
    trust = {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"},
             "Action": "sts:AssumeRole"}  # fmt: skip
    boto3.client("iam", region_name=REGION).create_role(
        RoleName=expiry_role_name(outputs.stack_id),
        AssumeRolePolicyDocument=json.dumps(_doc(trust)),
    )  # what `up` creates for a stack with a ttl
    deployer = deployer_for(expiring)
    dep = deployer.deploy(model_name=MODEL, version="1", name="ridge", run_id=None, image=IMAGE)
    endpoint = physical_name(outputs.stack_id, "ridge")
    scheduler = boto3.client("scheduler", region_name=REGION)
    where = {
        "Name": endpoint_schedule_name(outputs.stack_id, endpoint),
        "GroupName": expiry_group(outputs.stack_id),
    }
    schedule = scheduler.get_schedule(**where)
    assert schedule["ScheduleExpression"] == "at(2030-01-02T03:04:05)"
    assert json.loads(schedule["Target"]["Input"]) == {"EndpointName": endpoint}
    with _client(outputs) as client:
        assert client.get_deployment(dep.id).details["expiry_schedule"] == schedule["Arn"]
        deployer.undeploy(client, client.get_deployment(dep.id))
    with pytest.raises(ClientError, match="ResourceNotFound"):
        scheduler.get_schedule(**where)
