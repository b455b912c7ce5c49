"""Delete a stack's AWS resources in dependency order, waiting where AWS needs it.

Endpoints before their configs before models; Batch jobs before queues (disabled, then
deleted) before compute environments; ECS services before clusters; load balancers and
network interfaces before security groups, subnets and the VPC; buckets emptied of every
version first; repositories force-deleted with their images; secrets without recovery.
Each resource's failure is recorded on it and the sweep goes on with the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from provisioner.sweep.aws_find import Clients
from provisioner.sweep.models import FoundResource

# Kinds in the order they are deleted; a kind not listed goes last and is reported, not guessed.
ORDER = (
    "scheduler:schedule-group",
    "sagemaker:endpoint",
    "sagemaker:endpoint-config",
    "sagemaker:model",
    "batch:job",
    "batch:job-definition",
    "batch:job-queue",
    "batch:compute-environment",
    "ecs:service",
    "ecs:task",
    "ecs:task-definition",
    "ecs:cluster",
    "elasticloadbalancing:listener",
    "elasticloadbalancing:loadbalancer",
    "elasticloadbalancing:targetgroup",
    "rds:db",
    "rds:subgrp",
    "ec2:network-interface",
    "ec2:security-group",
    "ec2:subnet",
    "ec2:route-table",
    "ec2:internet-gateway",
    "ec2:vpc",
    "s3:bucket",
    "ecr:repository",
    "secretsmanager:secret",
    "logs:log-group",
    "iam:role",
)


def rank(kind: str) -> int:
    return ORDER.index(kind) if kind in ORDER else len(ORDER)


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll ``check`` (0.2 s, backing off to 10 s) until true; TimeoutError naming ``what``."""
    deadline, pause = time.monotonic() + timeout, 0.2
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout:.0f}s")
        time.sleep(pause)
        pause = min(pause * 2, 10.0)


def _missing(call: Callable[[], Any], *codes: str) -> bool:
    """True when ``call`` fails with one of the not-found error codes."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        return code in codes or "not found" in message.lower() or "does not exist" in message
    return False


class Deleter:
    """One delete method per kind; ``timeout`` bounds each wait for AWS to finish."""

    def __init__(self, clients: Clients, timeout: float = 900) -> None:
        self.c = clients
        self.timeout = timeout

    def delete(self, res: FoundResource) -> None:
        handler = getattr(self, "_" + res.kind.replace(":", "_").replace("-", "_"), None)
        if handler is None:
            raise NotImplementedError(f"mlstack does not know how to delete a {res.kind}")
        handler(res)

    # -- scheduler, sagemaker --------------------------------------------------------------

    def _scheduler_schedule_group(self, res: FoundResource) -> None:
        self.c("scheduler").delete_schedule_group(Name=res.name)

    def _sagemaker_endpoint(self, res: FoundResource) -> None:
        sm = self.c("sagemaker")
        sm.delete_endpoint(EndpointName=res.name)
        wait_until(
            lambda: _missing(
                lambda: sm.describe_endpoint(EndpointName=res.name), "ValidationException"
            ),
            f"deleting endpoint {res.name}",
            self.timeout,
        )

    def _sagemaker_endpoint_config(self, res: FoundResource) -> None:
        self.c("sagemaker").delete_endpoint_config(EndpointConfigName=res.name)

    def _sagemaker_model(self, res: FoundResource) -> None:
        self.c("sagemaker").delete_model(ModelName=res.name)

    # -- batch -----------------------------------------------------------------------------

    def _batch_job(self, res: FoundResource) -> None:
        self.c("batch").terminate_job(jobId=res.name, reason="mlstack sweep: stack torn down")

    def _batch_job_definition(self, res: FoundResource) -> None:
        self.c("batch").deregister_job_definition(jobDefinition=res.arn)

    def _batch_job_queue(self, res: FoundResource) -> None:
        batch = self.c("batch")

        def queue() -> dict[str, Any] | None:
            found = batch.describe_job_queues(jobQueues=[res.arn]).get("jobQueues", [])
            return found[0] if found and found[0].get("status") != "DELETED" else None

        current = queue()
        if current and current.get("state") != "DISABLED":
            batch.update_job_queue(jobQueue=res.arn, state="DISABLED")
        wait_until(
            lambda: (
                (q := queue()) is None or (q["state"] == "DISABLED" and q["status"] != "UPDATING")
            ),
            f"disabling job queue {res.name}",
            self.timeout,
        )
        batch.delete_job_queue(jobQueue=res.arn)
        wait_until(lambda: queue() is None, f"deleting job queue {res.name}", self.timeout)

    def _batch_compute_environment(self, res: FoundResource) -> None:
        batch = self.c("batch")

        def env() -> dict[str, Any] | None:
            found = batch.describe_compute_environments(computeEnvironments=[res.arn])
            envs = found.get("computeEnvironments", [])
            return envs[0] if envs and envs[0].get("status") != "DELETED" else None

        current = env()
        if current and current.get("state") != "DISABLED":
            batch.update_compute_environment(computeEnvironment=res.arn, state="DISABLED")
        wait_until(
            lambda: (
                (e := env()) is None or (e["state"] == "DISABLED" and e["status"] != "UPDATING")
            ),
            f"disabling compute environment {res.name}",
            self.timeout,
        )
        batch.delete_compute_environment(computeEnvironment=res.arn)
        wait_until(lambda: env() is None, f"deleting compute environment {res.name}", self.timeout)

    # -- ecs, load balancers, rds ------------------------------------------------------------

    def _ecs_service(self, res: FoundResource) -> None:
        ecs = self.c("ecs")
        cluster = res.arn.split(":", 5)[5].split("/")[1] if res.arn.count("/") >= 2 else None
        if cluster is None:  # old-format ARN without the cluster: look it up
            raise ValueError(f"cannot tell the cluster of {res.arn}")
        ecs.update_service(cluster=cluster, service=res.arn, desiredCount=0)
        ecs.delete_service(cluster=cluster, service=res.arn, force=True)

    def _ecs_task(self, res: FoundResource) -> None:
        cluster = res.arn.split(":", 5)[5].split("/")[1]
        self.c("ecs").stop_task(cluster=cluster, task=res.arn, reason="mlstack sweep")

    def _ecs_task_definition(self, res: FoundResource) -> None:
        self.c("ecs").deregister_task_definition(taskDefinition=res.arn)

    def _ecs_cluster(self, res: FoundResource) -> None:
        self.c("ecs").delete_cluster(cluster=res.arn)

    def _elasticloadbalancing_listener(self, res: FoundResource) -> None:
        self.c("elbv2").delete_listener(ListenerArn=res.arn)

    def _elasticloadbalancing_loadbalancer(self, res: FoundResource) -> None:
        elb = self.c("elbv2")
        elb.delete_load_balancer(LoadBalancerArn=res.arn)
        wait_until(
            lambda: _missing(
                lambda: elb.describe_load_balancers(LoadBalancerArns=[res.arn]),
                "LoadBalancerNotFound",
            ),
            f"deleting load balancer {res.name}",
            self.timeout,
        )

    def _elasticloadbalancing_targetgroup(self, res: FoundResource) -> None:
        self.c("elbv2").delete_target_group(TargetGroupArn=res.arn)

    def _rds_db(self, res: FoundResource) -> None:
        rds = self.c("rds")
        rds.delete_db_instance(
            DBInstanceIdentifier=res.name, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
        )
        wait_until(
            lambda: _missing(
                lambda: rds.describe_db_instances(DBInstanceIdentifier=res.name),
                "DBInstanceNotFound",
                "DBInstanceNotFoundFault",
            ),
            f"deleting database {res.name}",
            self.timeout,
        )

    def _rds_subgrp(self, res: FoundResource) -> None:
        self.c("rds").delete_db_subnet_group(DBSubnetGroupName=res.name)

    # -- the network -------------------------------------------------------------------------

    def _ec2_network_interface(self, res: FoundResource) -> None:
        self.c("ec2").delete_network_interface(NetworkInterfaceId=res.name)

    def _ec2_security_group(self, res: FoundResource) -> None:
        ec2 = self.c("ec2")
        groups = ec2.describe_security_groups(GroupIds=[res.name])["SecurityGroups"]
        for group in groups:  # rules may name other groups of the stack: drop them first
            if group.get("IpPermissions"):
                ec2.revoke_security_group_ingress(
                    GroupId=res.name, IpPermissions=group["IpPermissions"]
                )
        self._retry_dependency(lambda: ec2.delete_security_group(GroupId=res.name))

    def _ec2_subnet(self, res: FoundResource) -> None:
        self._retry_dependency(lambda: self.c("ec2").delete_subnet(SubnetId=res.name))

    def _ec2_route_table(self, res: FoundResource) -> None:
        ec2 = self.c("ec2")
        for table in ec2.describe_route_tables(RouteTableIds=[res.name])["RouteTables"]:
            for assoc in table.get("Associations", []):
                if assoc.get("Main"):
                    return  # the VPC's main table goes with the VPC
                ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=res.name)

    def _ec2_internet_gateway(self, res: FoundResource) -> None:
        ec2 = self.c("ec2")
        gateways = ec2.describe_internet_gateways(InternetGatewayIds=[res.name])
        for gateway in gateways["InternetGateways"]:
            for attachment in gateway.get("Attachments", []):
                ec2.detach_internet_gateway(InternetGatewayId=res.name, VpcId=attachment["VpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=res.name)

    def _ec2_vpc(self, res: FoundResource) -> None:
        self._retry_dependency(lambda: self.c("ec2").delete_vpc(VpcId=res.name))

    def _retry_dependency(self, call: Callable[[], Any]) -> None:
        """ENIs of deleted load balancers and tasks linger minutes: retry DependencyViolation."""
        from botocore.exceptions import ClientError

        def attempt() -> bool:
            try:
                call()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "DependencyViolation":
                    return False
                raise
            return True

        wait_until(attempt, "a resource still in use", self.timeout)

    # -- storage, secrets, logs, iam -----------------------------------------------------------

    def _s3_bucket(self, res: FoundResource) -> None:
        s3 = self.c("s3")
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=res.name):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for start in range(0, len(doomed), 1000):
                s3.delete_objects(
                    Bucket=res.name, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
                )
        s3.delete_bucket(Bucket=res.name)

    def _ecr_repository(self, res: FoundResource) -> None:
        self.c("ecr").delete_repository(repositoryName=res.name, force=True)

    def _secretsmanager_secret(self, res: FoundResource) -> None:
        self.c("secretsmanager").delete_secret(SecretId=res.arn, ForceDeleteWithoutRecovery=True)

    def _logs_log_group(self, res: FoundResource) -> None:
        self.c("logs").delete_log_group(logGroupName=res.name)

    def _iam_role(self, res: FoundResource) -> None:
        iam = self.c("iam")
        for name in iam.list_role_policies(RoleName=res.name).get("PolicyNames", []):
            iam.delete_role_policy(RoleName=res.name, PolicyName=name)
        attached = iam.list_attached_role_policies(RoleName=res.name).get("AttachedPolicies", [])
        for policy in attached:
            iam.detach_role_policy(RoleName=res.name, PolicyArn=policy["PolicyArn"])
        profiles = iam.list_instance_profiles_for_role(RoleName=res.name).get(
            "InstanceProfiles", []
        )
        for profile in profiles:
            iam.remove_role_from_instance_profile(
                InstanceProfileName=profile["InstanceProfileName"], RoleName=res.name
            )
        iam.delete_role(RoleName=res.name)


def delete_all(clients: Clients, found: list[FoundResource], timeout: float = 900) -> None:
    """Delete ``found`` in :data:`ORDER`; mark each deleted or record its error."""
    deleter = Deleter(clients, timeout)
    for res in sorted(found, key=lambda r: rank(r.kind)):
        try:
            deleter.delete(res)
        except Exception as exc:  # one resource's failure never stops the rest
            res.error = _message(exc)
        else:
            res.deleted = True


def _message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', type(exc).__name__)}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
