"""The artifact store against S3, served by a real ``moto_server`` process over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.artifacts import ArtifactStore
from runner.errors import ArtifactError

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
REGION = "us-east-1"


@dataclass(frozen=True)
class Moto:
    url: str
    bucket: str
    options: dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """A moto S3 server with one fresh bucket; the server is always stopped at the end."""
    try:
        import boto3
        import s3fs  # noqa: F401  (what the store needs for s3://)
    except ImportError as err:
        pytest.fail(f"s3 tests need boto3 and s3fs (pip install -e '.[aws]'): {err}")
    if not MOTO_SERVER.exists():
        pytest.fail(f"{MOTO_SERVER} not found: pip install 'moto[server]'")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("NO_PROXY", "127.0.0.1,localhost")
            env.setenv("no_proxy", "127.0.0.1,localhost")
            _wait_until_up(url, server, log)
            bucket = f"mlstack-{uuid.uuid4().hex[:12]}"
            boto3.client(
                "s3",
                endpoint_url=url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).create_bucket(Bucket=bucket)
            options = {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": url, "region_name": REGION},
            }
            yield Moto(url, bucket, options)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"moto_server exited {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"moto_server did not answer on {url} within 30 s")


@pytest.fixture
def s3_store(moto: Moto) -> ArtifactStore:
    """A store under a fresh prefix of the moto bucket."""
    return ArtifactStore(f"s3://{moto.bucket}/{uuid.uuid4().hex[:8]}/", moto.options)


@pytest.mark.services
class TestS3ArtifactStore:
    def test_dataframe_round_trip(self, s3_store: ArtifactStore) -> None:
        frame = pd.DataFrame(
            {"x": [1.0, 2.5], "label": ["a", "b"]}, index=pd.Index([7, 3], name="id")
        )
        saved = s3_store.save(frame, "features")
        digest = saved.content_hash
        assert saved.uri == f"{s3_store.root_uri}/objects/{digest[:2]}/{digest}/data.parquet"
        assert s3_store.exists(saved.uri) and s3_store.verify(saved.uri, digest)
        loaded = s3_store.load(saved.uri, saved.materializer, saved.type_name)
        pd.testing.assert_frame_equal(loaded, frame)
        assert s3_store.save(frame.copy(), "again") == saved

    def test_existing_object_is_not_uploaded_again(
        self, s3_store: ArtifactStore, moto: Moto
    ) -> None:
        import boto3

        stored = s3_store.put_bytes(b"immutable", "blob.bin")
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        bucket, _, key = stored.uri.removeprefix("s3://").partition("/")
        before = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
        time.sleep(1.1)  # S3 timestamps have one-second resolution
        assert s3_store.put_bytes(b"immutable", "blob.bin") == stored
        assert s3.head_object(Bucket=bucket, Key=key)["LastModified"] == before
        assert s3_store.read_bytes(stored.uri) == b"immutable"

    def test_log_round_trip(self, s3_store: ArtifactStore, tmp_path: Path) -> None:
        log = tmp_path / "step.log"
        log.write_text("loading data\ndone\n")
        uri = s3_store.put_log("run-1", "load", log)
        assert uri == f"{s3_store.root_uri}/logs/run-1/load.log"
        assert s3_store.read_text(uri) == "loading data\ndone\n"

    def test_tree_round_trip(self, s3_store: ArtifactStore, tmp_path: Path) -> None:
        src = tmp_path / "src"
        (src / "pkg").mkdir(parents=True)
        (src / "pkg" / "step.py").write_text("X = 1\n")
        tree = s3_store.put_tree(src)
        s3_store.extract_tree(tree.uri, tmp_path / "dest")
        assert (tmp_path / "dest" / "pkg" / "step.py").read_text() == "X = 1\n"

    def test_missing_object(self, s3_store: ArtifactStore, tmp_path: Path) -> None:
        uri = f"{s3_store.root_uri}/objects/00/{'0' * 64}/data.json"
        assert not s3_store.exists(uri)
        assert not s3_store.verify(uri, "0" * 64)
        with pytest.raises(ArtifactError, match="not found"):
            s3_store.load(uri, "json", "builtins.dict")
        with pytest.raises(ArtifactError, match="not found"):
            s3_store.get_file(uri, tmp_path / "x")
