"""An AWS stack in moto server, made from the AWS program itself, for the runner's e2e tests.

:func:`program_resources` runs ``stacks.aws.program`` under Pulumi's mocks (the same run that
``mlstack plan`` makes), so names, tags and outputs come from the program and cannot drift
from it. :func:`create_in_moto` creates what a run touches — the bucket, the ECR repository,
the job log group, the Batch roles, the compute environment and job queue, and the stack's
secrets (with their values) — on a real moto server, tagged as the program tags them.

:func:`aws_batch_stack` hands the runner the resulting StackOutputs: the program's, with a
local registry standing in for ECR's registry endpoint (moto's ECR is API only: the push
token still comes from its ``GetAuthorizationToken``) and the metadata server of a real local
stack. moto's Batch runs each job's container on the local
Docker Engine with host networking (``MOTO_DOCKER_NETWORK_MODE=host``, set by the
``moto_server`` fixture) and injects only ``MOTO_HOST``/``MOTO_PORT`` and
``AWS_BATCH_JOB_ID``: no credentials. On Fargate the ECS agent serves the job role's
credentials at a local URL; here :class:`RoleCredentialsEndpoint` plays that part (STS
``AssumeRole`` of the job role on moto), and the runner hands the job its URL
(``$MLSTACK_BATCH_CREDENTIALS_URI``), never a credential.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

from stacks.outputs import StackOutputs

REGION = "us-east-1"
PROGRAM = "stacks.aws.program"


@dataclass
class ProgramStack:
    """What the AWS program declares for one stack id (under Pulumi's mocks)."""

    stack_id: str
    tags: dict[str, str]
    outputs: dict[str, Any]
    resources: list[Any] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Any]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str) -> Any:
        return next(r for r in self.of_type(type_) if r.name == name)

    def tags_of(self, res: Any) -> dict[str, str]:
        """The provider's default tags (the stack's identity) plus the resource's own."""
        return {**self.tags, **(res.inputs.get("tags") or {})}


def program_resources(
    stack_id: str, token: str, base_image: str, name: str = "awsbatch"
) -> ProgramStack:
    """Run the AWS program for an AWS Batch stack (no tracker, no deployer) under mocks."""
    from provisioner.engines.pulumi_plan import run_stack_program
    from stacks.aws import tls
    from stacks.spec import StackSpec

    spec = StackSpec.model_validate(
        {
            "name": name,
            "provider": "aws",
            "region": REGION,
            "owner": "e2e",
            "tags": {"team": "ml"},
            "components": {
                "orchestrator": {
                    "flavor": "aws_batch",
                    "max_vcpus": 4,
                    "base_image": base_image,
                },
                "tracker": {"flavor": "none"},
                "deployer": {"flavor": "none"},
            },
        }
    )
    config = {
        "mlstack:owner": "e2e",
        "mlstack:expiresAt": "never",
        "mlstack:metadataToken": token,
        "mlstack:dbPassword": secrets.token_hex(8),
        "mlstack:trackerPassword": secrets.token_hex(8),
        "mlstack:trackerFlaskKey": secrets.token_hex(8),
    }
    config.update({f"mlstack:{k}": v for k, (v, _) in tls.generated_config(spec).items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pulumi_aws's own deprecations
        run = run_stack_program(spec, PROGRAM, stack_id, config)
    return ProgramStack(stack_id, dict(run.outputs["tags"]), dict(run.outputs), run.resources)


def _secret_value(value: Any) -> str:
    """A SecretVersion's ``secretString`` under mocks: Pulumi's secret wrapper, or the value."""
    return str(value.get("value")) if isinstance(value, dict) else str(value)


def create_in_moto(program: ProgramStack) -> dict[str, str]:
    """Create on moto what a run touches, with the program's names and tags; names by kind."""
    session = boto3.session.Session(region_name=REGION)
    made: dict[str, str] = {}

    def tag_list(res: Any) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in program.tags_of(res).items()]

    s3 = session.client("s3")
    for res in program.of_type("aws:s3/bucket:Bucket"):
        s3.create_bucket(Bucket=res.inputs["bucket"])
        s3.put_bucket_tagging(Bucket=res.inputs["bucket"], Tagging={"TagSet": tag_list(res)})
        made["bucket"] = res.inputs["bucket"]
    ecr = session.client("ecr")
    for res in program.of_type("aws:ecr/repository:Repository"):
        ecr.create_repository(repositoryName=res.inputs["name"], tags=tag_list(res))
        made["repository"] = res.inputs["name"]
    logs = session.client("logs")
    job_logs = program.one("aws:cloudwatch/logGroup:LogGroup", "job-logs")
    logs.create_log_group(logGroupName=job_logs.inputs["name"], tags=program.tags_of(job_logs))
    made["log_group"] = job_logs.inputs["name"]
    iam = session.client("iam")
    for key in ("job-role", "batch-execution-role"):
        res = program.one("aws:iam/role:Role", key)
        iam.create_role(
            RoleName=res.inputs["name"],
            AssumeRolePolicyDocument=res.inputs["assumeRolePolicy"],
            Tags=tag_list(res),
        )
        made[key] = res.inputs["name"]
    sm = session.client("secretsmanager")
    values = {
        r.name.removesuffix("-value"): _secret_value(r.inputs.get("secretString"))
        for r in program.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    for res in program.of_type("aws:secretsmanager/secret:Secret"):
        sm.create_secret(
            Name=res.inputs["name"], SecretString=values.get(res.name, ""), Tags=tag_list(res)
        )
    # The compute environment runs in the program's network; on moto, a VPC of its own.
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/20")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName=f"mlstack-{program.stack_id}-jobs", Description="jobs", VpcId=vpc
    )["GroupId"]
    # AWS uses Batch's service-linked role when a compute environment names none (as the
    # program's does); moto insists on one that exists.
    # One per account: the harness of an earlier test module on this moto server made it.
    try:
        role = iam.create_service_linked_role(AWSServiceName="batch.amazonaws.com")["Role"]
    except iam.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        (role,) = iam.list_roles(PathPrefix="/aws-service-role/batch.amazonaws.com/")["Roles"]
    linked = role["Arn"]
    batch = session.client("batch")
    compute = program.one("aws:batch/computeEnvironment:ComputeEnvironment", "compute")
    resources = compute.inputs["computeResources"]
    env = batch.create_compute_environment(
        computeEnvironmentName=compute.inputs["name"],
        type=compute.inputs["type"],
        state="ENABLED",
        serviceRole=linked,
        computeResources={
            "type": resources["type"],
            "maxvCpus": int(resources["maxVcpus"]),
            "subnets": [subnet],
            "securityGroupIds": [sg],
        },
        tags=program.tags_of(compute),
    )
    queue = program.one("aws:batch/jobQueue:JobQueue", "queue")
    batch.create_job_queue(
        jobQueueName=queue.inputs["name"],
        state=queue.inputs["state"],
        priority=int(queue.inputs["priority"]),
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
        tags=program.tags_of(queue),
    )
    made["compute_environment"] = compute.inputs["name"]
    made["job_queue"] = queue.inputs["name"]
    return made


class RoleCredentialsEndpoint:
    """Fargate's task-role credential endpoint, standing in where no ECS agent runs: each GET
    answers with fresh STS credentials of one role (from moto's STS), as the agent does."""

    def __init__(self, role_arn: str) -> None:
        sts = boto3.session.Session(region_name=REGION).client("sts")
        lock = threading.Lock()
        served: list[str] = []
        self.served = served  # every secret handed out, for the tests that scan for them

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="batch-job")[
                        "Credentials"
                    ]
                served.append(creds["SecretAccessKey"])
                served.append(creds["SessionToken"])
                body = json.dumps(
                    {
                        "AccessKeyId": creds["AccessKeyId"],
                        "SecretAccessKey": creds["SecretAccessKey"],
                        "Token": creds["SessionToken"],
                        "Expiration": creds["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "RoleArn": role_arn,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/credentials/job"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class BatchStack:
    """A Batch stack on moto: the runner's outputs (token resolved) and what was created."""

    outputs: StackOutputs
    program: ProgramStack
    made: dict[str, str]
    credentials: RoleCredentialsEndpoint


@contextlib.contextmanager
def aws_batch_stack(local: dict[str, Any], base_image: str) -> Iterator[BatchStack]:
    """The program's stack on moto (AWS env already pointing at it), with ``local``'s
    (a local stack's outputs, secrets shown) metadata server and registry."""
    token = local["metadata"]["token"]
    stack_id = f"e2e-{secrets.token_hex(3)}"
    program = program_resources(stack_id, token, base_image)
    made = create_in_moto(program)
    data = {k: v for k, v in program.outputs.items() if k in StackOutputs.model_fields}
    # The program's ECR repository, served by the local registry (ECR's registry endpoint):
    # pushes still take their token from ecr:GetAuthorizationToken on moto.
    repository = data["container_registry"]["url"].split("/", 1)[1]
    data["container_registry"] = {
        "kind": "ecr",
        "url": f"{local['container_registry']['url']}/{repository}",
    }
    data["metadata"] = {**local["metadata"], "token": None}
    outputs = StackOutputs.model_validate(data).with_token(token)
    credentials = RoleCredentialsEndpoint(outputs.orchestrator.job_role_arn)  # type: ignore[union-attr]
    try:
        yield BatchStack(outputs, program, made, credentials)
    finally:
        credentials.close()
        _remove_local_images(str(data["container_registry"]["url"]))


def _remove_local_images(repository: str) -> None:
    """The images this harness built and pushed, out of the shared Docker Engine (by their
    repository, unique to the harness: the label ``mlstack.stack`` is shared by harnesses
    running at once)."""
    import docker

    engine = docker.from_env()
    for image in engine.images.list(name=repository):
        for tag in image.tags:
            with contextlib.suppress(docker.errors.APIError):
                engine.images.remove(tag, force=True)


def engine_ready() -> str | None:
    """Why the Batch harness cannot run here (no Docker Engine, no registry), or None."""
    import shutil

    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:
        return f"no Docker Engine reachable ({type(exc).__name__})"
    if shutil.which("docker-registry") is None:
        return "Debian's docker-registry is not installed"
    return None


@contextlib.contextmanager
def batch_harness(
    moto_server: str, home: Any, local_name: str, local_spec: str, base_image: str
) -> Iterator[tuple[dict[str, Any], BatchStack]]:
    """The AWS environment at moto for this block, a local stack (metadata server, MLflow)
    brought up from ``local_spec`` and the Batch stack over it; everything down after.

    Skips (a failure under CI=true) when :func:`engine_ready` says why it cannot run.
    """
    import os

    import pytest

    from tests.conftest import run_cli, stack_up

    reason = engine_ready()
    if reason:
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "AWS_ENDPOINT_URL": moto_server,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "MLSTACK_HOME": str(home),
        }.items():
            env.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            env.delenv(key, raising=False)
        built = run_cli("base-image", "build", "--tag", base_image, timeout=1800)
        assert built.returncode == 0, built.stderr
        with (
            stack_up(home, local_name, local_spec) as local,
            aws_batch_stack(local["outputs"], base_image) as batch,
        ):
            env.setenv("MLSTACK_BATCH_CREDENTIALS_URI", batch.credentials.url)
            yield local, batch
