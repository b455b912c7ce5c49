"""Artifact store: MinIO in the namespace, its data on a PersistentVolumeClaim.

A one-shot Job creates the bucket and the stack's own MinIO user (policy readwrite) once the
server answers. The root credentials live in Secret ``minio-root``, which only MinIO's pod and
that Job read (through their env; no Role names it); steps and MLflow use the user's keys in
``minio-credentials``. Both passwords are generated once per stack by the engine.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.kubernetes.base import (
    K8sContext,
    deployment,
    env_from_secret,
    service_url,
    volume_claim,
)

MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z"
MC_IMAGE = "quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z"
BUCKET = "mlstack"
CREDENTIALS = "minio-credentials"
ROOT_CREDENTIALS = "minio-root"
USER = "mlstack"
ROOT_USER = "mlstack-root"
COMPONENT = "artifact_store"


class ArtifactStore(pulumi.ComponentResource):
    """Secret, PVC, Deployment + Service for MinIO, and the bucket-creating Job."""

    TYPE = "mlstack:kubernetes:ArtifactStore"

    def __init__(
        self,
        ctx: K8sContext,
        password: pulumi.Input[str],
        user_password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "artifact-store", None, opts)
        spec = ctx.spec.components.artifact_store
        child = pulumi.ResourceOptions(parent=self)
        self.ctx = ctx
        k8s.core.v1.Secret(
            "minio-root",
            metadata=ctx.meta(ROOT_CREDENTIALS, COMPONENT),
            string_data={
                "MINIO_ROOT_USER": ROOT_USER,
                "MINIO_ROOT_PASSWORD": pulumi.Output.secret(password),
            },
            opts=child,
        )
        k8s.core.v1.Secret(
            "minio-credentials",
            metadata=ctx.meta(CREDENTIALS, COMPONENT),
            string_data={
                "AWS_ACCESS_KEY_ID": USER,
                "AWS_SECRET_ACCESS_KEY": pulumi.Output.secret(user_password),
            },
            opts=child,
        )
        claim = volume_claim(ctx, "minio-data", COMPONENT, spec.size_gib, self)
        credentials = [
            env_from_secret("MINIO_ROOT_USER", ROOT_CREDENTIALS, "MINIO_ROOT_USER"),
            env_from_secret("MINIO_ROOT_PASSWORD", ROOT_CREDENTIALS, "MINIO_ROOT_PASSWORD"),
        ]
        user = [
            env_from_secret("AWS_ACCESS_KEY_ID", CREDENTIALS, "AWS_ACCESS_KEY_ID"),
            env_from_secret("AWS_SECRET_ACCESS_KEY", CREDENTIALS, "AWS_SECRET_ACCESS_KEY"),
        ]
        server, self.service = deployment(
            ctx,
            "minio",
            COMPONENT,
            {
                "name": "minio",
                "image": MINIO_IMAGE,
                "args": ["server", "/data", "--address", ":9000"],
                "env": credentials,
                "readiness_probe": {"http_get": {"path": "/minio/health/ready", "port": 9000}},
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            },
            9000,
            self,
            claim="minio-data",
            exposed=True,
        )
        k8s.batch.v1.Job(
            "minio-bucket",
            metadata=ctx.meta("minio-bucket", COMPONENT),
            spec={
                "backoff_limit": 20,
                "template": {
                    "metadata": {"labels": ctx.labels(COMPONENT, "minio-bucket")},
                    "spec": {
                        "restart_policy": "OnFailure",
                        "containers": [
                            {
                                "name": "mc",
                                "image": MC_IMAGE,
                                "command": ["sh", "-c"],
                                "args": [
                                    f"mc alias set store {self.endpoint}"
                                    ' "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"'
                                    f" && mc mb --ignore-existing store/{BUCKET}"
                                    ' && mc admin user add store "$AWS_ACCESS_KEY_ID"'
                                    ' "$AWS_SECRET_ACCESS_KEY"'
                                    " && (mc admin policy attach store readwrite --user"
                                    ' "$AWS_ACCESS_KEY_ID" || mc admin user info store'
                                    ' "$AWS_ACCESS_KEY_ID" | grep -q readwrite)'
                                ],
                                "env": credentials + user,
                            }
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[server, claim]),
        )
        self.register_outputs({"endpoint": self.endpoint})

    @property
    def endpoint(self) -> str:
        return f"http://{self.ctx.host('minio')}:9000"

    @property
    def uri(self) -> str:
        return f"s3://{BUCKET}/artifacts"

    def client_env(self, endpoint_var: str) -> list[k8s.core.v1.EnvVarArgsDict]:
        """What an in-cluster S3 client of the store needs: its endpoint under
        ``endpoint_var`` and the user's credentials from the store's Secret (never a value)."""
        return [
            {"name": endpoint_var, "value": self.endpoint},
            env_from_secret("AWS_ACCESS_KEY_ID", CREDENTIALS, "AWS_ACCESS_KEY_ID"),
            env_from_secret("AWS_SECRET_ACCESS_KEY", CREDENTIALS, "AWS_SECRET_ACCESS_KEY"),
        ]

    def outputs(self) -> dict[str, Any]:
        return {
            "kind": "minio",
            "uri": self.uri,
            "endpoint_url": service_url(self.ctx, self.service, "minio", 9000),
        }
