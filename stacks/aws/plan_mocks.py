"""What the AWS program's resources look like under Pulumi's mocks (offline plan and tests).

Kept beside the program it describes: the inputs worth showing (and pricing) per resource
type, and the computed attributes (ARNs, URLs, host names) other resources and the exported
outputs read. ``provisioner/engines/pulumi_plan.py`` finds this module by the resource type's
package (``aws:...`` → ``stacks.aws.plan_mocks``).
"""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"

# Key inputs worth showing (and pricing) per resource type: label -> dotted input path.
DETAILS: dict[str, dict[str, str]] = {
    "aws:s3/bucket:Bucket": {"bucket": "bucket", "force_destroy": "forceDestroy"},
    "aws:s3/bucketVersioning:BucketVersioning": {"versioning": "versioningConfiguration.status"},
    "aws:ecr/repository:Repository": {
        "name": "name",
        "force_delete": "forceDelete",
        "scan_on_push": "imageScanningConfiguration.scanOnPush",
    },
    "aws:secretsmanager/secret:Secret": {
        "name": "name",
        "recovery_window_days": "recoveryWindowInDays",
    },
    "aws:batch/computeEnvironment:ComputeEnvironment": {
        "compute": "computeResources.type",
        "max_vcpus": "computeResources.maxVcpus",
    },
    "aws:batch/jobQueue:JobQueue": {"name": "name"},
    "aws:cloudwatch/logGroup:LogGroup": {"name": "name", "retention_days": "retentionInDays"},
    "aws:rds/instance:Instance": {
        "engine": "engine",
        "engine_version": "engineVersion",
        "instance_class": "instanceClass",
        "storage_gib": "allocatedStorage",
        "storage_type": "storageType",
        "multi_az": "multiAz",
        "skip_final_snapshot": "skipFinalSnapshot",
        "deletion_protection": "deletionProtection",
    },
    "aws:ecs/taskDefinition:TaskDefinition": {
        "family": "family",
        "cpu_units": "cpu",
        "memory_mib": "memory",
    },
    "aws:ecs/service:Service": {
        "launch_type": "launchType",
        "count": "desiredCount",
        "public_ip": "networkConfiguration.assignPublicIp",
        "task_definition": "taskDefinition",
    },
    "aws:lb/loadBalancer:LoadBalancer": {"lb_type": "loadBalancerType", "internal": "internal"},
    "aws:lb/listener:Listener": {"port": "port"},
    "aws:ec2/vpc:Vpc": {"cidr": "cidrBlock"},
    "aws:ec2/subnet:Subnet": {"cidr": "cidrBlock"},
    "aws:iam/role:Role": {"name": "name"},
    "aws:scheduler/schedule:Schedule": {
        "schedule": "scheduleExpression",
        "starts": "startDate",
        "target": "target.arn",
    },
}


def _physical_name(name: str, inputs: dict[str, Any]) -> str:
    for key in ("name", "bucket", "identifier", "family"):
        if isinstance(inputs.get(key), str):
            return str(inputs[key])
    return name


def fake_state(typ: str, name: str, inputs: dict[str, Any], region: str) -> dict[str, Any]:
    """Inputs echoed back plus the computed attributes other resources and outputs read."""
    physical = _physical_name(name, inputs)
    state = dict(inputs)
    service, _, kind = typ.split(":")[1].partition("/")
    kind = kind.split(":")[0]
    state["arn"] = f"arn:aws:{service}:{region}:{ACCOUNT}:{kind}/{physical}"
    state.setdefault("name", physical)
    if typ == "aws:s3/bucket:Bucket":
        state["arn"] = f"arn:aws:s3:::{physical}"
        state["bucketDomainName"] = f"{physical}.s3.amazonaws.com"
    elif typ == "aws:ecr/repository:Repository":
        state["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{physical}"
    elif typ == "aws:iam/role:Role":
        state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{physical}"
    elif typ == "aws:secretsmanager/secret:Secret":
        state["arn"] = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{physical}-AbCdEf"
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        state["arn"] = f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{physical}"
    elif typ == "aws:rds/instance:Instance":
        state["address"] = f"{physical}.plan.{region}.rds.amazonaws.com"
        state["port"] = 5432
        state["endpoint"] = f"{state['address']}:5432"
    elif typ == "aws:lb/loadBalancer:LoadBalancer":
        state["dnsName"] = f"{physical}-0.{region}.elb.amazonaws.com"
    return state


def fake_call(token: str, region: str) -> dict[str, Any]:
    """The result of a data-source invoke the program makes (caller identity, zones...)."""
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "accountId": ACCOUNT,
            "arn": f"arn:aws:iam::{ACCOUNT}:user/plan",
            "userId": "PLAN",
            "id": ACCOUNT,
        }
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        names = [f"{region}{z}" for z in "abc"]
        return {"names": names, "zoneIds": [f"z-{n}" for n in names], "id": region}
    return {}
