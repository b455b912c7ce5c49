"""Fixtures for the metadata server tests: an app over a fresh SQLite file per test."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runner.metadata.server import create_app


@pytest.fixture
def token() -> str:
    """A fresh bearer token."""
    return secrets.token_urlsafe(24)


@pytest.fixture
def app_client(tmp_path: Path, token: str) -> Iterator[TestClient]:
    """A TestClient that sends the right token, over a new SQLite database."""
    app = create_app(f"sqlite:///{tmp_path / 'metadata.db'}", token)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
