"""Experiment tracker and model registry: an MLflow server on ECS Fargate.

Backend store: database ``mlflow`` on the stack's RDS instance (the metadata component owns the
instance; the server creates its database on first start). Artifacts: the stack's bucket,
served through the tracking server (clients need no S3 credentials).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext, bucket_access, policy_document, service_role
from stacks.aws.metadata import MetadataServer, database_url
from stacks.aws.secrets import stack_secret
from stacks.aws.service import Container, fargate_service
from stacks.spec.aws import AwsMlflowTracker

MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.5.0"
DB_NAME = "mlflow"
PORT = 5000

# The official image has no PostgreSQL driver; install it, create the database once, serve.
_CREATE_DB = (
    "import os, psycopg2; from urllib.parse import urlsplit; "
    "u = urlsplit(os.environ['MLFLOW_BACKEND_STORE_URI']); "
    "c = psycopg2.connect(host=u.hostname, port=u.port, user=u.username, password=u.password,"
    " dbname='postgres'); c.autocommit = True; k = c.cursor(); "
    "k.execute('SELECT 1 FROM pg_database WHERE datname = %s', (u.path.strip('/'),)); "
    "k.fetchone() or k.execute('CREATE DATABASE ' + u.path.strip('/'))"
)
START = (
    "pip install --quiet --no-cache-dir psycopg2-binary boto3"
    f' && python -c "{_CREATE_DB}"'
    ' && exec mlflow server --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"'
    ' --artifacts-destination "$MLSTACK_ARTIFACTS" --host 0.0.0.0 --port 5000 --workers 1'
)


class Tracker(pulumi.ComponentResource):
    """MLflow task definition + service behind the stack's load balancer on port 80."""

    TYPE = "mlstack:aws:Tracker"

    def __init__(
        self,
        ctx: AwsContext,
        *,
        metadata: MetadataServer,
        bucket: aws.s3.Bucket,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.TYPE, "tracker", None, opts)
        spec = ctx.ident.spec.components.tracker
        assert isinstance(spec, AwsMlflowTracker)  # the program builds this only for mlflow
        child = pulumi.ResourceOptions(parent=self)
        task_role = service_role(
            "mlflow-task",
            name=ctx.name("mlflow", 64),
            service="ecs-tasks.amazonaws.com",
            policy=policy_document(*bucket_access(bucket.arn)),
            opts=child,
        )
        url_secret = stack_secret(
            ctx,
            "tracker-database-url",
            database_url(metadata.db, metadata.db_password, DB_NAME),
            self,
        )
        self.service = fargate_service(
            ctx,
            self,
            metadata.platform,
            Container(
                name="mlflow",
                image=MLFLOW_IMAGE,
                port=PORT,
                listener_port=80,
                cpu=int(spec.cpu * 1024),
                memory=int(spec.memory_gib * 1024),
                entry_point=["sh", "-c"],
                command=[START],
                environment={
                    "MLSTACK_ARTIFACTS": pulumi.Output.concat("s3://", bucket.bucket, "/mlflow"),
                    # Requests arrive with the load balancer's host name (MLflow >= 3.5 checks).
                    "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
                },
                secrets={"MLFLOW_BACKEND_STORE_URI": url_secret.arn},
                grace_seconds=300,  # pip install + migrations on first start
            ),
            task_role_arn=task_role.arn,
        )
        self.uri = pulumi.Output.concat("http://", metadata.platform.load_balancer.dns_name)
        self.register_outputs({"uri": self.uri})

    def outputs(self) -> dict[str, object]:
        return {"kind": "mlflow", "uri": self.uri}
