"""``GET /steps/{id}/log`` from an s3:// artifact root: a real metadata server process reading a
real moto S3 server over HTTP on 127.0.0.1, the logs written by the runner's own store code."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.artifacts import ArtifactStore
from runner.metadata.client import MetadataClient
from runner.metadata.launcher import ServerProcess, free_port, start_server
from runner.metadata.log_reader import ROOT_ENV
from tests.conftest import aws_test_env

pytestmark = pytest.mark.services

TOKEN = secrets.token_urlsafe(24)
REGION = "us-east-1"  # aws_test_env's


@dataclass(frozen=True)
class Site:
    moto: str
    bucket: str
    root: str  # s3://bucket/prefix: the artifact store's root
    server: ServerProcess

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.moto, region_name=REGION)

    def store(self) -> ArtifactStore:
        options = {"client_kwargs": {"endpoint_url": self.moto, "region_name": REGION}}
        return ArtifactStore(self.root, options, root_must_exist=True)

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
        )


def _aws_env(endpoint: str) -> dict[str, str]:
    """Fake credentials and moto's endpoint, through the variables the AWS SDK itself reads."""
    return {**aws_test_env(endpoint), "AWS_CONFIG_FILE": os.devnull}


@pytest.fixture(scope="module")
def site(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fresh bucket on moto and a metadata server whose artifact root is a prefix in it."""
    folder = tmp_path_factory.mktemp("s3-logs")
    bucket = f"mlstack-logs-{uuid.uuid4().hex[:10]}"
    root = f"s3://{bucket}/stack-{uuid.uuid4().hex[:6]}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _aws_env(moto_server).items():
            mp.setenv(key, value)
        for key in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(key, raising=False)  # only AWS_ENDPOINT_URL leads the server to moto
        import boto3

        boto3.client("s3", endpoint_url=moto_server, region_name=REGION).create_bucket(
            Bucket=bucket
        )
        server = start_server(
            f"sqlite:///{folder / 'metadata.db'}",
            TOKEN,
            log_path=folder / "server.log",
            env={ROOT_ENV: root},
        )
        try:
            yield Site(moto_server, bucket, root, server)
        finally:
            server.stop()


def _step_with_log(site: Site, log_uri: str) -> str:
    with MetadataClient(site.server.url, TOKEN) as client:
        run = client.create_run("s3-logs", "local", {})
        step = client.create_step(run.id, "train", {"fn": "pkg.train"})
        client.update_step(step.id, status="running", log_uri=log_uri)
        return step.id


def _write(site: Site, uri: str, text: str, tmp_path: Path) -> None:
    """Replace the log object with ``text``, as the driver's LogPump mirrors a growing log."""
    local = tmp_path / f"{uuid.uuid4().hex}.log"
    local.write_text(text, encoding="utf-8")
    site.store().write_log(uri, local)


def test_a_log_is_read_in_chunks_and_followed_as_it_grows(site: Site, tmp_path: Path) -> None:
    store = site.store()
    uri = store.log_uri(f"run-{uuid.uuid4().hex[:6]}", "train")
    assert uri.startswith(f"{site.root}/logs/")
    _write(site, uri, "epoch 1\nloss €\n", tmp_path)  # "€" is 3 bytes: 13..15
    step_id = _step_with_log(site, uri)
    with site.http() as http:
        first = http.get(f"/steps/{step_id}/log", params={"limit": 8}).json()
        assert first == {"text": "epoch 1\n", "offset": 0, "next_offset": 8, "size": 17}
        # A chunk ending inside "€" stops before it; the next one starts with it, whole.
        cut = http.get(f"/steps/{step_id}/log", params={"offset": 8, "limit": 6}).json()
        assert cut == {"text": "loss ", "offset": 8, "next_offset": 13, "size": 17}
        rest = http.get(f"/steps/{step_id}/log", params={"offset": 13}).json()
        assert rest == {"text": "€\n", "offset": 13, "next_offset": 17, "size": 17}

        _write(site, uri, "epoch 1\nloss €\nepoch 2\n", tmp_path)  # the mirror grew
        more = http.get(f"/steps/{step_id}/log", params={"offset": rest["next_offset"]}).json()
        assert more == {"text": "epoch 2\n", "offset": 17, "next_offset": 25, "size": 25}
        at_end = http.get(f"/steps/{step_id}/log", params={"offset": 25}).json()
        assert at_end == {"text": "", "offset": 25, "next_offset": 25, "size": 25}
        past = http.get(f"/steps/{step_id}/log", params={"offset": 10**9}).json()
        assert past["text"] == "" and past["offset"] == 25


def test_a_missing_log_object_is_404_with_a_clear_detail(site: Site) -> None:
    step_id = _step_with_log(site, f"{site.root}/logs/never/written.log")
    with site.http() as http:
        answer = http.get(f"/steps/{step_id}/log")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "the step's log is not in the artifact store (yet)"


def test_a_log_uri_outside_the_roots_logs_is_404_and_leaks_nothing(site: Site) -> None:
    s3 = site.s3()
    prefix = site.root.removeprefix(f"s3://{site.bucket}/")
    other = f"mlstack-other-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=other)
    secret = b"not yours"
    for bucket, key in (
        (site.bucket, f"{prefix}-twin/logs/r/a.log"),  # a sibling prefix sharing the name
        (site.bucket, "elsewhere/logs/r/a.log"),
        (site.bucket, f"{prefix}/objects/ab/abcd/model.pkl"),  # in the store, not a log
        (other, f"{prefix}/logs/r/a.log"),  # the same key in another bucket
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=secret)
    uris = [
        f"{site.root}-twin/logs/r/a.log",
        f"s3://{site.bucket}/elsewhere/logs/r/a.log",
        f"{site.root}/objects/ab/abcd/model.pkl",
        f"s3://{other}/{prefix}/logs/r/a.log",
        f"{site.root}/logs/../../elsewhere/logs/r/a.log",
        f"{site.root}/logs/./r/../../objects/ab/abcd/model.pkl",
        f"{site.root}/logs/",
        "file:///etc/passwd",
    ]
    with site.http() as http:
        for uri in uris:
            answer = http.get(f"/steps/{_step_with_log(site, uri)}/log")
            assert answer.status_code == 404, uri
            assert "not yours" not in answer.text, uri


def test_an_unreachable_store_is_a_documented_503(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL; here it names a port nothing listens on."""
    for key, value in _aws_env(site.moto).items():
        monkeypatch.setenv(key, value)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    uri = f"{site.root}/logs/r/a.log"
    with start_server(
        f"sqlite:///{tmp_path / 'metadata.db'}",
        TOKEN,
        log_path=tmp_path / "server.log",
        env={ROOT_ENV: site.root},
    ) as server:
        with MetadataClient(server.url, TOKEN) as client:
            run = client.create_run("s3-logs", "local", {})
            step = client.create_step(run.id, "train", {"fn": "pkg.train"})
            client.update_step(step.id, log_uri=uri)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, trust_env=False) as http:
            answer = http.get(f"/steps/{step.id}/log")
            schema = http.get("/openapi.json").json()
        log = server.log_tail(50)
    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"the artifact store at {site.root} cannot be read now:"), detail
    assert dead in detail
    assert "Traceback" not in log
    documented = schema["paths"]["/steps/{step_id}/log"]["get"]["responses"]
    assert {"404", "503"} <= set(documented)
