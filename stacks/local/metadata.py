"""Local metadata server: mlstack's own FastAPI + SQLAlchemy server (runner.metadata.server).

Started by module path, so the provisioner never imports the runner. The bearer token lives
in the secrets backend and reaches the server through its environment, never its argv.
"""

from __future__ import annotations

import hashlib

from stacks.local.artifact_store import root as artifact_root
from stacks.local.base import LocalContext, ServiceDef, digest
from stacks.outputs import MetadataOutputs
from stacks.spec import redact_url

TOKEN_SECRET = "mlstack-metadata-token"


def database_url(ctx: LocalContext) -> str:
    configured = ctx.spec.components.metadata.database_url
    return configured or f"sqlite:///{ctx.path('metadata', 'metadata.db')}"


def service(ctx: LocalContext, token: str) -> ServiceDef:
    spec = ctx.spec.components.metadata
    url = database_url(ctx)
    return ServiceDef(
        name="metadata",
        component="metadata",
        config={
            "database": redact_url(url),
            "database_hash": hashlib.sha256(url.encode()).hexdigest()[:12],
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
            # The dashboard reads step logs from the local artifact store folder, only there.
            "MLSTACK_METADATA_ARTIFACT_ROOT": str(artifact_root(ctx)),
        },
        fixed_port=spec.port,
        identity={"token": digest(token)},
        start_timeout=60.0,
        prepare=lambda: ctx.path("metadata").mkdir(parents=True, exist_ok=True),
    )


def outputs(port: int) -> MetadataOutputs:
    return MetadataOutputs(url=f"http://127.0.0.1:{port}", token_secret=TOKEN_SECRET)
