"""``PUT/GET /stacks``: the CLI's view of the stack, as the dashboard's stacks page reads it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from runner.metadata import dashboard

REPORT: dict[str, Any] = {
    "provider": "local",
    "status": "up",
    "created_at": "2026-12-01T10:00:00Z",
    "expires_at": "2026-12-01T14:00:00+01:00",
    "budget_usd": 5.0,
    "spend_usd": 0.0,
    "checked_at": "2026-12-01T12:00:00Z",
    "tracker_url": "http://127.0.0.1:5000",
    "services": [{"name": "tracker", "state": "healthy", "url": "http://127.0.0.1:5000"}],
}


def test_a_report_is_replaced_and_read_back_in_utc(app_client: TestClient) -> None:
    first = app_client.put("/stacks/dev", json=REPORT)
    assert first.status_code == 200, first.text
    assert first.json()["expires_at"].startswith("2026-12-01T13:00:00")  # stored in UTC
    changed = {**REPORT, "status": "failed", "services": []}
    assert app_client.put("/stacks/dev", json=changed).status_code == 200
    got = app_client.get("/stacks/dev").json()
    assert got["status"] == "failed" and got["services"] == [] and got["stack"] == "dev"
    assert [s["stack"] for s in app_client.get("/stacks").json()] == ["dev"]


def test_an_unreported_stack_is_a_404(app_client: TestClient) -> None:
    answer = app_client.get("/stacks/nope")
    assert answer.status_code == 404 and "stack report 'nope'" in answer.json()["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"tracker_url": "javascript:alert(1)"},  # it becomes a link on the page
        {"provider": "gcp"},
        {"spend_usd": -1},
        {"created_at": 1700000000},
        {"services": [{"name": "x", "state": "healthy", "bogus": 1}]},
        {"colour": "red"},
    ],
)
def test_a_bad_report_is_a_422(app_client: TestClient, change: dict[str, Any]) -> None:
    assert app_client.put("/stacks/dev", json={**REPORT, **change}).status_code == 422


def test_the_dashboard_cookie_reads_but_never_writes_a_report(app_client: TestClient) -> None:
    assert app_client.put("/stacks/dev", json=REPORT).status_code == 200
    login = app_client.post("/ui/login-codes").json()
    browser = TestClient(app_client.app)
    assert browser.get("/stacks").status_code == 401
    answer = browser.get(login["path"], follow_redirects=False)
    browser.cookies.set(dashboard.COOKIE, answer.cookies[dashboard.COOKIE])
    assert browser.get("/stacks/dev").json()["provider"] == "local"
    assert browser.put("/stacks/dev", json={**REPORT, "status": "x"}).status_code == 401
