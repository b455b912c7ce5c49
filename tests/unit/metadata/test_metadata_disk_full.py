"""A full disk under the metadata database: a 507 naming the file, never a 500."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.errors import MetadataError
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, start_server

pytestmark = pytest.mark.services


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root: mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_a_507_naming_the_database(tiny_disk: Path, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    db = tiny_disk / "metadata.db"
    server: ServerProcess
    with (
        start_server(f"sqlite:///{db}", token, log_path=tmp_path / "server.log") as server,
        MetadataClient(server.url, token, timeout=30) as client,
    ):
        run = client.create_run("fill", "local", {})
        with pytest.raises(MetadataError) as caught:
            for i in range(200):
                client.create_step(run.id, f"s{i}", {"blob": "x" * 100_000})
        message = str(caught.value)
        assert "507" in message and str(db) in message, message
        assert "Traceback" not in server.log_tail(50)
        assert client.health()  # the server still answers
