"""Experiment tracker: an MLflow Deployment; artifacts in the stack's MinIO bucket.

Backend store: SQLite on a PVC, or database ``mlflow`` on the PostgreSQL server given as
``components.metadata.database_url`` (created on first start). ``components.tracker.image``
names an MLflow image that already has psycopg2 and boto3: nothing is installed at start (the
way for air-gapped clusters). Without it, the official image gets exactly :data:`PINS`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.kubernetes.artifact_store import BUCKET, ArtifactStore
from stacks.kubernetes.base import (
    K8sContext,
    deployment,
    env_from_secret,
    service_url,
    volume_claim,
)
from stacks.kubernetes.metadata import DATABASES, MetadataServer
from stacks.spec.kubernetes import KubernetesMlflowTracker

MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.5.0"  # the same server as the AWS stack's
# What the official image lacks, pinned: the same versions at every start, on every cluster.
PINS = ("psycopg2-binary==2.9.10", "boto3==1.40.0")
COMPONENT = "tracker"
PORT = 5000
SIZE_GIB = 1

# The official image has no PostgreSQL driver: install it, create the database once, serve.
_CREATE_DB = (
    "import os, psycopg2; from urllib.parse import urlsplit; "
    "u = urlsplit(os.environ['MLFLOW_BACKEND_STORE_URI']); "
    "c = psycopg2.connect(host=u.hostname, port=u.port or 5432, user=u.username,"
    " password=u.password, dbname='postgres'); c.autocommit = True; k = c.cursor(); "
    "k.execute('SELECT 1 FROM pg_database WHERE datname = %s', (u.path.strip('/'),)); "
    "k.fetchone() or k.execute('CREATE DATABASE ' + u.path.strip('/'))"
)
_SERVE = (
    'exec mlflow server --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"'
    f" --artifacts-destination s3://{BUCKET}/mlflow --host 0.0.0.0 --port {PORT} --workers 1"
)


def start_command(postgres: bool, own_image: bool = False) -> str:
    """Create the database (PostgreSQL), serve; install :data:`PINS` on the default image only."""
    install = "" if own_image else f"pip install --quiet --no-cache-dir {' '.join(PINS)} && "
    if postgres:
        return f'{install}python -c "{_CREATE_DB}" && {_SERVE}'
    return f"{install}{_SERVE}"


class Tracker(pulumi.ComponentResource):
    """MLflow Deployment + Service (+ PVC when on SQLite)."""

    TYPE = "mlstack:kubernetes:Tracker"

    def __init__(
        self,
        ctx: K8sContext,
        *,
        store: ArtifactStore,
        metadata: MetadataServer,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "tracker", None, opts)
        spec = ctx.spec.components.tracker
        assert isinstance(spec, KubernetesMlflowTracker)  # built only for mlflow
        env: list[k8s.core.v1.EnvVarArgsDict] = [
            *store.client_env("MLFLOW_S3_ENDPOINT_URL"),
            {"name": "MLFLOW_SERVER_ALLOWED_HOSTS", "value": "*"},
        ]
        claim = None
        if metadata.postgres:
            env.append(env_from_secret("MLFLOW_BACKEND_STORE_URI", DATABASES, "mlflow"))
        else:
            claim = "mlflow-data"
            volume_claim(ctx, claim, COMPONENT, SIZE_GIB, self)
            env.append({"name": "MLFLOW_BACKEND_STORE_URI", "value": "sqlite:////data/mlflow.db"})
        _, svc = deployment(
            ctx,
            "mlflow",
            COMPONENT,
            {
                "name": "mlflow",
                "image": spec.image or MLFLOW_IMAGE,
                "command": ["sh", "-c"],
                "args": [start_command(metadata.postgres, spec.image is not None)],
                "env": env,
                "readiness_probe": {
                    "http_get": {"path": "/health", "port": PORT},
                    "initial_delay_seconds": 20,
                    "failure_threshold": 30,
                },
                "resources": {
                    "requests": {
                        "cpu": f"{int(spec.cpu * 1000)}m",
                        "memory": f"{int(spec.memory_gib * 1024)}Mi",
                    }
                },
            },
            PORT,
            self,
            claim=claim,
            exposed=True,
        )
        self.uri = service_url(ctx, svc, "mlflow", PORT)
        self.register_outputs({"uri": self.uri})

    def outputs(self) -> dict[str, Any]:
        return {"kind": "mlflow", "uri": self.uri}
