"""The images table: POST/GET /images, the client's record_image/list_images, `mlstack images`."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from runner.errors import MetadataError
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, start_server
from runner.metadata.schemas import ImageAction
from runner.metadata.server import create_app

TOKEN = secrets.token_urlsafe(24)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(f"sqlite:///{tmp_path / 'metadata.db'}", TOKEN)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def _body(**extra: object) -> dict[str, object]:
    return {
        "stack": "dev",
        "pipeline": "train",
        "image": "127.0.0.1:5000/mlstack/train:abc",
        "tag": "abc",
        "action": "built",
        "reason": "no tag abc in the registry",
        "seconds": 12.5,
        "details": {"requirements": ["six"]},
    } | extra


def test_post_and_list_images(api: TestClient) -> None:
    first = api.post("/images", json=_body())
    assert first.status_code == 201
    assert first.json()["action"] == "built" and first.json()["details"] == {
        "requirements": ["six"]
    }
    api.post("/images", json=_body(action="reused", seconds=0.1))
    api.post("/images", json=_body(stack="other"))
    api.post("/images", json=_body(pipeline="score"))
    listed = api.get("/images", params={"stack": "dev"}).json()
    assert [(i["pipeline"], i["action"]) for i in listed] == [
        ("score", "built"), ("train", "reused"), ("train", "built"),
    ]  # fmt: skip
    assert len(api.get("/images", params={"stack": "dev", "pipeline": "train"}).json()) == 2
    assert len(api.get("/images", params={"limit": 1}).json()) == 1


@pytest.mark.parametrize(
    "bad",
    [{"action": "rebuilt"}, {"seconds": -1}, {"tag": ""}, {"token": "x"}],
)
def test_bad_image_records_are_refused(api: TestClient, bad: dict[str, object]) -> None:
    assert api.post("/images", json=_body(**bad)).status_code == 422


def test_images_need_the_token(api: TestClient) -> None:
    assert api.get("/images", headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("images-metadata")
    started = start_server(
        f"sqlite:///{folder / 'metadata.db'}", TOKEN, log_path=folder / "server.log"
    )
    try:
        yield started
    finally:
        started.stop()


def test_client_round_trip(server: ServerProcess) -> None:
    with MetadataClient(server.url, TOKEN) as client:
        built = client.record_image(
            "live", "train", "r/mlstack/train:t1", "t1", ImageAction.BUILT, "first", 3.0,
            {"requirements": ["six"]},
        )  # fmt: skip
        client.record_image("live", "train", "r/mlstack/train:t1", "t1", "reused", "same", 0.2)
        assert built.action is ImageAction.BUILT and built.details == {"requirements": ["six"]}
        found = client.list_images("live")
        assert [i.action.value for i in found] == ["reused", "built"]
        assert client.list_images("live", pipeline="nope") == []
        with pytest.raises(MetadataError, match="invalid image"):
            client.record_image("live", "train", "img", "t", "exploded", "", 1.0)


def test_mlstack_images_command(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner import cli_runs
    from provisioner.cli import cli
    from stacks.outputs import StackOutputs

    outputs = StackOutputs.model_validate(
        {
            "stack": "cli-images", "stack_id": "s", "provider": "local",
            "artifact_store": {"kind": "local", "uri": "file:///tmp/x"},
            "container_registry": {"kind": "local", "url": "127.0.0.1:5000"},
            "orchestrator": {"kind": "docker"},
            "secrets": {
                "kind": "local", "path": "/nonexistent/store.enc", "key_file": "/nonexistent/key"
            },
            "tracker": {"kind": "none"}, "deployer": {"kind": "none"},
            "metadata": {"url": server.url, "token": TOKEN},
        }
    )  # fmt: skip
    monkeypatch.setattr(cli_runs, "stack_outputs", lambda name: outputs)
    runner = CliRunner()
    empty = runner.invoke(cli, ["images", "--stack", "cli-images"])
    assert empty.exit_code == 0 and "no images on stack cli-images yet" in empty.output
    with MetadataClient(server.url, TOKEN) as client:
        client.record_image("cli-images", "train", "r/x:t1", "t1", "built", "first image", 9.0)
        client.record_image(
            "cli-images", "train", "r/x:t1", "t1", "reused",
            "tag t1 already in registry: same base image, requirements and runtime", 0.1,
        )  # fmt: skip
    table = runner.invoke(cli, ["images", "--stack", "cli-images"])
    assert table.exit_code == 0, table.output
    assert "reused" in table.output and "already in registry" in table.output
    as_json = runner.invoke(cli, ["images", "--stack", "cli-images", "--json"])
    rows = json.loads(as_json.output)
    assert [(r["action"], r["tag"]) for r in rows] == [("reused", "t1"), ("built", "t1")]
