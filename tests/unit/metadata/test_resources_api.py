"""``/resources``: runtime resources recorded against their stack, for the drain."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

ARN = "arn:aws:batch:us-east-1:123456789012:job-definition/mlstack-demo-ab12cd-0f:1"


def _record(client: TestClient, status: int = 201, **fields: Any) -> dict[str, Any]:
    body = {
        "stack": "demo",
        "kind": "batch:job-definition",
        "name": "mlstack-demo-ab12cd-0f:1",
        "arn": ARN,
        "region": "us-east-1",
        "tags": {"mlstack:stack": "demo", "mlstack:stack-id": "demo-ab12cd"},
        **fields,
    }
    response = client.post("/resources", json=body)
    assert response.status_code == status, response.text
    return response.json()


def test_recording_is_idempotent_on_stack_kind_and_name(app_client: TestClient) -> None:
    first = _record(app_client)
    assert first["deleted_at"] is None and first["tags"]["mlstack:stack"] == "demo"
    again = _record(app_client, status=200, details={"seen": 2})
    assert again["id"] == first["id"] and again["details"] == {"seen": 2}
    assert again["created_at"] == first["created_at"]
    assert len(app_client.get("/resources", params={"stack": "demo"}).json()) == 1
    # The same name under another kind or stack is another resource.
    other_kind = _record(app_client, kind="sagemaker:model")
    other_stack = _record(app_client, stack="other")
    assert len({first["id"], other_kind["id"], other_stack["id"]}) == 3


def test_list_filters_by_stack_kind_and_liveness(app_client: TestClient) -> None:
    job = _record(app_client)
    model = _record(app_client, kind="sagemaker:model", name="m1", arn=None)
    _record(app_client, stack="other", kind="ecr:image", name="mlstack/p:abc")
    assert app_client.patch(f"/resources/{job['id']}", json={}).status_code == 200

    def ids(**params: Any) -> list[str]:
        response = app_client.get("/resources", params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()]

    assert ids(stack="demo") == [job["id"], model["id"]]
    assert ids(stack="demo", live="true") == [model["id"]]
    assert ids(stack="demo", live="false") == [job["id"]]
    assert ids(stack="demo", kind="batch:job-definition") == [job["id"]]
    assert len(ids()) == 3
    assert ids(stack="nobody") == []


def test_mark_deleted_keeps_the_first_time_and_a_new_record_revives(
    app_client: TestClient,
) -> None:
    row = _record(app_client)
    when = "2026-01-02T03:04:05+01:00"
    marked = app_client.patch(f"/resources/{row['id']}", json={"deleted_at": when}).json()
    assert marked["deleted_at"].startswith("2026-01-02T02:04:05")
    twice = app_client.patch(f"/resources/{row['id']}", json={}).json()
    assert twice["deleted_at"] == marked["deleted_at"]
    revived = _record(app_client, status=200)  # registered again: live again
    assert revived["id"] == row["id"] and revived["deleted_at"] is None
    missing = app_client.patch("/resources/nope", json={})
    assert missing.status_code == 404 and "resource 'nope' not found" in missing.text


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "Batch Job Definition"},
        {"kind": ""},
        {"stack": ""},
        {"stack": "s" * 256},
        {"name": ""},
        {"name": "n" * 1025},
        {"tags": {"k": 1}},
        {"tags": {"": "v"}},
        {"tags": {f"k{i}": "v" for i in range(51)}},
        {"details": {"x": float("inf")}},
        {"colour": "red"},
    ],
)
def test_bad_records_are_422(app_client: TestClient, fields: dict[str, Any]) -> None:
    body = {"stack": "demo", "kind": "ecr:image", "name": "mlstack/p:abc", **fields}
    raw = json.dumps(body, allow_nan=True)  # Infinity goes out as JSON would never say it
    response = app_client.post(
        "/resources", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, (fields, response.text)


def test_bad_updates_and_queries_are_422(app_client: TestClient) -> None:
    row = _record(app_client)
    path = f"/resources/{row['id']}"
    assert app_client.patch(path, json={"deleted_at": 12}).status_code == 422
    assert app_client.patch(path, json={"deleted_at": "3999-01-01T00:00:00Z"}).status_code == 422
    assert app_client.patch(path, json={"deleted": False}).status_code == 422
    assert app_client.get("/resources", params={"kind": "Not A Kind"}).status_code == 422
    assert app_client.get("/resources", params={"live": "maybe"}).status_code == 422
    assert app_client.get("/resources", params={"limit": 0}).status_code == 422


def test_every_resources_endpoint_needs_the_token(app_client: TestClient) -> None:
    row = _record(app_client)
    anonymous = TestClient(app_client.app)
    wrong = {"Authorization": "Bearer not-the-token"}
    for headers in ({}, wrong):
        assert anonymous.post("/resources", json={}, headers=headers).status_code == 401
        assert anonymous.get("/resources", headers=headers).status_code == 401
        patch = anonymous.patch(f"/resources/{row['id']}", json={}, headers=headers)
        assert patch.status_code == 401
    live = app_client.get("/resources", params={"live": "true"}).json()
    assert [r["id"] for r in live] == [row["id"]]  # nothing was marked without the token
