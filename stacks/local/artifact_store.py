"""Local artifact store: a folder, addressed as a file:// URI."""

from __future__ import annotations

import os
from pathlib import Path

from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import ArtifactStoreOutputs


def root(ctx: LocalContext) -> Path:
    custom = ctx.spec.components.artifact_store.path
    return Path(custom).expanduser().resolve() if custom else ctx.path("artifacts")


def service(ctx: LocalContext) -> ServiceDef:
    folder = root(ctx)

    def check() -> str | None:
        if not folder.is_dir():
            return f"folder {folder} is missing"
        if not os.access(folder, os.W_OK):
            return f"folder {folder} is not writable"
        return None

    return ServiceDef(
        name="artifact_store",
        component="artifact_store",
        config={"path": str(folder)},
        prepare=lambda: folder.mkdir(parents=True, exist_ok=True),
        check=check,
    )


def outputs(ctx: LocalContext) -> ArtifactStoreOutputs:
    return ArtifactStoreOutputs(kind="local", uri=root(ctx).as_uri())
