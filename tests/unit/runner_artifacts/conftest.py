"""Fixtures for the artifact store and materializer tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import materializers
from runner.artifacts import ArtifactStore


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    """A file:// store in a fresh folder."""
    return ArtifactStore(f"file://{tmp_path / 'store'}")


@pytest.fixture
def registry() -> Iterator[None]:
    """Undo every materializer registration the test makes."""
    before = set(materializers._registry)
    yield
    for name in set(materializers._registry) - before:
        materializers.unregister_materializer(name)
