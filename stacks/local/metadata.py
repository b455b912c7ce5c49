"""Local metadata server: mlstack's own FastAPI + SQLAlchemy server (runner.metadata.server).

Started by module path, so the provisioner never imports the runner. The bearer token lives
in the secrets backend and reaches the server through its environment, never its argv.
"""

from __future__ import annotations

import hashlib

from stacks.local.artifact_store import flavor_module
from stacks.local.base import LocalContext, ServiceDef, digest
from stacks.outputs import MetadataOutputs
from stacks.spec import redact_url

TOKEN_SECRET = "mlstack-metadata-token"


def database_url(ctx: LocalContext) -> str:
    configured = ctx.spec.components.metadata.database_url
    return configured or f"sqlite:///{ctx.path('metadata', 'metadata.db')}"


def store_env(ctx: LocalContext) -> dict[str, str]:
    """Where the server reads step logs for the dashboard: the stack's artifact store.

    An S3 store is reached with the AWS environment ``up`` runs in (the daemon inherits it;
    no credential is written anywhere) at the spec's endpoint and region.
    """
    store = flavor_module(ctx).outputs(ctx)
    env = {"MLSTACK_METADATA_ARTIFACT_ROOT": store.uri}
    endpoint = getattr(store, "endpoint_url", None)
    region = getattr(store, "region", None)
    if endpoint:
        env["AWS_ENDPOINT_URL_S3"] = endpoint
    if region:
        env["AWS_REGION"] = region
    return env


def service(ctx: LocalContext, token: str) -> ServiceDef:
    spec = ctx.spec.components.metadata
    url = database_url(ctx)
    store = store_env(ctx)
    return ServiceDef(
        name="metadata",
        component="metadata",
        config={
            "database": redact_url(url),
            "database_hash": hashlib.sha256(url.encode()).hexdigest()[:12],
            # The store it reads logs from: a change (root, endpoint, region) restarts it.
            "artifact_root": store["MLSTACK_METADATA_ARTIFACT_ROOT"],
            "artifact_store_hash": digest(repr(sorted(store.items()))),
        },
        argv=lambda port: [
            ctx.python,
            "-m",
            "runner.metadata.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={
            "MLSTACK_METADATA_TOKEN": token,
            "MLSTACK_METADATA_DATABASE_URL": url,
            **store,
        },
        fixed_port=spec.port,
        identity={"token": digest(token)},
        start_timeout=60.0,
        prepare=lambda: ctx.path("metadata").mkdir(parents=True, exist_ok=True),
    )


def outputs(port: int) -> MetadataOutputs:
    return MetadataOutputs(url=f"http://127.0.0.1:{port}", token_secret=TOKEN_SECRET)
