"""Find every AWS resource that carries a stack's exact ``mlstack:stack-id`` tag.

The Resource Groups Tagging API answers for most services; IAM (never covered), ECR, Batch
and EventBridge Scheduler groups (not covered everywhere, e.g. by moto) are listed directly
and their tags checked; running Batch jobs are found through the stack's own job queues.
A resource is kept only when its tag value equals the stack id exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from provisioner.sweep.models import FoundResource
from stacks.common.tags import STACK_ID_TAG

GLOBAL = "global"
ACTIVE_JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


class Clients:
    """boto3 clients for one region, built once each (they honour ``AWS_ENDPOINT_URL``)."""

    def __init__(self, region: str, session: Any = None) -> None:
        import boto3

        self.region = region
        self.session = session or boto3.session.Session(region_name=region)
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self.session.client(service, region_name=self.region)
        return self._made[service]


def kind_and_name(arn: str) -> tuple[str, str]:
    """``("sagemaker:endpoint", "mlstack-x-1")`` from an ARN (``service:type``, name)."""
    parts = arn.split(":", 5)
    service, resource = parts[2], parts[5] if len(parts) > 5 else ""
    if service == "s3":
        return "s3:bucket", resource.split("/")[0]
    if service == "logs":  # log-group:NAME[:*]
        return "logs:log-group", resource.removeprefix("log-group:").removesuffix(":*")
    if service in ("secretsmanager", "rds"):  # secret:NAME-XXXXXX, db:ID, subgrp:NAME
        kind, _, name = resource.partition(":")
        return f"{service}:{kind}", name
    if service == "elasticloadbalancing":  # loadbalancer/app/NAME/ID, targetgroup/NAME/ID
        kind, _, rest = resource.partition("/")
        bits = rest.split("/")
        name = bits[1] if kind == "loadbalancer" and len(bits) > 1 else bits[0]
        return f"elasticloadbalancing:{kind}", name
    kind, _, name = resource.partition("/")
    return f"{service}:{kind}", name


def _has_exact_tag(tags: Iterable[dict[str, str]] | dict[str, str], stack_id: str) -> bool:
    if isinstance(tags, dict):
        return tags.get(STACK_ID_TAG) == stack_id
    return any(
        (t.get("Key", t.get("key")) == STACK_ID_TAG and t.get("Value", t.get("value")) == stack_id)
        for t in tags
    )


def _found(
    arn: str, region: str, kind: str | None = None, name: str | None = None
) -> FoundResource:
    parsed_kind, parsed_name = kind_and_name(arn)
    return FoundResource(arn=arn, kind=kind or parsed_kind, name=name or parsed_name, region=region)


def _tagging(clients: Clients, stack_id: str) -> Iterator[FoundResource]:
    pages = clients("resourcegroupstaggingapi").get_paginator("get_resources")
    for page in pages.paginate(TagFilters=[{"Key": STACK_ID_TAG, "Values": [stack_id]}]):
        for item in page.get("ResourceTagMappingList", []):
            # moto answers some SageMaker ARNs malformed; _sagemaker lists those directly.
            if not item["ResourceARN"].startswith("arn:"):
                continue
            if _has_exact_tag(item.get("Tags", []), stack_id):
                yield _found(item["ResourceARN"], clients.region)


def _iam_roles(clients: Clients, stack_id: str) -> Iterator[FoundResource]:
    iam = clients("iam")
    for page in iam.get_paginator("list_roles").paginate():
        for role in page.get("Roles", []):
            tags = iam.list_role_tags(RoleName=role["RoleName"]).get("Tags", [])
            if _has_exact_tag(tags, stack_id):
                yield _found(role["Arn"], GLOBAL, "iam:role", role["RoleName"])


def _ecr(clients: Clients, stack_id: str) -> Iterator[FoundResource]:
    ecr = clients("ecr")
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page.get("repositories", []):
            arn = repo["repositoryArn"]
            tags = ecr.list_tags_for_resource(resourceArn=arn).get("tags", [])
            if _has_exact_tag(tags, stack_id):
                yield _found(arn, clients.region, "ecr:repository", repo["repositoryName"])


def _batch(clients: Clients, stack_id: str) -> Iterator[FoundResource]:
    batch = clients("batch")
    region = clients.region
    for env in batch.describe_compute_environments().get("computeEnvironments", []):
        if _has_exact_tag(env.get("tags") or {}, stack_id):
            yield _found(
                env["computeEnvironmentArn"],
                region,
                "batch:compute-environment",
                env["computeEnvironmentName"],
            )
    for queue in batch.describe_job_queues().get("jobQueues", []):
        if not _has_exact_tag(queue.get("tags") or {}, stack_id):
            continue
        yield _found(queue["jobQueueArn"], region, "batch:job-queue", queue["jobQueueName"])
        # Jobs of the stack's own queue are the stack's, tagged or not.
        for status in ACTIVE_JOB_STATES:
            listed = batch.list_jobs(jobQueue=queue["jobQueueArn"], jobStatus=status)
            for job in listed.get("jobSummaryList", []):
                arn = job.get("jobArn") or f"{queue['jobQueueArn']}/job/{job['jobId']}"
                yield FoundResource(arn=arn, kind="batch:job", name=job["jobId"], region=region)
    pages = batch.get_paginator("describe_job_definitions").paginate(status="ACTIVE")
    for page in pages:
        for definition in page.get("jobDefinitions", []):
            if _has_exact_tag(definition.get("tags") or {}, stack_id):
                name = f"{definition['jobDefinitionName']}:{definition['revision']}"
                yield _found(definition["jobDefinitionArn"], region, "batch:job-definition", name)


def _schedule_groups(clients: Clients, stack_id: str) -> Iterator[FoundResource]:
    scheduler = clients("scheduler")
    for page in scheduler.get_paginator("list_schedule_groups").paginate():
        for group in page.get("ScheduleGroups", []):
            if group.get("Name") == "default":
                continue
            tags = scheduler.list_tags_for_resource(ResourceArn=group["Arn"]).get("Tags", [])
            if _has_exact_tag(tags, stack_id):
                yield _found(
                    group["Arn"], clients.region, "scheduler:schedule-group", group["Name"]
                )


def _sagemaker(clients: Clients, stack_id: str) -> Iterator[FoundResource]:
    sm = clients("sagemaker")
    listings = (
        ("list_endpoints", "Endpoints", "EndpointArn", "EndpointName", "sagemaker:endpoint"),
        (
            "list_endpoint_configs",
            "EndpointConfigs",
            "EndpointConfigArn",
            "EndpointConfigName",
            "sagemaker:endpoint-config",
        ),
        ("list_models", "Models", "ModelArn", "ModelName", "sagemaker:model"),
    )
    for method, key, arn_key, name_key, kind in listings:
        for page in sm.get_paginator(method).paginate():
            for item in page.get(key, []):
                tags = sm.list_tags(ResourceArn=item[arn_key]).get("Tags", [])
                if _has_exact_tag(tags, stack_id):
                    yield _found(item[arn_key], clients.region, kind, item[name_key])


SOURCES = (_tagging, _iam_roles, _ecr, _batch, _schedule_groups, _sagemaker)


def find(clients: Clients, stack_id: str) -> list[FoundResource]:
    """Every resource of ``stack_id`` in the clients' region (plus IAM), each once."""
    seen: dict[str, FoundResource] = {}
    for source in SOURCES:
        for res in source(clients, stack_id):
            seen.setdefault(res.arn, res)
    return list(seen.values())
