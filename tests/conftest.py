"""Shared fixtures: an isolated $MLSTACK_HOME and a helper to run the real `mlstack` CLI."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

MLSTACK = str(Path(sys.executable).parent / "mlstack")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a test marked ``docker`` or ``services`` may not skip: it fails instead."""
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("CI", "").lower() == "true"
    needs = item.get_closest_marker("docker") or item.get_closest_marker("services")
    if strict and needs and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is not allowed: {report.longrepr}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $MLSTACK_HOME for this test (also inherited by CLI subprocesses)."""
    path = tmp_path / "mlstack-home"
    monkeypatch.setenv("MLSTACK_HOME", str(path))
    return path


def run_cli(
    *args: str, input: str | None = None, timeout: float = 180, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the installed `mlstack` console script with the current environment."""
    proc = subprocess.run(
        [MLSTACK, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"mlstack {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@contextlib.contextmanager
def stack_up(home: Path, name: str, spec_text: str) -> Iterator[dict[str, Any]]:
    """``mlstack up`` a stack from ``spec_text`` under $MLSTACK_HOME=``home``; ``down`` after.

    Yields ``{"home": ..., "outputs": ..., "spec": ...}`` (outputs with secrets shown).
    """
    spec = home / "stack.yaml"
    spec.write_text(spec_text)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLSTACK_HOME", str(home))
        try:
            run_cli("up", str(spec), check=True)
            outputs = json.loads(run_cli("outputs", name, "--json", "--show-secrets").stdout)
            yield {"home": home, "outputs": outputs, "spec": spec}
        finally:
            run_cli("down", name, "--yes")


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie not yet reaped by init counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def local_outputs_data(stack: str = "demo", **components: Any) -> dict[str, Any]:
    """Valid StackOutputs data of a small local stack (components replaced by keyword)."""
    data: dict[str, Any] = {
        "stack": stack,
        "stack_id": f"{stack}-0001",
        "provider": "local",
        "artifact_store": {"kind": "local", "uri": "file:///tmp/none"},
        "container_registry": {"kind": "none"},
        "orchestrator": {"kind": "local"},
        "secrets": {"kind": "local", "path": "/nonexistent/store.enc", "key_file": "/none/key"},
        "tracker": {"kind": "mlflow", "uri": "http://127.0.0.1:5050"},
        "deployer": {"kind": "none"},
        "metadata": {"url": "http://127.0.0.1:8123"},
    }
    return data | components


def aws_outputs_data(stack: str = "demo", **components: Any) -> dict[str, Any]:
    """Valid StackOutputs data of an AWS stack (components replaced by keyword)."""
    arn = "arn:aws:iam::123456789012:role/r"
    data: dict[str, Any] = {
        "stack": stack,
        "stack_id": f"{stack}-0001",
        "provider": "aws",
        "region": "eu-west-1",
        "artifact_store": {"kind": "s3", "uri": f"s3://mlstack-{stack}/mlstack"},
        "container_registry": {"kind": "ecr", "url": "123.dkr.ecr.eu-west-1.amazonaws.com/r"},
        "orchestrator": {
            "kind": "aws_batch",
            "job_queue": "q",
            "job_role_arn": arn,
            "execution_role_arn": arn,
            "log_group": "g",
        },
        "secrets": {
            "kind": "aws_secrets_manager",
            "prefix": f"mlstack/{stack}/",
            "region": "eu-west-1",
        },
        "tracker": {"kind": "mlflow", "uri": "http://lb"},
        "deployer": {"kind": "none"},
        "metadata": {"url": "http://lb:8080"},
    }
    return data | components


MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@contextlib.contextmanager
def moto_process(log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real ``moto_server`` process on a free 127.0.0.1 port (``env`` added to its
    environment, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT``); its URL. Always stopped after."""
    import socket
    import time
    import urllib.request

    if not MOTO_SERVER.exists():
        pytest.fail(f"{MOTO_SERVER} not found: pip install 'moto[server]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **os.environ,
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1",
                # Batch jobs run as host-network containers: they reach 127.0.0.1 services.
                "MOTO_DOCKER_NETWORK_MODE": "host",
                **(env or {}),
            },
        )
    try:
        deadline = time.monotonic() + 30
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if server.poll() is not None:
                pytest.fail(f"moto_server exited {server.returncode}: {log.read_text()[-2000:]}")
            try:
                with opener.open(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer on {url} within 30 s")
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``moto_server`` process on a free 127.0.0.1 port; its URL. Stopped at the end."""
    with moto_process(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


def aws_test_env(endpoint: str) -> dict[str, str]:
    """The AWS SDK's own variables pointing at ``endpoint`` with fake credentials and no
    profile or shared files (a test's or a child process's whole AWS environment)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """AWS_ENDPOINT_URL at the moto server and fake credentials, for this test only."""
    for key, value in aws_test_env(moto_server).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    return moto_server
