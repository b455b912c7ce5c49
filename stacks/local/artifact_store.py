"""Local artifact stores, one module per flavor: a folder here; S3 in artifact_store_s3.py.

``FLAVORS`` is the one table the local engine reads: flavor -> the module that provisions it
(``service(ctx)`` and ``outputs(ctx)``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from stacks.local.base import LocalContext, ServiceDef
from stacks.outputs import ArtifactStoreOutputs, LocalArtifactStoreOutputs
from stacks.spec.local import LocalArtifactStore


def root(ctx: LocalContext) -> Path:
    spec = ctx.spec.components.artifact_store
    custom = spec.path if isinstance(spec, LocalArtifactStore) else None
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
    return LocalArtifactStoreOutputs(uri=root(ctx).as_uri())


def flavor_module(ctx: LocalContext) -> ModuleType:
    """The module provisioning the spec's artifact store flavor."""
    import importlib

    return importlib.import_module(FLAVORS[ctx.spec.flavor_of("artifact_store")])


FLAVORS = {
    "local": "stacks.local.artifact_store",
    "s3": "stacks.local.artifact_store_s3",
}
