"""The ``s3`` artifact store on a local stack: any S3-compatible bucket (AWS, MinIO, moto).

Credentials come from the usual AWS environment (``AWS_ACCESS_KEY_ID``, profiles, ...), never
from the spec, the state or the outputs. With ``create: true`` the stack creates the bucket
at ``up`` and empties and deletes it at ``down``; otherwise ``up`` checks it exists and
``down`` leaves it alone.
"""

from __future__ import annotations

from typing import Any

from stacks.common.errors import ServiceFailed
from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import ArtifactStoreOutputs, S3ArtifactStoreOutputs
from stacks.spec.local import S3ArtifactStore


def _spec(ctx: LocalContext) -> S3ArtifactStore:
    spec = ctx.spec.components.artifact_store
    assert isinstance(spec, S3ArtifactStore)
    return spec


def _client(spec: S3ArtifactStore) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=spec.endpoint_url, region_name=spec.region)


def _where(spec: S3ArtifactStore) -> str:
    return f"bucket {spec.bucket!r}" + (f" at {spec.endpoint_url}" if spec.endpoint_url else "")


# Error code (or exception class) -> what it means here, and how to fix it.
_PROBLEMS = {
    "404": ("does not exist", "create the bucket, or set artifact_store.create: true"),
    "NoSuchBucket": ("does not exist", "create the bucket, or set artifact_store.create: true"),
    "403": ("access denied", "the AWS identity needs s3:ListBucket, s3:GetObject, s3:PutObject"),
    "AccessDenied": (
        "access denied",
        "the AWS identity needs s3:ListBucket, s3:GetObject, s3:PutObject",
    ),
    "NoCredentialsError": (
        "no AWS credentials",
        "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
    ),
    "EndpointConnectionError": ("endpoint not reachable", "check artifact_store.endpoint_url"),
}


def _translate(spec: S3ArtifactStore, exc: Exception) -> ServiceFailed:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    problem, hint = _PROBLEMS.get(
        code, (code, "check artifact_store.endpoint_url and the AWS environment")
    )
    return ServiceFailed(f"{_where(spec)}: {problem}", hint)


def service(ctx: LocalContext) -> ServiceDef:
    spec = _spec(ctx)

    def prepare() -> None:
        if not spec.create:
            return
        client = _client(spec)
        try:
            client.head_bucket(Bucket=spec.bucket)
        except Exception:
            try:
                client.create_bucket(Bucket=spec.bucket)
            except Exception as exc:
                raise _translate(spec, exc) from None

    def check() -> str | None:
        try:
            _client(spec).head_bucket(Bucket=spec.bucket)
        except Exception as exc:
            return str(_translate(spec, exc))  # headline (hint)
        return None

    return ServiceDef(
        name="artifact_store",
        component="artifact_store",
        config={
            "flavor": "s3",
            "bucket": spec.bucket,
            "prefix": spec.prefix,
            "endpoint_url": spec.endpoint_url,
            "create": spec.create,
        },
        prepare=prepare,
        check=check,
    )


def outputs(ctx: LocalContext) -> ArtifactStoreOutputs:
    spec = _spec(ctx)
    uri = f"s3://{spec.bucket}/{spec.prefix}".rstrip("/")
    return S3ArtifactStoreOutputs(uri=uri, region=spec.region, endpoint_url=spec.endpoint_url)


def teardown(ctx: LocalContext) -> list[str]:
    """At ``down``: empty and delete the bucket only if this stack created it."""
    spec = _spec(ctx)
    if not spec.create:
        return []
    client = _client(spec)
    try:
        paginator = client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=spec.bucket):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if doomed:
                client.delete_objects(Bucket=spec.bucket, Delete={"Objects": doomed})
        client.delete_bucket(Bucket=spec.bucket)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            return []
        raise _translate(spec, exc) from None
    return [f"bucket {spec.bucket}"]
