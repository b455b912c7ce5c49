"""Experiment tracker and model registry: an MLflow server on ECS Fargate.

Backend store: database ``mlflow`` on the stack's RDS instance (the metadata component owns the
instance; the server creates its database on first start). Artifacts: the stack's bucket,
served through the tracking server (clients need no S3 credentials). MLflow runs its basic-auth
app (:mod:`stacks.mlflow_auth`): user ``mlstack``, a password generated at ``up`` and kept in
Secrets Manager, users in database ``mlflow_auth``; the listener is HTTPS on 443.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from stacks.aws.base import AwsContext, bucket_access, policy_document, service_role
from stacks.aws.metadata import MetadataServer, database_url
from stacks.aws.secrets import TRACKER_PASSWORD_SECRET, stack_secret
from stacks.aws.service import Container, fargate_service
from stacks.mlflow_auth import APP_NAME, USERNAME, WRITE_INI
from stacks.spec.aws import AwsMlflowTracker

MLFLOW_VERSION = "3.5.0"
MLFLOW_IMAGE = f"ghcr.io/mlflow/mlflow:v{MLFLOW_VERSION}"
DB_NAME = "mlflow"
AUTH_DB_NAME = "mlflow_auth"
PORT = 5000
LISTENER_PORT = 443

# The official image has no PostgreSQL driver nor the auth app's Flask-WTF; install them
# (pinned to the image's MLflow), create both databases once, write the auth config, serve.
_CREATE_DB = (
    "import os, psycopg2; from urllib.parse import urlsplit; "
    "us = [urlsplit(os.environ[k])"
    " for k in ('MLFLOW_BACKEND_STORE_URI', 'MLFLOW_AUTH_DATABASE_URI')]; "
    "u = us[0]; "
    "c = psycopg2.connect(host=u.hostname, port=u.port, user=u.username, password=u.password,"
    " dbname='postgres'); c.autocommit = True; k = c.cursor(); "
    "[k.execute('SELECT 1 FROM pg_database WHERE datname = %s', (d.path.strip('/'),)) or "
    "k.fetchone() or k.execute('CREATE DATABASE ' + d.path.strip('/')) for d in us]"
)
START = (
    f"pip install --quiet --no-cache-dir psycopg2-binary boto3 'mlflow[auth]=={MLFLOW_VERSION}'"
    f' && python -c "{_CREATE_DB}"'
    f' && python -c "{WRITE_INI}"'
    ' && exec mlflow server --backend-store-uri "$MLFLOW_BACKEND_STORE_URI"'
    f" --app-name {APP_NAME}"
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
        password: pulumi.Input[str],
        flask_secret: pulumi.Input[str],
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
        auth_url_secret = stack_secret(
            ctx,
            "tracker-auth-database-url",
            database_url(metadata.db, metadata.db_password, AUTH_DB_NAME),
            self,
        )
        password_secret = stack_secret(ctx, TRACKER_PASSWORD_SECRET, password, self)
        flask_key = stack_secret(ctx, "tracker-flask-secret-key", flask_secret, self)
        self.service = fargate_service(
            ctx,
            self,
            metadata.platform,
            Container(
                name="mlflow",
                image=MLFLOW_IMAGE,
                port=PORT,
                listener_port=LISTENER_PORT,
                cpu=int(spec.cpu * 1024),
                memory=int(spec.memory_gib * 1024),
                entry_point=["sh", "-c"],
                command=[START],
                environment={
                    "MLSTACK_ARTIFACTS": pulumi.Output.concat("s3://", bucket.bucket, "/mlflow"),
                    # Requests arrive with the load balancer's host name (MLflow >= 3.5 checks).
                    "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
                    "MLFLOW_AUTH_CONFIG_PATH": "/tmp/mlstack-basic-auth.ini",
                },
                secrets={
                    "MLFLOW_BACKEND_STORE_URI": url_secret.arn,
                    "MLFLOW_AUTH_DATABASE_URI": auth_url_secret.arn,
                    "MLSTACK_TRACKER_PASSWORD": password_secret.arn,
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_key.arn,
                },
                secret_versions=[
                    url_secret.version,
                    auth_url_secret.version,
                    password_secret.version,
                    flask_key.version,
                ],
                # The auth app answers 401 on every route but the static UI; /health is open.
                grace_seconds=300,  # pip install + migrations on first start
            ),
            task_role_arn=task_role.arn,
        )
        self.uri = metadata.platform.url(LISTENER_PORT)
        self.ca_pem = metadata.platform.tls.ca_pem
        self.register_outputs({"uri": self.uri})

    def outputs(self) -> dict[str, object]:
        return {
            "kind": "mlflow",
            "uri": self.uri,
            "ca_pem": self.ca_pem,
            "username": USERNAME,
            "password_secret": TRACKER_PASSWORD_SECRET,
        }
