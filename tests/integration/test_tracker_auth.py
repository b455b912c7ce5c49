"""The cloud stacks' MLflow auth, against a real local MLflow started with the same auth app.

The server runs ``mlflow server --app-name basic-auth`` with the config file the AWS task
writes (:func:`stacks.mlflow_auth.auth_ini`); the runner's tracker client, built from stack
outputs carrying the generated password, authenticates; requests without it are refused.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.tracking import MlflowTracker, TrackerClient, TrackerError
from stacks.mlflow_auth import APP_NAME, USERNAME, auth_ini
from stacks.outputs import StackOutputs

pytestmark = pytest.mark.services

PASSWORD = secrets.token_hex(24)  # as `up` generates it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow-auth")
    ini = folder / "basic_auth.ini"
    ini.write_text(auth_ini(f"sqlite:///{folder / 'auth.db'}", PASSWORD))
    ini.chmod(0o600)
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    log = open(folder / "mlflow.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--app-name", APP_NAME,
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", (folder / "artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((folder / "mlflow.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        group = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        os.killpg(proc.pid, 15)
        proc.wait(30)
        psutil.wait_procs([psutil.Process(p) for p in group if psutil.pid_exists(p)], timeout=15)
        log.close()
        assert not [p for p in group if psutil.pid_exists(p) and
                    psutil.Process(p).status() != psutil.STATUS_ZOMBIE]  # fmt: skip


def outputs(url: str, password: str | None) -> StackOutputs:
    data: dict[str, Any] = {
        "stack": "authtest", "stack_id": "authtest-a1b2c3", "provider": "aws",
        "artifact_store": {"kind": "s3", "uri": "s3://unused/mlstack"},
        "container_registry": {"kind": "ecr", "url": "unused"},
        "orchestrator": {"kind": "aws_batch", "job_queue": "q", "job_role_arn": "r",
                         "execution_role_arn": "e", "log_group": "l"},
        "secrets": {"kind": "aws_secrets_manager", "prefix": "mlstack/authtest-a1b2c3/",
                    "region": "eu-west-1"},
        "tracker": {"kind": "mlflow", "uri": url, "username": USERNAME,
                    "password_secret": "mlstack-tracker-password"},
        "deployer": {"kind": "none"}, "metadata": {"url": "https://unused:8080"},
    }  # fmt: skip
    out = StackOutputs.model_validate(data)
    return out.with_tracker_password(password) if password else out


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_the_runners_client_authenticates_and_logs(server: str) -> None:
    client = TrackerClient.for_outputs(outputs(server, PASSWORD))
    assert isinstance(client, MlflowTracker)
    run_id = client.start_run("auth-pipeline", "0123456789abcdef", {"alpha": 0.5})
    assert run_id
    client.log(run_id, metrics={"rmse": 1.25}, step="train")
    client.end_run(run_id, "completed")
    run = client.get_run(run_id)
    assert run["info"]["status"] == "FINISHED"
    assert {"key": "pipeline.alpha", "value": "0.5"} in run["data"]["params"]
    assert PASSWORD not in repr(client)


def test_unauthenticated_and_wrong_password_requests_are_refused(server: str) -> None:
    assert _status(server) == 401
    wrong = base64.b64encode(f"{USERNAME}:not-the-password".encode()).decode()
    assert _status(server, {"Authorization": f"Basic {wrong}"}) == 401
    right = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    assert _status(server, {"Authorization": f"Basic {right}"}) == 200
    anonymous = MlflowTracker(server)
    with pytest.raises(TrackerError, match="refused the credentials"):
        anonymous.start_run("auth-pipeline", "fedcba9876543210", {})


def test_outputs_without_the_resolved_password_fail_clearly(server: str) -> None:
    with pytest.raises(TrackerError, match="password that was not resolved"):
        TrackerClient.for_outputs(outputs(server, None))
    public = outputs(server, PASSWORD).public()
    assert public["tracker"]["password"] is None and PASSWORD not in str(public)


def test_the_auth_config_refuses_what_configparser_would_mangle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        auth_ini(f"sqlite:///{tmp_path}/a.db", "pass%word")


def test_register_model_authenticates_through_mlflows_own_client(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from sklearn.linear_model import LinearRegression

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    out = outputs(server, PASSWORD)
    client = TrackerClient.for_outputs(out)
    run_id = client.start_run("auth-register", "00112233445566778899", {})
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    ctx = SimpleNamespace(
        tracker_run_id=run_id, run_id="00112233445566778899", pipeline="auth-register",
        step_name="deploy", outputs=out,
    )  # fmt: skip
    version = client.register_sklearn_model(model, "auth-model", ctx)  # type: ignore[arg-type]
    assert version.name == "auth-model" and version.version == "1"
    right = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"{server}/api/2.0/mlflow/model-versions/get?name=auth-model&version=1",
        headers={"Authorization": f"Basic {right}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        tags = {t["key"]: t["value"] for t in json.load(answer)["model_version"]["tags"]}
    assert tags["mlstack.stack"] == "authtest" and tags["mlstack.step"] == "deploy"
