"""Artifact stores: where step outputs live, one fsspec filesystem per kind.

``open_store(outputs)`` builds the stack's store from its outputs; ``host_paths(outputs)``
says which host folders a step container must mount to reach it (none for object stores)
and ``container_env(outputs)`` which of this process's environment variables it needs (the
AWS credentials of an S3 store: they are never in the outputs, the state or the image).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.roles import Role

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore
    from stacks.outputs import StackOutputs


class StoreKind:
    """How one kind of artifact store is opened from its outputs."""

    @staticmethod
    def storage_options(coords: Any) -> dict[str, Any] | None:
        return None

    @staticmethod
    def host_paths(coords: Any) -> list[Path]:
        return []

    @staticmethod
    def container_env(coords: Any) -> dict[str, str]:
        return {}


# The AWS SDK's own credential and region variables: what "the usual AWS environment" is.
AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


class LocalFolder(StoreKind):
    @staticmethod
    def host_paths(coords: Any) -> list[Path]:
        return [Path(str(coords.uri).removeprefix("file://"))]


class S3Compatible(StoreKind):
    """AWS S3, MinIO or any S3-compatible endpoint (s3fs); credentials from the AWS chain."""

    @staticmethod
    def storage_options(coords: Any) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {}
        if getattr(coords, "endpoint_url", None):
            kwargs["endpoint_url"] = coords.endpoint_url
        if getattr(coords, "region", None):
            kwargs["region_name"] = coords.region
        return {"client_kwargs": kwargs} if kwargs else None

    @staticmethod
    def container_env(coords: Any) -> dict[str, str]:
        return {name: os.environ[name] for name in AWS_ENV if os.environ.get(name)}


ARTIFACT_STORES: Role[StoreKind] = Role(
    "artifact store",
    {
        "local": "runner.artifact_stores:LocalFolder",
        "s3": "runner.artifact_stores:S3Compatible",
        "minio": "runner.artifact_stores:S3Compatible",
    },
)


def open_store(outputs: StackOutputs) -> ArtifactStore:
    """The stack's artifact store, as its outputs describe it."""
    from runner.artifacts import ArtifactStore

    coords = outputs.artifact_store
    kind = ARTIFACT_STORES.get(coords.kind)
    # The stack's `up` made a local store's folder: a run never makes it again after `down`.
    return ArtifactStore(
        coords.uri, storage_options=kind.storage_options(coords), root_must_exist=True
    )


def host_paths(outputs: StackOutputs) -> list[Path]:
    """Host folders a step container mounts (at the same path) to reach the store."""
    return ARTIFACT_STORES.get(outputs.artifact_store.kind).host_paths(outputs.artifact_store)


def container_env(outputs: StackOutputs) -> dict[str, str]:
    """Environment a step container needs to reach the store (taken from this process's)."""
    coords = outputs.artifact_store
    return ARTIFACT_STORES.get(coords.kind).container_env(coords)
