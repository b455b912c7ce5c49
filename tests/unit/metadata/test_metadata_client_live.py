"""The typed client against a real ``python -m runner.metadata.server`` subprocess."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.errors import MetadataError
from runner.metadata import TOKEN_ENV
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, free_port, start_server
from runner.metadata.schemas import DeploymentStatus, RunStatus, StepStatus

TOKEN = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One live server for the module, always stopped at the end."""
    folder = tmp_path_factory.mktemp("metadata")
    started = start_server(
        f"sqlite:///{folder / 'metadata.db'}", TOKEN, log_path=folder / "server.log"
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[MetadataClient]:
    """A client with the right token."""
    with MetadataClient(server.url, TOKEN) as metadata:
        yield metadata


def test_round_trip(client: MetadataClient) -> None:
    """Every client call once, as a pipeline run would make them."""
    assert client.health()
    pipeline = client.get_or_create_pipeline("live-train")
    assert pipeline.name in [p.name for p in client.list_pipelines()]

    run = client.create_run("live-train", "local", {"lr": 0.1}, code_ref="git:abc")
    assert run.status is RunStatus.PENDING and run.pipeline_id == pipeline.id
    started = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    run = client.update_run(run.id, status="running", started_at=started, tracker_run_id="t-1")
    assert run.started_at == started and run.tracker_run_id == "t-1"

    load = client.create_step(run.id, "load", {"fn": "pkg.load"}, cache_key="live-k-load")
    train = client.create_step(run.id, "train", {"fn": "pkg.train"}, cache_key="live-k-train")
    assert client.lookup_cache("live-k-load") is None  # not completed yet
    data = client.create_artifact("file:///s/data", "sha256:d", 10, "data", "dict", "json", load.id)
    client.update_step(load.id, status=StepStatus.COMPLETED, log_uri="file:///s/load.log")
    client.add_input(train.id, data.id, "df")
    model = client.create_artifact("file:///s/m", "sha256:m", 99, "model", "Model", "pkl", train.id)
    client.update_step(train.id, status="completed")
    client.update_run(run.id, status=RunStatus.COMPLETED)

    detail = client.get_run(run.id)
    assert detail.status is RunStatus.COMPLETED and detail.ended_at is not None
    assert [s.name for s in detail.steps] == ["load", "train"]
    assert [s.id for s in client.list_steps(run.id)] == [load.id, train.id]
    assert client.get_step(load.id).log_uri == "file:///s/load.log"
    assert client.get_artifact(model.id) == model
    assert [a.id for a in client.list_artifacts(content_hash="sha256:d")] == [data.id]
    edges = {(e.step_name, e.direction.value, e.name) for e in client.lineage(run.id)}
    assert edges == {
        ("load", "output", "data"),
        ("train", "input", "df"),
        ("train", "output", "model"),
    }
    hit = client.lookup_cache("live-k-train")
    assert hit is not None and hit.step.id == train.id and hit.outputs == {"model": model}
    assert run.id in [r.id for r in client.list_runs(stack="local", status="completed")]

    dep = client.create_deployment("live-iris", "local", "iris", "1", run_id=run.id)
    assert dep.status is DeploymentStatus.STARTING
    dep = client.update_deployment(
        dep.id, status="running", endpoint_url="http://127.0.0.1:1/", details={"pid": 7}
    )
    assert dep.details == {"pid": 7}
    assert client.get_deployment(dep.id) == dep
    assert [d.id for d in client.list_deployments(stack="local", status="running")] == [dep.id]


def test_reap_through_the_client(client: MetadataClient) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = client.create_run("live-reap", "reap-stack", driver_pid=gone.pid)
    alive = client.create_run("live-reap", "reap-stack", driver_pid=os.getpid())
    assert client.reap_runs("reap-stack") == [dead.id]
    assert client.get_run(dead.id).error == "driver process exited"
    assert client.get_run(alive.id).status is RunStatus.PENDING


def test_bad_token_is_refused_without_leaking_it(server: ServerProcess) -> None:
    wrong = "not-the-token-" + secrets.token_hex(8)
    bad = MetadataClient(server.url, wrong)
    with pytest.raises(MetadataError, match="refused the token") as caught:
        bad.list_runs()
    for text in (str(caught.value), repr(caught.value), repr(bad), str(caught.value.hint)):
        assert wrong not in text and TOKEN not in text
    assert repr(bad) == f"MetadataClient(url={server.url!r})"
    assert TOKEN not in repr(MetadataClient(server.url, TOKEN))
    assert bad.health()  # /health needs no token
    bad.close()


def test_errors_name_the_missing_thing(client: MetadataClient) -> None:
    with pytest.raises(MetadataError, match="run 'no-such-run' not found"):
        client.get_run("no-such-run")
    with pytest.raises(MetadataError, match="deployment 'nope' not found"):
        client.update_deployment("nope", status="stopped")
    with pytest.raises(MetadataError, match="invalid run"):
        client.create_run("", "local")
    run = client.create_run("live-errors", "local")
    client.create_step(run.id, "only")
    with pytest.raises(MetadataError, match="already has a step named 'only'"):
        client.create_step(run.id, "only")


def test_unreachable_server() -> None:
    port = free_port()
    client = MetadataClient(f"http://127.0.0.1:{port}", TOKEN, timeout=2)
    with pytest.raises(MetadataError, match="is not reachable") as caught:
        client.list_runs()
    assert TOKEN not in str(caught.value)
    assert not client.health()
    with pytest.raises(MetadataError, match="not an http"):
        MetadataClient("127.0.0.1:8123", TOKEN)


def test_keep_alive_survives_a_server_restart(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'metadata.db'}"
    port = free_port()
    with start_server(database, TOKEN, port=port) as first:
        client = MetadataClient(first.url, TOKEN)
        run = client.create_run("restart", "local")
    # The kept-alive socket is now dead; the next call must reconnect on its own.
    with start_server(database, TOKEN, port=port):
        assert client.get_run(run.id).id == run.id
        client.close()
        assert client.get_run(run.id).id == run.id  # close() then reuse reconnects
        client.close()


def test_a_forked_child_uses_its_own_connection(client: MetadataClient) -> None:
    run = client.create_run("fork", "local")
    pid = os.fork()
    if pid == 0:  # child: must not touch the parent's socket
        try:
            client.update_step(client.create_step(run.id, "child").id, status="completed")
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [s.name for s in client.get_run(run.id).steps] == ["child"]


def test_server_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "runner.metadata.server", "--database-url", "sqlite://"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: {TOKEN_ENV} is not set; the metadata server needs a bearer token"
    ]


def test_the_server_log_never_holds_the_token(
    server: ServerProcess, client: MetadataClient
) -> None:
    client.list_runs()
    with pytest.raises(MetadataError):
        client.get_step("missing")
    assert TOKEN not in server.log_tail(10_000)
    assert TOKEN not in str(server.argv)
