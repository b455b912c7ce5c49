"""Endpoint behaviour of the metadata server, through FastAPI's TestClient."""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runner.metadata.api_runs import pid_alive
from runner.metadata.db import normalise_url
from runner.metadata.server import create_app

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def _run(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"pipeline": "train", "stack": "local", "params": {"lr": 0.1}, **fields}
    response = client.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _step(client: TestClient, run_id: str, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post(f"/runs/{run_id}/steps", json={"name": name, "spec": {}, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _artifact(client: TestClient, name: str, step_id: str | None, **fields: Any) -> dict:
    body = {
        "uri": f"file:///store/{name}",
        "content_hash": "sha256:abc",
        "size": 12,
        "name": name,
        "type_name": "builtins.dict",
        "materializer": "json",
        "producer_step_id": step_id,
        **fields,
    }
    response = client.post("/artifacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# --- auth and health ------------------------------------------------------------------------


def test_health_needs_no_token_but_the_docs_do(app_client: TestClient) -> None:
    anonymous = TestClient(app_client.app)
    assert anonymous.get("/health").json() == {"status": "ok"}
    assert anonymous.get("/openapi.json").status_code == 401
    assert anonymous.get("/docs").status_code == 401


def test_every_other_endpoint_refuses_a_missing_or_wrong_token(app_client: TestClient) -> None:
    anonymous = TestClient(app_client.app)
    paths = app_client.get("/openapi.json").json()["paths"]
    checked = 0
    for template, operations in paths.items():
        if template == "/health":
            continue
        path = re.sub(r"\{[^}]+\}", "x", template)
        for method in operations:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eA=="}):
                response = anonymous.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["detail"] == "missing or invalid bearer token"
                assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked == 34  # every endpoint of the API but /health


def test_create_app_rejects_an_empty_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-empty token"):
        create_app(f"sqlite:///{tmp_path / 'm.db'}", "")


# --- pipelines and runs ---------------------------------------------------------------------


def test_pipelines_are_get_or_create(app_client: TestClient) -> None:
    first = app_client.post("/pipelines", json={"name": "train"}).json()
    again = app_client.post("/pipelines", json={"name": "train"}).json()
    app_client.post("/pipelines", json={"name": "etl"})
    assert first["id"] == again["id"]
    assert [p["name"] for p in app_client.get("/pipelines").json()] == ["etl", "train"]
    assert app_client.post("/pipelines", json={"name": ""}).status_code == 422


def test_run_lifecycle_and_timestamps(app_client: TestClient) -> None:
    run = _run(app_client, code_ref="git:abc", driver_pid=os.getpid())
    assert run["status"] == "pending"
    assert run["pipeline"] == "train" and run["params"] == {"lr": 0.1}
    assert ISO_UTC.match(run["created_at"]) and run["started_at"] is None

    running = app_client.patch(f"/runs/{run['id']}", json={"status": "running"}).json()
    assert running["status"] == "running" and ISO_UTC.match(running["started_at"])
    done = app_client.patch(
        f"/runs/{run['id']}", json={"status": "completed", "tracker_run_id": "mlflow-1"}
    ).json()
    assert done["tracker_run_id"] == "mlflow-1"
    assert done["started_at"] == running["started_at"]  # not restamped
    assert datetime.fromisoformat(done["ended_at"]) >= datetime.fromisoformat(done["started_at"])
    # A null status means "leave it", not "erase it".
    assert app_client.patch(f"/runs/{run['id']}", json={"status": None}).json()["status"] == (
        "completed"
    )


def test_run_validation_and_404(app_client: TestClient) -> None:
    assert app_client.get("/runs/nope").status_code == 404
    assert app_client.get("/runs/nope").json()["detail"] == "run 'nope' not found"
    assert app_client.patch("/runs/nope", json={"status": "failed"}).status_code == 404
    run = _run(app_client)
    assert app_client.patch(f"/runs/{run['id']}", json={"status": "done"}).status_code == 422
    assert app_client.patch(f"/runs/{run['id']}", json={"colour": "red"}).status_code == 422
    bad_pid = {"pipeline": "p", "stack": "s", "driver_pid": 0}
    assert app_client.post("/runs", json=bad_pid).status_code == 422


def test_list_runs_filters_newest_first(app_client: TestClient) -> None:
    a = _run(app_client, stack="local")
    b = _run(app_client, stack="aws", pipeline="etl")
    c = _run(app_client, stack="local")
    app_client.patch(f"/runs/{c['id']}", json={"status": "failed", "error": "boom"})

    def ids(query: str) -> list[str]:
        return [r["id"] for r in app_client.get(f"/runs{query}").json()]

    assert ids("") == [c["id"], b["id"], a["id"]]
    assert ids("?stack=local") == [c["id"], a["id"]]
    assert ids("?pipeline=etl") == [b["id"]]
    assert ids("?status=failed") == [c["id"]]
    assert ids("?limit=1") == [c["id"]]
    assert app_client.get("/runs?limit=0").status_code == 422


# --- steps ----------------------------------------------------------------------------------


def test_steps_are_unique_per_run(app_client: TestClient) -> None:
    run = _run(app_client)
    step = _step(app_client, run["id"], "train", cache_key="k1")
    assert step["status"] == "pending" and step["cache_key"] == "k1"
    clash = app_client.post(f"/runs/{run['id']}/steps", json={"name": "train"})
    assert clash.status_code == 409 and "already has a step named 'train'" in clash.text
    other = _run(app_client)
    _step(app_client, other["id"], "train")  # same name, other run: fine
    assert app_client.post("/runs/nope/steps", json={"name": "x"}).status_code == 404

    patched = app_client.patch(
        f"/steps/{step['id']}", json={"status": "failed", "error": "oom", "log_uri": "file:///l"}
    ).json()
    assert patched["error"] == "oom" and patched["ended_at"] is not None
    assert app_client.get(f"/steps/{step['id']}").json() == patched
    assert [s["name"] for s in app_client.get(f"/runs/{run['id']}/steps").json()] == ["train"]
    assert app_client.get(f"/runs/{run['id']}").json()["steps"] == [patched]
    assert app_client.get("/steps/nope").status_code == 404
    assert app_client.patch("/steps/nope", json={}).status_code == 404


def test_each_entry_into_running_is_an_attempt_and_a_retry_starts_clean(
    app_client: TestClient,
) -> None:
    run = _run(app_client)
    step = _step(app_client, run["id"], "train")
    assert "attempt" not in step["spec"]

    def patch(**body: Any) -> dict[str, Any]:
        response = app_client.patch(f"/steps/{step['id']}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    first = patch(status="running")
    assert first["spec"]["attempt"] == 1
    assert patch(status="running")["spec"]["attempt"] == 1  # already running: same attempt
    failed = patch(status="failed", error="boom")
    assert failed["ended_at"] is not None and failed["error"] == "boom"
    retry = patch(status="running")
    assert retry["spec"]["attempt"] == 2
    assert retry["ended_at"] is None and retry["error"] is None
    assert retry["started_at"] == first["started_at"]  # the step's time covers every attempt
    done = app_client.post(
        "/steps/batch", json={"updates": [{"id": step["id"], "status": "completed"}]}
    ).json()[0]
    assert done["ended_at"] is not None and done["error"] is None
    third = app_client.post(
        "/steps/batch", json={"updates": [{"id": step["id"], "status": "running"}]}
    ).json()[0]
    assert third["spec"]["attempt"] == 3


# --- artifacts, lineage, cache --------------------------------------------------------------


def test_artifacts_and_lineage_edges(app_client: TestClient) -> None:
    run = _run(app_client)
    load = _step(app_client, run["id"], "load")
    train = _step(app_client, run["id"], "train")
    data = _artifact(app_client, "data", load["id"], content_hash="sha256:data")
    model = _artifact(app_client, "model", train["id"])
    edge = app_client.post(
        f"/steps/{train['id']}/inputs", json={"artifact_id": data["id"], "name": "df"}
    )
    assert edge.status_code == 201
    assert edge.json()["direction"] == "input" and edge.json()["step_name"] == "train"

    lineage = app_client.get(f"/runs/{run['id']}/lineage").json()
    assert {(e["step_name"], e["direction"], e["name"], e["artifact_id"]) for e in lineage} == {
        ("load", "output", "data", data["id"]),
        ("train", "input", "df", data["id"]),
        ("train", "output", "model", model["id"]),
    }
    assert all(e["artifact_uri"].startswith("file:///store/") for e in lineage)

    assert app_client.get(f"/artifacts/{data['id']}").json() == data
    by_hash = app_client.get("/artifacts", params={"content_hash": "sha256:data"}).json()
    assert [a["id"] for a in by_hash] == [data["id"]]

    # A retried attempt records its inputs again: the same edge is fine, once.
    again = app_client.post(
        f"/steps/{train['id']}/inputs", json={"artifact_id": data["id"], "name": "df"}
    )
    assert again.status_code == 201 and again.json()["artifact_id"] == data["id"]
    edges = app_client.get(f"/runs/{run['id']}/lineage").json()
    assert len([e for e in edges if e["direction"] == "input" and e["name"] == "df"]) == 1
    other = app_client.post(
        f"/steps/{train['id']}/inputs", json={"artifact_id": model["id"], "name": "df"}
    )
    assert other.status_code == 409
    dup_output = {**data, "producer_step_id": load["id"]}
    for key in ("id", "created_at"):
        dup_output.pop(key)
    assert app_client.post("/artifacts", json=dup_output).status_code == 409
    missing = app_client.post(
        f"/steps/{train['id']}/inputs", json={"artifact_id": "no", "name": "x"}
    )
    assert missing.status_code == 404 and "artifact 'no'" in missing.text
    assert app_client.get("/artifacts/nope").status_code == 404
    assert app_client.get("/runs/nope/lineage").status_code == 404
    orphan = {**dup_output, "producer_step_id": "nope"}
    assert app_client.post("/artifacts", json=orphan).status_code == 404


def test_cache_lookup_picks_the_newest_completed_step(app_client: TestClient) -> None:
    steps = []
    for _ in range(3):
        run = _run(app_client)
        steps.append(_step(app_client, run["id"], "train", cache_key="key-1"))
    old, new, newest = steps
    app_client.patch(f"/steps/{old['id']}", json={"status": "completed"})
    app_client.patch(f"/steps/{new['id']}", json={"status": "completed"})
    app_client.patch(f"/steps/{newest['id']}", json={"status": "failed"})
    _artifact(app_client, "model", old["id"], uri="file:///old")
    model = _artifact(app_client, "model", new["id"], uri="file:///new")
    metrics = _artifact(app_client, "metrics", new["id"])

    hit = app_client.get("/cache/key-1").json()
    assert hit["step"]["id"] == new["id"]
    assert hit["outputs"] == {"model": model, "metrics": metrics}
    missing = app_client.get("/cache/key-2")
    assert missing.status_code == 404 and "key-2" in missing.json()["detail"]


# --- reaper ---------------------------------------------------------------------------------


def test_reap_fails_runs_whose_driver_died(app_client: TestClient, dead_pid: int) -> None:
    dead = _run(app_client, driver_pid=dead_pid)
    app_client.patch(f"/runs/{dead['id']}", json={"status": "running"})
    done = _step(app_client, dead["id"], "load", status="completed")
    running = _step(app_client, dead["id"], "train", status="running")
    pending = _step(app_client, dead["id"], "eval")
    alive = _run(app_client, driver_pid=os.getpid())
    app_client.patch(f"/runs/{alive['id']}", json={"status": "running"})
    no_pid = _run(app_client)
    elsewhere = _run(app_client, stack="aws", driver_pid=dead_pid)

    reaped = app_client.post("/runs/reap", json={"stack": "local"}).json()
    assert reaped == {"run_ids": [dead["id"]]}

    after = app_client.get(f"/runs/{dead['id']}").json()
    assert after["status"] == "failed" and after["error"] == "driver process exited"
    assert after["ended_at"] is not None
    status = {s["id"]: s["status"] for s in after["steps"]}
    assert status == {
        done["id"]: "completed",
        running["id"]: "cancelled",
        pending["id"]: "cancelled",
    }
    assert app_client.get(f"/runs/{alive['id']}").json()["status"] == "running"
    assert app_client.get(f"/runs/{no_pid['id']}").json()["status"] == "pending"
    assert app_client.get(f"/runs/{elsewhere['id']}").json()["status"] == "pending"
    # Without a stack every stack is reaped; a second pass finds nothing left.
    assert app_client.post("/runs/reap").json() == {"run_ids": [elsewhere["id"]]}
    assert app_client.post("/runs/reap", json={}).json() == {"run_ids": []}


def test_pid_alive_treats_zombies_and_bad_pids_as_gone(dead_pid: int) -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid)
    assert not pid_alive(0) and not pid_alive(-1)
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it has exited but is not yet reaped
            with open(f"/proc/{zombie.pid}/stat", "rb") as stat:
                if stat.read().rpartition(b")")[2].split()[0] == b"Z":
                    break
            time.sleep(0.005)
        assert not pid_alive(zombie.pid)
    finally:
        zombie.wait()


# --- deployments ----------------------------------------------------------------------------


def test_deployments_crud(app_client: TestClient) -> None:
    run = _run(app_client)
    body = {
        "name": "iris",
        "stack": "local",
        "model_name": "iris-model",
        "model_version": "3",
        "run_id": run["id"],
        "details": {"pid": 42, "port": 9000},
    }
    created = app_client.post("/deployments", json=body)
    assert created.status_code == 201
    dep = created.json()
    assert dep["status"] == "starting" and dep["endpoint_url"] is None

    assert app_client.post("/deployments", json=body).status_code == 409
    other_stack = app_client.post("/deployments", json={**body, "stack": "aws", "run_id": None})
    assert other_stack.status_code == 201

    patched = app_client.patch(
        f"/deployments/{dep['id']}",
        json={
            "status": "running",
            "endpoint_url": "http://127.0.0.1:9000/invocations",
            "details": {"port": None, "log": "/tmp/d.log"},
        },
    ).json()
    assert patched["status"] == "running"
    assert patched["details"] == {"pid": 42, "log": "/tmp/d.log"}
    assert patched["updated_at"] > dep["updated_at"]
    assert app_client.get(f"/deployments/{dep['id']}").json() == patched

    listed = app_client.get("/deployments", params={"stack": "local", "status": "running"})
    assert [d["id"] for d in listed.json()] == [dep["id"]]
    assert len(app_client.get("/deployments").json()) == 2

    app_client.patch(f"/deployments/{dep['id']}", json={"status": "stopped"})
    assert app_client.post("/deployments", json=body).status_code == 201  # name free again
    assert app_client.get("/deployments/nope").status_code == 404
    assert app_client.patch("/deployments/nope", json={}).status_code == 404
    bad_run = app_client.post("/deployments", json={**body, "name": "x", "run_id": "nope"})
    assert bad_run.status_code == 404


# --- database URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
    ],
)
def test_postgres_urls_use_psycopg(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = create_app(f"sqlite:///{tmp_path / 'm.db'}", "t").state.engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
