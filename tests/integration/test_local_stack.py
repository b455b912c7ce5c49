"""The local stack end to end, through the real CLI and real services (MLflow, metadata)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from stacks.common.process import port_in_use
from tests.conftest import MLSTACK, gone, run_cli

pytestmark = pytest.mark.services


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def status_json(name: str) -> dict:
    proc = run_cli("status", name, "--json", check=True)
    entry = json.loads(proc.stdout)
    assert isinstance(entry, dict), "status NAME --json is one object"
    return entry


def services_by_name(entry: dict) -> dict[str, dict]:
    return {s["name"]: s for s in entry["services"]}


def http_status(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def pids_of(entry: dict) -> dict[str, int]:
    return {s["name"]: s["pid"] for s in entry["services"] if s["pid"]}


def test_up_status_http_kill_recover_down(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "stack.yaml", "name: it-life\nprovider: local\n")
    up = run_cli("up", str(spec), check=True)
    assert "stack it-life is up" in up.stdout
    try:
        entry = status_json("it-life")
        assert entry["status"] == "up"
        services = services_by_name(entry)
        assert {
            "artifact_store",
            "secrets",
            "tracker",
            "metadata",
            "orchestrator",
            "deployer",
        } <= set(services)
        assert services["tracker"]["state"] == "healthy"
        assert services["metadata"]["state"] == "healthy"

        outputs = json.loads(run_cli("outputs", "it-life", "--json", check=True).stdout)
        tracker_uri = outputs["tracker"]["uri"]
        meta_url = outputs["metadata"]["url"]
        assert tracker_uri.startswith("http://127.0.0.1:")
        assert outputs["artifact_store"]["uri"].startswith("file://")
        # MLflow answers its REST API, not just /health.
        assert http_status(f"{tracker_uri}/api/2.0/mlflow/experiments/search?max_results=1") == 200
        # The metadata server refuses requests without (or with a wrong) token.
        assert http_status(f"{meta_url}/runs") == 401
        assert http_status(f"{meta_url}/runs", token="wrong") == 401
        revealed = run_cli("outputs", "it-life", "--json", "--show-secrets", check=True)
        token = json.loads(revealed.stdout)["metadata"]["token"]
        assert token and http_status(f"{meta_url}/runs", token=token) == 200
        # The API's description is guarded too (it names the stack's routes).
        assert http_status(f"{meta_url}/openapi.json") == 401
        assert http_status(f"{meta_url}/openapi.json", token=token) == 200
        assert token not in (home / "state.json").read_text()

        # A second up with the same spec changes nothing and says so.
        before = pids_of(entry)
        again = run_cli("up", str(spec), check=True)
        assert "no changes" in again.stdout
        assert pids_of(status_json("it-life")) == before
        plan = json.loads(run_cli("plan", str(spec), "--json", check=True).stdout)
        assert {c["action"] for c in plan["changes"]} == {"unchanged"}

        # kill -9 the tracker: status sees it, up restarts that one only, and what the
        # killed process left behind (MLflow's uvicorn worker) is stopped, not orphaned.
        orphaned = [c.pid for c in psutil.Process(before["tracker"]).children(recursive=True)]
        assert orphaned, "MLflow's server should run a uvicorn worker process"
        os.kill(before["tracker"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while services_by_name(status_json("it-life"))["tracker"]["state"] != "stopped":
            assert time.monotonic() < deadline, "status never noticed the killed tracker"
            time.sleep(0.2)
        plan = json.loads(run_cli("plan", str(spec), "--json", check=True).stdout)
        actions = {c["resource"]: c["action"] for c in plan["changes"]}
        assert actions["tracker"] == "start"
        assert actions["metadata"] == "unchanged"
        recovered = run_cli("up", str(spec), check=True)
        assert "tracker" in recovered.stdout
        after = pids_of(status_json("it-life"))
        assert after["metadata"] == before["metadata"]
        assert after["tracker"] != before["tracker"]
        assert all(gone(pid) for pid in orphaned), "the killed tracker's worker still runs"
        assert services_by_name(status_json("it-life"))["tracker"]["state"] == "healthy"
    finally:
        final = status_json("it-life")
        pids = list(pids_of(final).values())
        ports = [s["port"] for s in final["services"] if s["port"]]
        children = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                children += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        down = run_cli("down", "it-life", "--yes")
    assert down.returncode == 0, down.stderr
    for pid in pids + children:
        assert gone(pid), f"process {pid} of the stack is still running"
    for port in ports:
        assert not port_in_use(port)
    assert not (home / "stacks" / "it-life").exists()
    assert status_json("it-life")["status"] == "destroyed"


def test_changed_setting_restarts_only_that_service(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", "name: it-change\ncomponents:\n  tracker: none\n")
    run_cli("up", str(spec), check=True)
    try:
        before = pids_of(status_json("it-change"))
        assert "tracker" not in before
        # Pin the metadata port: only the metadata server restarts, on that port.
        from stacks.common.process import free_port

        port = free_port()
        write_spec(
            spec, f"name: it-change\ncomponents:\n  tracker: none\n  metadata:\n    port: {port}\n"
        )
        plan = json.loads(run_cli("plan", str(spec), "--json", check=True).stdout)
        actions = {c["resource"]: c["action"] for c in plan["changes"]}
        assert actions["metadata"] == "restart"
        assert actions["artifact_store"] == "unchanged"
        run_cli("up", str(spec), check=True)
        entry = status_json("it-change")
        meta = services_by_name(entry)["metadata"]
        assert meta["port"] == port and meta["state"] == "healthy"
        assert meta["pid"] != before["metadata"]
        assert gone(before["metadata"])
    finally:
        run_cli("down", "it-change", "--yes", check=True)


def test_two_concurrent_ups_one_waits_out(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", "name: it-lock\ncomponents:\n  tracker: none\n")
    env = dict(os.environ)
    first = subprocess.Popen(
        [MLSTACK, "up", str(spec)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        owner = home / "locks" / "it-lock.owner"
        deadline = time.monotonic() + 20
        while not owner.exists():
            assert time.monotonic() < deadline, "first up never took the lock"
            time.sleep(0.02)
        second = run_cli("up", str(spec))
        _out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "locked" in lines[0] and "it-lock" in lines[0]
        assert "Traceback" not in second.stderr
        json.loads((home / "state.json").read_text())  # still valid JSON
        assert status_json("it-lock")["status"] == "up"
    finally:
        if first.poll() is None:
            first.kill()
        run_cli("down", "it-lock", "--yes")


def test_unhealthy_service_fails_up_with_log_tail(home: Path, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        "name: it-fail\ncomponents:\n  tracker: none\n  metadata:\n"
        "    database_url: postgresql://nobody:hunter2@127.0.0.1:1/none\n",
    )
    proc = run_cli("up", str(spec))
    try:
        assert proc.returncode == 1
        assert "metadata exited during start-up" in proc.stderr
        assert "cannot open the metadata database" in proc.stderr  # the log tail
        assert "Traceback" not in proc.stderr
        assert "hunter2" not in proc.stderr + proc.stdout
        assert "hunter2" not in (home / "state.json").read_text()
        assert status_json("it-fail")["status"] == "failed"
    finally:
        run_cli("down", "it-fail", "--yes")


def test_secrets_round_trip_never_leak(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", "name: it-sec\ncomponents:\n  tracker: none\n")
    run_cli("up", str(spec), check=True)
    value = "s3cr3t-VALUE-42"
    try:
        outputs: list[str] = []

        def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
            proc = run_cli(*args, input=input, check=True)
            outputs.append(proc.stdout + proc.stderr)
            return proc

        cli("secret", "set", "it-sec", "db_password", value)
        cli("secret", "set", "it-sec", "api_key", input="from-stdin-value\n")
        listed = cli("secret", "list", "it-sec", "--json")
        assert set(json.loads(listed.stdout)) >= {"db_password", "api_key"}
        hidden = cli("secret", "get", "it-sec", "db_password")
        assert value not in hidden.stdout
        shown = run_cli("secret", "get", "it-sec", "db_password", "--show-secrets", check=True)
        assert shown.stdout.strip() == value
        assert run_cli("secret", "get", "it-sec", "api_key", "--show-secrets").stdout.strip() == (
            "from-stdin-value"
        )
        cli("status", "it-sec")
        cli("outputs", "it-sec")
        cli("secret", "rm", "it-sec", "db_password")
        missing = run_cli("secret", "get", "it-sec", "db_password")
        assert missing.returncode == 1 and "not found" in missing.stderr
        assert all(value not in text for text in outputs)
        for path in home.rglob("*"):
            if path.is_file():
                assert value.encode() not in path.read_bytes(), f"secret found in {path}"
        key_file = home / "stacks" / "it-sec" / "secrets" / "key"
        assert key_file.stat().st_mode & 0o777 == 0o600
    finally:
        run_cli("down", "it-sec", "--yes", check=True)
