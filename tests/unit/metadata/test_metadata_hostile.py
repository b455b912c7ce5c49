"""Hostile and buggy clients of the metadata server: every bad request is a documented 4xx."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runner.metadata.server import create_app


def _run(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"pipeline": "train", "stack": "local", **fields}
    response = client.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("pid", [4294967296, 9999999999999999999, 2**31, -1, 0])
def test_driver_pid_out_of_pid_t_range_is_422(app_client: TestClient, pid: int) -> None:
    body = {"pipeline": "train", "stack": "local", "driver_pid": pid}
    response = app_client.post("/runs", json=body)
    assert response.status_code == 422, response.text
    assert "driver_pid" in response.text
    run = _run(app_client)
    assert app_client.patch(f"/runs/{run['id']}", json={"driver_pid": pid}).status_code == 422


def test_reap_survives_a_bad_record_already_in_the_database(
    app_client: TestClient, dead_pid: int
) -> None:
    """A record written before validation existed (or by hand) never makes reap fail."""
    bad = _run(app_client, driver_pid=12345)
    gone = _run(app_client, driver_pid=dead_pid)
    session = app_client.app.state.sessionmaker()  # type: ignore[attr-defined]
    with session:
        from runner.metadata.models import Run

        session.get(Run, bad["id"]).driver_pid = 4294967296  # type: ignore[union-attr]
        session.commit()
    response = app_client.post("/runs/reap", json={"stack": "local"})
    assert response.status_code == 200, response.text
    assert set(response.json()["run_ids"]) == {bad["id"], gone["id"]}


def test_artifact_size_beyond_sqlite_integer_is_422(app_client: TestClient) -> None:
    body = {
        "uri": "file:///s/x",
        "content_hash": "h",
        "name": "x",
        "type_name": "t",
        "materializer": "json",
    }
    for size in (2.3e20, 2**63, -1):
        response = app_client.post("/artifacts", json={**body, "size": size})
        assert response.status_code == 422, (size, response.text)
    assert app_client.post("/artifacts", json={**body, "size": 2**63 - 1}).status_code == 201


@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+14:00",  # converting to UTC overflows
        "9999-12-31T23:59:59-14:00",
        3.95e-170,  # a number is not a time
        0,
        "1969-12-31T23:59:59Z",
        "2024-01-01T00:00:00+23:59",  # no such offset on Earth
        "3000-01-01T00:00:00Z",
    ],
)
def test_insane_times_are_422(app_client: TestClient, when: object) -> None:
    run = _run(app_client)
    response = app_client.patch(f"/runs/{run['id']}", json={"ended_at": when})
    assert response.status_code == 422, response.text
    step = app_client.post(f"/runs/{run['id']}/steps", json={"name": "s"}).json()
    assert app_client.patch(f"/steps/{step['id']}", json={"started_at": when}).status_code == 422


def test_sane_times_with_offsets_are_stored_as_utc(app_client: TestClient) -> None:
    run = _run(app_client)
    response = app_client.patch(
        f"/runs/{run['id']}", json={"ended_at": "2024-05-01T12:00:00+14:00"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["ended_at"].startswith("2024-04-30T22:00:00")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected_not_stored_as_null(
    app_client: TestClient, token: str
) -> None:
    raw = f'{{"pipeline": "train", "stack": "local", "params": {{"alpha": {token}}}}}'
    headers = {"Content-Type": "application/json"}
    response = app_client.post("/runs", content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert "params" in response.text
    run = _run(app_client)
    nested = f'{{"name": "s", "spec": {{"a": [1, {{"b": {token}}}]}}}}'
    response = app_client.post(f"/runs/{run['id']}/steps", content=nested, headers=headers)
    assert response.status_code == 422, response.text
    image = (
        '{"stack": "s", "pipeline": "p", "image": "i", "tag": "t", "action": "built",'
        f' "seconds": {token}}}'
    )
    assert app_client.post("/images", content=image, headers=headers).status_code == 422


def test_big_bodies_are_413(app_client: TestClient) -> None:
    blob = "x" * (11 * 1024 * 1024)
    response = app_client.post("/runs", json={"pipeline": "p", "stack": "s", "code_ref": blob})
    assert response.status_code == 413, response.text

    def chunks() -> Any:  # no Content-Length: the cap holds while streaming too
        for _ in range(12):
            yield b" " * (1024 * 1024)

    response = app_client.post(
        "/runs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert _run(app_client, code_ref="y" * 1024 * 1024)["code_ref"] == "y" * 1024 * 1024


def test_deeply_nested_json_is_a_4xx(app_client: TestClient) -> None:
    raw = '{"pipeline": "p", "stack": "s", "params": {"a": ' + "[" * 100_000 + "]" * 100_000
    raw += "}}"
    response = app_client.post("/runs", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


def test_docs_and_openapi_need_the_token(app_client: TestClient) -> None:
    anonymous = TestClient(app_client.app)
    assert anonymous.get("/openapi.json").status_code == 401
    assert anonymous.get("/docs").status_code == 401
    assert anonymous.get("/redoc").status_code in (401, 404)
    assert app_client.get("/openapi.json").status_code == 200
    docs = app_client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_openapi_documents_every_status_code(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            where = f"{method.upper()} {path}"
            if path != "/health":
                assert {"401", "413"} <= codes, where
            if "{" in path and method != "put":  # a PUT creates what is missing: no 404
                assert "404" in codes, where
            if method in ("post", "patch", "put") and path not in ("/runs/reap", "/ui/login-codes"):
                assert "422" in codes, where
    for path in ("/runs/{run_id}/steps", "/artifacts", "/steps/{step_id}/inputs", "/deployments"):
        assert "409" in spec["paths"][path]["post"]["responses"], path


def test_database_file_is_private(tmp_path: Path, token: str) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "private" / "metadata.db"
        db.parent.mkdir()
        app = create_app(f"sqlite:///{db}", token)
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
            _run(client)
    finally:
        os.umask(old)
    for path in db.parent.iterdir():  # the database and its -wal/-shm companions
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
