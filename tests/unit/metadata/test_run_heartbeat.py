"""Run heartbeats and cancel requests on the metadata server (runner/heartbeat.py), and the
columns they need added to a database made by an older release."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runner.heartbeat import this_host
from runner.metadata.server import create_app

NEW_COLUMNS = ("host", "heartbeat_seconds", "heartbeat_at", "cancel_requested_at")


def _run(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"pipeline": "train", "stack": "local", **fields}
    response = client.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_heartbeat_stamps_the_run_and_reports_a_cancel_request(app_client: TestClient) -> None:
    run = _run(app_client, host="laptop-b", heartbeat_seconds=10, driver_pid=os.getpid())
    assert run["host"] == "laptop-b" and run["heartbeat_seconds"] == 10
    assert run["heartbeat_at"] is None and 0 <= run["heartbeat_age"] < 5
    assert run["cancel_requested_at"] is None

    beat = app_client.post(f"/runs/{run['id']}/heartbeat")
    assert beat.status_code == 200, beat.text
    assert beat.json()["heartbeat_at"] is not None and beat.json()["cancel_requested_at"] is None

    asked = app_client.patch(f"/runs/{run['id']}", json={"cancel_requested": True})
    assert asked.status_code == 200 and asked.json()["cancel_requested_at"] is not None
    assert asked.json()["status"] == "pending"  # only the driver changes the status
    again = app_client.post(f"/runs/{run['id']}/heartbeat").json()
    assert again["cancel_requested_at"] == asked.json()["cancel_requested_at"]

    assert app_client.post("/runs/nope/heartbeat").status_code == 404
    no_un_cancel = app_client.patch(f"/runs/{run['id']}", json={"cancel_requested": False})
    assert no_un_cancel.status_code == 422 and "cancel_requested" in no_un_cancel.text
    for bad in (0, -1, 3601, "often"):
        sent = app_client.post(
            "/runs", json={"pipeline": "p", "stack": "s", "heartbeat_seconds": bad}
        )
        assert sent.status_code == 422 and "heartbeat_seconds" in sent.text, bad
    long_host = app_client.post("/runs", json={"pipeline": "p", "stack": "s", "host": "h" * 256})
    assert long_host.status_code == 422 and "host" in long_host.text


def test_reap_judges_a_remote_driver_by_its_heartbeat(
    app_client: TestClient, dead_pid: int
) -> None:
    # Another host: its pid means nothing here, only its heartbeat counts.
    fresh = _run(app_client, host="laptop-b", heartbeat_seconds=0.2, driver_pid=dead_pid)
    stale = _run(app_client, host="laptop-c", heartbeat_seconds=0.2, driver_pid=os.getpid())
    # This host: its process counts, whatever its heartbeat.
    local_dead = _run(app_client, host=this_host(), heartbeat_seconds=0.2, driver_pid=dead_pid)
    local_alive = _run(app_client, host=this_host(), heartbeat_seconds=3600, driver_pid=1)
    time.sleep(0.7)  # > 3 intervals of 0.2 s
    assert app_client.post(f"/runs/{fresh['id']}/heartbeat").json()["heartbeat_age"] < 0.5

    reaped = set(app_client.post("/runs/reap", json={"stack": "local"}).json()["run_ids"])
    assert reaped == {stale["id"], local_dead["id"]}
    after = app_client.get(f"/runs/{stale['id']}").json()
    assert after["status"] == "failed"
    assert after["error"] == "driver on laptop-c stopped sending heartbeats"
    assert app_client.get(f"/runs/{local_dead['id']}").json()["error"] == "driver process exited"
    assert app_client.get(f"/runs/{fresh['id']}").json()["status"] == "pending"
    assert app_client.get(f"/runs/{local_alive['id']}").json()["status"] == "pending"


def _drop_new_columns(db: Path) -> None:
    """Make ``db`` look like one an older release made: runs without the new columns."""
    with sqlite3.connect(db) as conn:
        for column in NEW_COLUMNS:
            conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        assert not set(NEW_COLUMNS) & {row[1] for row in conn.execute("PRAGMA table_info(runs)")}


def test_an_older_database_gets_the_heartbeat_columns(tmp_path: Path, token: str) -> None:
    db = tmp_path / "old.db"
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(f"sqlite:///{db}", token), headers=headers) as client:
        old = _run(client, driver_pid=os.getpid())
    _drop_new_columns(db)

    with TestClient(create_app(f"sqlite:///{db}", token), headers=headers) as client:
        kept = client.get(f"/runs/{old['id']}").json()
        assert kept["status"] == "pending" and kept["host"] is None
        assert kept["heartbeat_age"] is None  # its driver never promised to beat
        beat = client.post(f"/runs/{old['id']}/heartbeat").json()
        assert beat["heartbeat_at"] is not None
        new = _run(client, host="laptop-b", heartbeat_seconds=10)
        assert client.get(f"/runs/{new['id']}").json()["host"] == "laptop-b"
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    assert set(NEW_COLUMNS) <= columns


def test_heartbeat_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.heartbeat import interval
    from runner.metadata.schemas import HEARTBEAT_SECONDS
    from stacks.common.errors import UsageError

    monkeypatch.delenv("MLSTACK_HEARTBEAT_SECONDS", raising=False)
    assert interval() == HEARTBEAT_SECONDS
    monkeypatch.setenv("MLSTACK_HEARTBEAT_SECONDS", "0.5")
    assert interval() == 0.5
    for bad in ("0", "soon", "nan", "1e9"):
        monkeypatch.setenv("MLSTACK_HEARTBEAT_SECONDS", bad)
        with pytest.raises(UsageError, match="MLSTACK_HEARTBEAT_SECONDS") as caught:
            interval()
        assert caught.value.exit_code == 2
    monkeypatch.setenv("MLSTACK_HOSTNAME", "  ci-box-7 ")
    assert this_host() == "ci-box-7"
    monkeypatch.setenv("MLSTACK_HOSTNAME", "")
    assert this_host() and this_host() != "ci-box-7"
