"""Artifact store: one private, encrypted S3 bucket that ``down`` empties and deletes."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext

PREFIX = "mlstack"  # every object of the store is under s3://BUCKET/PREFIX/
LOGS = f"{PREFIX}/logs/"  # where step logs are (runner.artifacts.ArtifactStore.log_uri)


class ArtifactStore(pulumi.ComponentResource):
    """S3 bucket with force_destroy, all public access blocked, SSE on, versioning opt-in."""

    TYPE = "mlstack:aws:ArtifactStore"

    def __init__(self, ctx: AwsContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, "artifact-store", None, opts)
        spec = ctx.ident.spec.components.artifact_store
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            "bucket",
            bucket=ctx.name(),
            force_destroy=True,  # `down` must delete a bucket that still holds artifacts
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            "public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            "encryption",
            bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        if spec.versioning:
            aws.s3.BucketVersioning(
                "versioning",
                bucket=self.bucket.id,
                versioning_configuration={"status": "Enabled"},
                opts=child,
            )
        self.arn = self.bucket.arn
        self.uri = pulumi.Output.concat("s3://", self.bucket.bucket, f"/{PREFIX}")
        self.register_outputs({"bucket": self.bucket.bucket})

    def outputs(self, ctx: AwsContext) -> dict[str, object]:
        return {"kind": "s3", "uri": self.uri, "region": ctx.region}
