"""The metadata server on a real PostgreSQL, driven through the typed client.

A throw-away cluster is made with Debian's ``initdb``/``pg_ctl`` in a temporary folder,
listening on 127.0.0.1 and a free port, and is always stopped at the end. Without the
binaries or psycopg the test skips, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

import pytest

from runner.errors import MetadataError
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, free_port, start_server
from runner.metadata.schemas import RunStatus, StepStatus

pytestmark = pytest.mark.services

TOKEN = secrets.token_urlsafe(24)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Cluster:
    """A running throw-away PostgreSQL cluster."""

    port: int
    data_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """initdb + pg_ctl start a cluster (as the postgres user when we are root); always stopped."""
    if find_spec("psycopg") is None:
        _unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = _postgres_bin()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bindir is not None
    as_postgres: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user for initdb")
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root and 'runuser' is missing")
        as_postgres = [str(runuser), "-u", "postgres", "--"]

    # Not pytest's tmp_path: its parents are private to root, the postgres user must enter.
    root = Path(tempfile.mkdtemp(prefix="mlstack-pg-"))
    data_dir, socket_dir, log = root / "data", root / "sock", root / "postgres.log"
    socket_dir.mkdir()
    if owner is not None:
        for path in (root, socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()

    def run(*command: str) -> None:
        result = subprocess.run(
            [*as_postgres, *command], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{command[0]} failed: " + " | ".join(tail))

    pg_ctl = str(bindir / "pg_ctl")
    started = False
    try:
        initdb = str(bindir / "initdb")
        run(initdb, "-D", str(data_dir), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-h 127.0.0.1 -p {port} -k {socket_dir} -F"
        run(pg_ctl, "-D", str(data_dir), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        started = True
        yield Cluster(port, data_dir)
    finally:
        if started:
            subprocess.run(
                [*as_postgres, pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(cluster: Cluster) -> Iterator[ServerProcess]:
    """The metadata server on a fresh database of the cluster, given a plain postgresql:// URL."""
    import psycopg

    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE metadata")
    process = start_server(cluster.url("metadata"), TOKEN)
    try:
        yield process
    finally:
        process.stop()


def test_client_round_trip_on_postgres(server: ServerProcess, cluster: Cluster) -> None:
    with MetadataClient(server.url, TOKEN) as client:
        assert client.health()
        run = client.create_run("pg-train", "local", {"lr": 0.1, "layers": [3, 4]})
        assert run.params == {"lr": 0.1, "layers": [3, 4]}  # JSON column round trip
        started = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
        run = client.update_run(run.id, status="running", started_at=started)
        assert run.started_at == started and run.started_at.tzinfo is not None

        load = client.create_step(run.id, "load", {"fn": "pkg.load"}, cache_key="pg-k-load")
        train = client.create_step(run.id, "train", cache_key="pg-k-train")
        with pytest.raises(MetadataError, match="already has a step named 'train'"):
            client.create_step(run.id, "train")  # unique constraint -> 409 on PostgreSQL too
        data = client.create_artifact("file:///s/d", "sha256:d", 2**40, "data", "df", "pq", load.id)
        assert data.size == 2**40  # BIGINT
        client.update_step(load.id, status=StepStatus.COMPLETED)
        client.add_input(train.id, data.id, "df")
        model = client.create_artifact("file:///s/m", "sha256:m", 5, "model", "M", "pkl", train.id)
        client.update_step(train.id, status="completed")
        client.update_run(run.id, status=RunStatus.COMPLETED)

        detail = client.get_run(run.id)
        assert detail.status is RunStatus.COMPLETED and detail.ended_at is not None
        assert [s.name for s in detail.steps] == ["load", "train"]
        edges = {(e.step_name, e.direction.value, e.name) for e in client.lineage(run.id)}
        assert edges == {
            ("load", "output", "data"),
            ("train", "input", "df"),
            ("train", "output", "model"),
        }
        hit = client.lookup_cache("pg-k-train")
        assert hit is not None and hit.outputs == {"model": model}
        assert client.lookup_cache("pg-missing") is None
        assert [r.id for r in client.list_runs(pipeline="pg-train")] == [run.id]

        gone = subprocess.Popen(["true"])
        gone.wait()
        orphan = client.create_run("pg-train", "local", driver_pid=gone.pid)
        assert client.reap_runs("local") == [orphan.id]

        dep = client.create_deployment("pg-iris", "local", "iris", "1", details={"pid": 1})
        dep = client.update_deployment(dep.id, status="running", details={"port": 9000})
        assert dep.details == {"pid": 1, "port": 9000}
        assert [d.id for d in client.list_deployments(status="running")] == [dep.id]

    with pytest.raises(MetadataError, match="refused the token") as caught:
        MetadataClient(server.url, "wrong-token").list_runs()
    assert "wrong-token" not in str(caught.value)

    # The rows really live in PostgreSQL, not in some fallback SQLite file.
    import psycopg

    with psycopg.connect(cluster.url("metadata")) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE id = %s", (run.id,)).fetchone()
        assert row == (1,)


def test_an_older_postgres_database_gets_the_heartbeat_columns(cluster: Cluster) -> None:
    """A database from before run heartbeats: the server adds the columns, old rows stay."""
    import psycopg

    new_columns = ("host", "heartbeat_seconds", "heartbeat_at", "cancel_requested_at")
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE metadata_old")
    first = start_server(cluster.url("metadata_old"), TOKEN)
    try:
        with MetadataClient(first.url, TOKEN) as client:
            old = client.create_run("pg-old", "shared", driver_pid=os.getpid())
    finally:
        first.stop()
    with psycopg.connect(cluster.url("metadata_old"), autocommit=True) as conn:
        for column in new_columns:
            conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    again = start_server(cluster.url("metadata_old"), TOKEN)
    try:
        with MetadataClient(again.url, TOKEN) as client:
            kept = client.get_run(old.id)
            assert kept.host is None and kept.heartbeat_age is None
            assert client.heartbeat(old.id).heartbeat_at is not None
            new = client.create_run("pg-old", "shared", host="laptop-b", heartbeat_seconds=10)
            asked = client.update_run(new.id, cancel_requested=True)
            assert asked.host == "laptop-b" and asked.cancel_requested_at is not None
            assert asked.cancel_requested_at.tzinfo is not None  # timestamptz, as created
    finally:
        again.stop()
    with psycopg.connect(cluster.url("metadata_old")) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'"
        ).fetchall()
    assert set(new_columns) <= {name for (name,) in rows}
