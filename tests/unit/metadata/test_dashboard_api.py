"""The dashboard's login, its session cookie (GET only) and its read-only routes, over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runner.metadata import dashboard


def _step(client: TestClient, log_uri: str | None = None) -> str:
    run = client.post("/runs", json={"pipeline": "p", "stack": "s"}).json()
    step = client.post(f"/runs/{run['id']}/steps", json={"name": "a"}).json()
    if log_uri is not None:
        client.patch(f"/steps/{step['id']}", json={"log_uri": log_uri})
    return str(step["id"])


def test_a_login_code_opens_one_session_once(app_client: TestClient) -> None:
    login = app_client.post("/ui/login-codes").json()
    assert login["path"] == f"/ui/login?code={login['code']}"
    browser = TestClient(app_client.app)
    assert browser.get("/runs").status_code == 401
    answer = browser.get(login["path"], follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert answer.headers["referrer-policy"] == "no-referrer"
    browser.cookies.set(dashboard.COOKIE, answer.cookies[dashboard.COOKIE])
    assert browser.get("/runs").status_code == 200
    # The cookie never authorizes a write, nor mints another code.
    assert browser.post("/pipelines", json={"name": "x"}).status_code == 401
    assert browser.post("/ui/login-codes").status_code == 401
    # Spent: the same code is refused by a second browser.
    assert TestClient(app_client.app).get(login["path"]).status_code == 401


@pytest.mark.parametrize("code", ["", "nope", "x" * 5000])
def test_a_bad_login_code_is_refused(app_client: TestClient, code: str) -> None:
    answer = TestClient(app_client.app).get(f"/ui/login?code={code}", follow_redirects=False)
    assert answer.status_code == 401 and "set-cookie" not in answer.headers


def test_an_expired_code_is_refused(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "CODE_TTL", -1.0)
    login = app_client.post("/ui/login-codes").json()
    assert TestClient(app_client.app).get(login["path"]).status_code == 401


def test_static_files_need_no_session_and_name_nothing(app_client: TestClient) -> None:
    anonymous = TestClient(app_client.app)
    page = anonymous.get("/ui/")
    assert page.status_code == 200 and "/ui/assets/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert anonymous.get("/ui/assets/app.js").status_code == 200
    assert anonymous.get("/ui/assets/../server.py").status_code == 404


def test_step_log_reads_by_offset_inside_the_artifact_root(
    app_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "artifacts"
    (root / "logs").mkdir(parents=True)
    log = root / "logs" / "a.log"
    log.write_text("héllo\nworld\n")
    monkeypatch.setenv(dashboard.LOG_ROOT_ENV, str(root))
    step_id = _step(app_client, log.as_uri())
    first = app_client.get(f"/steps/{step_id}/log", params={"limit": 2}).json()
    # "é" is two bytes: a chunk of 2 stops before it rather than split it.
    assert first == {"text": "h", "offset": 0, "next_offset": 1, "size": 13}
    rest = app_client.get(f"/steps/{step_id}/log", params={"offset": 1}).json()
    assert rest["text"] == "éllo\nworld\n" and rest["next_offset"] == 13
    with log.open("a") as fh:
        fh.write("more\n")  # a growing log: poll from next_offset
    more = app_client.get(f"/steps/{step_id}/log", params={"offset": 13}).json()
    assert more["text"] == "more\n" and more["size"] == 18
    past = app_client.get(f"/steps/{step_id}/log", params={"offset": 10**9}).json()
    assert past["text"] == "" and past["offset"] == 18


@pytest.mark.parametrize(
    ("params", "code"),
    [({"offset": -1}, 422), ({"offset": "x"}, 422), ({"limit": 0}, 422), ({"limit": 10**9}, 422)],
)
def test_step_log_bad_query_is_422(
    app_client: TestClient, tmp_path: Path, params: dict[str, object], code: int
) -> None:
    step_id = _step(app_client, (tmp_path / "a.log").as_uri())
    assert app_client.get(f"/steps/{step_id}/log", params=params).status_code == code


def test_step_log_outside_the_root_or_missing_is_404(
    app_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "artifacts"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    assert app_client.get("/steps/nope/log").status_code == 404
    assert app_client.get(f"/steps/{_step(app_client)}/log").status_code == 404  # no log yet
    step_id = _step(app_client, secret.as_uri())
    assert app_client.get(f"/steps/{step_id}/log").status_code == 404  # no root configured
    monkeypatch.setenv(dashboard.LOG_ROOT_ENV, str(root))
    for uri in (secret.as_uri(), f"{root.as_uri()}/../secret.txt", "s3://b/k.log", "/etc/passwd"):
        step_id = _step(app_client, uri)
        answer = app_client.get(f"/steps/{step_id}/log")
        assert answer.status_code == 404 and "not yours" not in answer.text, uri
    gone = _step(app_client, (root / "gone.log").as_uri())
    assert app_client.get(f"/steps/{gone}/log").status_code == 404


def test_the_artifact_root_may_be_a_file_uri_and_only_its_logs_are_read(
    app_client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "artifacts"
    (root / "logs" / "r").mkdir(parents=True)
    (root / "logs" / "r" / "a.log").write_text("ok\n")
    (root / "objects").mkdir()
    (root / "objects" / "model.pkl").write_text("not a log")
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (root / "logs" / "r" / "link.log").symlink_to(outside)  # leads out of the folder
    monkeypatch.setenv(dashboard.LOG_ROOT_ENV, root.as_uri() + "/")
    ok = app_client.get(f"/steps/{_step(app_client, f'{root.as_uri()}/logs/r/a.log')}/log")
    assert ok.json()["text"] == "ok\n"
    for uri in (
        f"{root.as_uri()}/objects/model.pkl",
        f"{root.as_uri()}/logs/r/link.log",
        f"{root.as_uri()}/logs/r",  # a folder
        f"{root.as_uri()}/logs/r/../../objects/model.pkl",
    ):
        answer = app_client.get(f"/steps/{_step(app_client, uri)}/log")
        assert answer.status_code == 404, uri
        assert "not yours" not in answer.text and "not a log" not in answer.text, uri


@pytest.mark.parametrize("root", ["ftp://host/x", "s3://", "relative/folder"])
def test_a_malformed_artifact_root_is_503_and_stops_the_server_at_start(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch, root: str
) -> None:
    monkeypatch.setenv(dashboard.LOG_ROOT_ENV, root)
    answer = app_client.get(f"/steps/{_step(app_client, 'file:///x/logs/a.log')}/log")
    assert answer.status_code == 503
    assert dashboard.LOG_ROOT_ENV in answer.json()["detail"]
    env = {**os.environ, "MLSTACK_METADATA_TOKEN": "t", dashboard.LOG_ROOT_ENV: root}
    started = subprocess.run(
        [sys.executable, "-m", "runner.metadata.server", "--database-url", "sqlite://"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 2
    (line,) = started.stderr.strip().splitlines()
    assert line.startswith(f"error: {dashboard.LOG_ROOT_ENV}={root!r}")


def test_artifact_lineage_names_producer_and_consumers_across_runs(app_client: TestClient) -> None:
    producer = _step(app_client)
    art = app_client.post(
        "/artifacts",
        json={"uri": "file:///a", "content_hash": "h", "size": 1, "name": "out",
              "type_name": "int", "materializer": "json", "producer_step_id": producer},
    ).json()  # fmt: skip
    consumer = _step(app_client)
    app_client.post(f"/steps/{consumer}/inputs", json={"artifact_id": art["id"], "name": "x"})
    lineage = app_client.get(f"/artifacts/{art['id']}/lineage").json()
    assert lineage["producer"]["step_id"] == producer
    assert [(c["step_id"], c["name"]) for c in lineage["consumers"]] == [(consumer, "x")]
    assert app_client.get("/artifacts/nope/lineage").status_code == 404
