"""Issue 10, defect 9: a driver killed with SIGKILL leaves nothing behind.

Its step (which ignores SIGTERM) and the step's own child are stopped as a group; the next
command that touches the stack (here `mlstack status`) marks the run failed, ends its MLflow
run as FAILED and removes its scratch folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import MLSTACK, run_cli
from tests.integration.stack_procs import kill_all

pytestmark = pytest.mark.services

TOY = Path(__file__).resolve().parents[1] / "pipelines" / "toy.py"


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def get_json(url: str, token: str | None = None) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_killed_driver_leaves_nothing(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"kd-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: {name}\nprovider: local\ncomponents:\n  deployer: none\n")
    scratch_root = tmp_path / "tmp"  # this test's own TMPDIR: other runs' scratch is not ours
    scratch_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch_root))
    marker = tmp_path / "stubborn.pids"
    run_cli("up", str(spec), check=True, timeout=240)
    driver = None
    pids: list[int] = []
    try:
        outputs = json.loads(run_cli("outputs", name, "--json", "--show-secrets").stdout)
        meta, token = outputs["metadata"]["url"], outputs["metadata"]["token"]
        tracker = outputs["tracker"]["uri"]
        driver = subprocess.Popen(
            [MLSTACK, "run", f"{TOY}:stubborn_run", "--stack", name],
            env=dict(os.environ, MLSTACK_TEST_MARKER=str(marker)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while not marker.exists() or len(marker.read_text().split()) < 2:
            assert time.monotonic() < deadline and driver.poll() is None, "step never started"
            time.sleep(0.1)
        pids = [int(p) for p in marker.read_text().split()]
        assert [p.name for p in scratch_root.iterdir()], "the driver made no scratch folder"
        driver.send_signal(signal.SIGKILL)
        driver.wait()

        deadline = time.monotonic() + 15  # the worker's grace period is 5 s
        while any(running(p) for p in pids):
            assert time.monotonic() < deadline, f"step processes still run: {pids}"
            time.sleep(0.2)

        runs = get_json(f"{meta}/runs?stack={name}", token)
        assert len(runs) == 1 and runs[0]["status"] == "running", runs  # nobody touched it
        run = runs[0]

        run_cli("status", name, check=True)  # the next command that touches the stack

        detail = get_json(f"{meta}/runs/{run['id']}", token)
        assert detail["status"] == "failed", detail
        assert {s["status"] for s in detail["steps"] if s["name"] == "stubborn"} == {"cancelled"}
        mlflow = get_json(f"{tracker}/api/2.0/mlflow/runs/get?run_id={detail['tracker_run_id']}")
        assert mlflow["run"]["info"]["status"] in ("FAILED", "KILLED"), mlflow
        assert not list(scratch_root.glob("mlstack-run-*")), "the scratch folder was left"
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        run_cli("down", name, "--yes")
        kill_all(home, name)
