"""Metadata server: mlstack's server as a Deployment, on PostgreSQL or SQLite-on-PVC.

With ``components.metadata.database_url`` (a PostgreSQL server reachable from the cluster) the
metadata server uses that database and MLflow gets database ``mlflow`` on the same server; the
URLs live in a Secret. Without it, each keeps SQLite on its own PersistentVolumeClaim.

The image is ``components.metadata.image``; by default ``<stack registry>/mlstack-metadata:
<version>``, which you push after ``up``: neither its rollout nor its Service's endpoints are
awaited (nodes may not pull from the in-cluster registry), so ``up`` finishes either way.
"""

from __future__ import annotations

from importlib import metadata as importlib_metadata
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from stacks.kubernetes.artifact_store import ArtifactStore
from stacks.kubernetes.base import (
    K8sContext,
    deployment,
    env_from_secret,
    service_url,
    volume_claim,
)
from stacks.kubernetes.secrets import TOKEN_KEY, TOKEN_SECRET

COMPONENT = "metadata"
DATABASES = "mlstack-databases"
PORT = 8080
SIZE_GIB = 1


def image_version() -> str:
    try:
        return importlib_metadata.version("mlstack")
    except importlib_metadata.PackageNotFoundError:
        return "dev"


def with_database(url: str, name: str) -> str:
    """The same PostgreSQL server, another database (driver-neutral ``postgresql://``)."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql", path=f"/{name}").geturl()


class MetadataServer(pulumi.ComponentResource):
    """Database settings (Secret or PVC), Deployment + Service of the metadata server."""

    TYPE = "mlstack:kubernetes:MetadataServer"

    def __init__(
        self,
        ctx: K8sContext,
        *,
        registry_url: str,
        store: ArtifactStore,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "metadata", None, opts)
        spec = ctx.spec.components.metadata
        self.ctx = ctx
        self.postgres = spec.database_url is not None
        env: list[k8s.core.v1.EnvVarArgsDict] = [
            env_from_secret("MLSTACK_METADATA_TOKEN", TOKEN_SECRET, TOKEN_KEY),
            # The dashboard's log panel reads step logs from the store (read-only use).
            {"name": "MLSTACK_METADATA_ARTIFACT_ROOT", "value": store.uri},
            *store.client_env("AWS_ENDPOINT_URL_S3"),
        ]
        claim = None
        if spec.database_url:
            k8s.core.v1.Secret(
                "databases",
                metadata=ctx.meta(DATABASES, COMPONENT),
                string_data={
                    "metadata": pulumi.Output.secret(spec.database_url),
                    "mlflow": pulumi.Output.secret(with_database(spec.database_url, "mlflow")),
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            env.append(env_from_secret("MLSTACK_METADATA_DATABASE_URL", DATABASES, "metadata"))
        else:
            claim = "metadata-data"
            volume_claim(ctx, claim, COMPONENT, SIZE_GIB, self)
            env.append(
                {"name": "MLSTACK_METADATA_DATABASE_URL", "value": "sqlite:////data/metadata.db"}
            )
        image = spec.image or f"{registry_url}/mlstack-metadata:{image_version()}"
        _, svc = deployment(
            ctx,
            "metadata",
            COMPONENT,
            {
                "name": "metadata",
                "image": image,
                "command": ["python", "-m", "runner.metadata.server"],
                "args": ["--host", "0.0.0.0", "--port", str(PORT)],
                "env": env,
                "readiness_probe": {"http_get": {"path": "/health", "port": PORT}},
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            },
            PORT,
            self,
            claim=claim,
            wait=spec.image is not None,
            exposed=True,
        )
        self.url = service_url(ctx, svc, "metadata", PORT)
        self.register_outputs({"url": self.url})

    def outputs(self) -> dict[str, Any]:
        return {"url": self.url, "token_secret": TOKEN_SECRET}
