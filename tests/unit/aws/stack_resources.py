"""Create the resources of one AWS stack (tagged with its stack id) on a moto server."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stacks.common.aws_naming import STACK_ID_TAG

REGION = "us-east-1"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 7023,
            "digest": "sha256:" + "a" * 64,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 32654,
                "digest": "sha256:" + "b" * 64,
            }
        ],
    }
)


def new_stack_id(name: str | None = None) -> str:
    return f"{name or 'sw' + secrets.token_hex(3)}-{secrets.token_hex(3)}"


def client(service: str, session: Any = None) -> Any:
    return (session or boto3.session.Session(region_name=REGION)).client(
        service, region_name=REGION
    )


@dataclass
class StackResources:
    """What :func:`create_stack` made, by kind (names or ARNs)."""

    stack_id: str
    arns: dict[str, str] = field(default_factory=dict)  # kind -> ARN
    names: dict[str, str] = field(default_factory=dict)  # kind -> name


def create_stack(stack_id: str, *, runtime: bool = True) -> StackResources:
    """A bucket with object versions, an ECR repository with an image, a secret, a log group,
    an IAM role, a VPC with a subnet and security group, a Batch compute environment, job
    queue and job definition, and (``runtime``) a SageMaker model, endpoint config, endpoint."""
    tags = [{"Key": STACK_ID_TAG, "Value": stack_id}]
    tag_map = {STACK_ID_TAG: stack_id}
    out = StackResources(stack_id)
    base = f"mlstack-{stack_id}"

    s3 = client("s3")
    s3.create_bucket(Bucket=base)
    s3.put_bucket_tagging(Bucket=base, Tagging={"TagSet": tags})
    s3.put_bucket_versioning(Bucket=base, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        s3.put_object(Bucket=base, Key="mlstack/model.pkl", Body=body)
    s3.put_object(Bucket=base, Key="mlstack/data.csv", Body=b"a,b\n1,2\n")
    s3.delete_object(Bucket=base, Key="mlstack/data.csv")  # leaves a delete marker
    out.names["s3:bucket"] = base

    ecr = client("ecr")
    repo = ecr.create_repository(repositoryName=base, tags=tags)["repository"]
    ecr.put_image(repositoryName=base, imageManifest=MANIFEST, imageTag="train-1")
    out.arns["ecr:repository"] = repo["repositoryArn"]
    out.names["ecr:repository"] = base

    secret = client("secretsmanager").create_secret(
        Name=f"mlstack/{stack_id}/mlstack-metadata-token", SecretString="s3cr3t", Tags=tags
    )
    out.arns["secretsmanager:secret"] = secret["ARN"]

    group = f"/mlstack/{stack_id}/jobs"
    client("logs").create_log_group(logGroupName=group, tags=tag_map)
    out.names["logs:log-group"] = group

    iam = client("iam")
    role = iam.create_role(RoleName=f"{base}-job", AssumeRolePolicyDocument=TRUST, Tags=tags)
    iam.put_role_policy(
        RoleName=f"{base}-job",
        PolicyName="bucket",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject"],
                        "Resource": [f"arn:aws:s3:::{base}/*"],
                    }
                ],
            }
        ),
    )
    out.arns["iam:role"] = role["Role"]["Arn"]
    out.names["iam:role"] = f"{base}-job"

    ec2 = client("ec2")
    spec = [{"ResourceType": "vpc", "Tags": tags}]
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=spec)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc,
        CidrBlock="10.42.0.0/20",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": tags}],
    )["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName=f"{base}-jobs",
        Description="jobs",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )["GroupId"]
    out.names.update({"ec2:vpc": vpc, "ec2:subnet": subnet, "ec2:security-group": sg})

    batch = client("batch")
    env = batch.create_compute_environment(
        computeEnvironmentName=f"{base}-fargate",
        type="MANAGED",
        state="ENABLED",
        serviceRole=out.arns["iam:role"],
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 4,
            "subnets": [subnet],
            "securityGroupIds": [sg],
        },
        tags=tag_map,
    )
    queue = batch.create_job_queue(
        jobQueueName=f"{base}-queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
        tags=tag_map,
    )
    out.arns["batch:compute-environment"] = env["computeEnvironmentArn"]
    out.names["batch:compute-environment"] = f"{base}-fargate"
    out.arns["batch:job-queue"] = queue["jobQueueArn"]
    out.names["batch:job-queue"] = f"{base}-queue"
    if runtime:
        add_runtime(out)
    return out


def add_runtime(out: StackResources) -> None:
    """What a run creates: a job definition and a SageMaker model, endpoint config, endpoint."""
    stack_id = out.stack_id
    base = f"mlstack-{stack_id}"
    tags = [{"Key": STACK_ID_TAG, "Value": stack_id}]
    definition = client("batch").register_job_definition(
        jobDefinitionName=f"{base}-train",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "busybox",
            "command": ["true"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "0.25"},
                {"type": "MEMORY", "value": "512"},
            ],
            "executionRoleArn": out.arns["iam:role"],
        },
        tags={STACK_ID_TAG: stack_id},
    )
    out.arns["batch:job-definition"] = definition["jobDefinitionArn"]
    sm = client("sagemaker")
    model = sm.create_model(
        ModelName=f"{base}-model",
        ExecutionRoleArn=out.arns["iam:role"],
        PrimaryContainer={
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1",
            "ModelDataUrl": f"s3://{base}/mlstack/model.tar.gz",
        },
        Tags=tags,
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{base}-config",
        ProductionVariants=[
            {
                "VariantName": "main",
                "ModelName": f"{base}-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.t2.medium",
            }
        ],
        Tags=tags,
    )
    endpoint = sm.create_endpoint(
        EndpointName=f"{base}-endpoint", EndpointConfigName=f"{base}-config", Tags=tags
    )
    out.arns["sagemaker:model"] = model["ModelArn"]
    out.arns["sagemaker:endpoint"] = endpoint["EndpointArn"]
    out.names.update(
        {
            "sagemaker:model": f"{base}-model",
            "sagemaker:endpoint-config": f"{base}-config",
            "sagemaker:endpoint": f"{base}-endpoint",
        }
    )


def exists(kind: str, res: StackResources) -> bool:
    """Whether the resource of ``kind`` that :func:`create_stack` made is still there."""
    name = res.names.get(kind)
    try:
        if kind == "s3:bucket":
            client("s3").head_bucket(Bucket=name)
        elif kind == "ecr:repository":
            client("ecr").describe_repositories(repositoryNames=[name])
        elif kind == "secretsmanager:secret":
            client("secretsmanager").describe_secret(SecretId=res.arns[kind])
        elif kind == "logs:log-group":
            groups = client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
            return any(g["logGroupName"] == name for g in groups)
        elif kind == "iam:role":
            client("iam").get_role(RoleName=name)
        elif kind == "ec2:vpc":
            return bool(
                client("ec2").describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [name]}])["Vpcs"]
            )
        elif kind == "ec2:subnet":
            found = client("ec2").describe_subnets(
                Filters=[{"Name": "subnet-id", "Values": [name]}]
            )
            return bool(found["Subnets"])
        elif kind == "ec2:security-group":
            found = client("ec2").describe_security_groups(
                Filters=[{"Name": "group-id", "Values": [name]}]
            )
            return bool(found["SecurityGroups"])
        elif kind == "batch:compute-environment":
            envs = client("batch").describe_compute_environments(computeEnvironments=[name])
            return any(e.get("status") != "DELETED" for e in envs["computeEnvironments"])
        elif kind == "batch:job-queue":
            queues = client("batch").describe_job_queues(jobQueues=[name])["jobQueues"]
            return any(q.get("status") != "DELETED" for q in queues)
        elif kind == "batch:job-definition":
            found = client("batch").describe_job_definitions(
                jobDefinitions=[res.arns[kind]], status="ACTIVE"
            )
            return bool(found["jobDefinitions"])
        elif kind == "sagemaker:endpoint":
            client("sagemaker").describe_endpoint(EndpointName=name)
        elif kind == "sagemaker:endpoint-config":
            client("sagemaker").describe_endpoint_config(EndpointConfigName=name)
        elif kind == "sagemaker:model":
            client("sagemaker").describe_model(ModelName=name)
        else:
            raise KeyError(kind)
    except ClientError:
        return False
    return True
