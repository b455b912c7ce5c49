"""Container registry: one ECR repository per stack (images are tagged per pipeline)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext

UNTAGGED_DAYS = 7

LIFECYCLE = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"expire untagged images after {UNTAGGED_DAYS} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": UNTAGGED_DAYS,
                },
                "action": {"type": "expire"},
            }
        ]
    }
)


class ContainerRegistry(pulumi.ComponentResource):
    """ECR repository: force_delete, scan on push, untagged images expire."""

    TYPE = "mlstack:aws:ContainerRegistry"

    def __init__(self, ctx: AwsContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, "container-registry", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            "repository",
            name=ctx.name(),
            force_delete=True,  # `down` must delete a repository that still holds images
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="MUTABLE",
            encryption_configurations=[{"encryption_type": "AES256"}],
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            "lifecycle", repository=self.repository.name, policy=LIFECYCLE, opts=child
        )
        self.arn = self.repository.arn
        self.url = self.repository.repository_url
        self.register_outputs({"url": self.url})

    def outputs(self) -> dict[str, object]:
        return {"kind": "ecr", "url": self.url}
