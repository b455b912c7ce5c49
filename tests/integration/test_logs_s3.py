"""Step logs on an s3:// artifact store (a real moto server): the driver mirrors a running
step's log to the bucket, so a killed step keeps its lines and --follow sees them live."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.test_runner_logs import FLOW, Lines, latest_run, popen, wait_for
from tests.integration.test_s3_artifact_store import Env, bucket_name, env, keys, up  # noqa: F401

pytestmark = pytest.mark.services


def test_s3_store_keeps_a_killed_steps_log_and_follows_a_running_one(
    env: Env,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flow = tmp_path / "logs_flow.py"
    flow.write_text(FLOW)
    monkeypatch.setenv("LOGS_TEST_DIR", str(tmp_path))
    bucket = bucket_name()
    env.s3().create_bucket(Bucket=bucket)
    stack = up(env, bucket)
    driver = follower = None
    try:
        proc = run_cli("run", f"{flow}:kill_flow", "--stack", stack.name, "--json")
        assert proc.returncode == 1, proc.stderr
        run_id = json.loads(proc.stdout)["run_id"]
        assert f"runs/logs/{run_id}/killed.log" in keys(env, bucket)
        log = run_cli("logs", run_id, "killed", check=True).stdout
        assert "before the kill: stdout line" in log and "before the kill: stderr line" in log

        driver = popen("run", f"{flow}:gated_flow", "--stack", stack.name, "--no-cache")
        wait_for(tmp_path / "started", "the gated step never started")
        follower = popen("logs", latest_run("gated_flow", stack.name), "gated", "--follow")
        out = Lines(follower.stdout)
        out.wait_for("first line, before the gate", timeout=30)  # mirrored while it runs
        time.sleep(1.0)
        assert follower.poll() is None
        (tmp_path / "open").write_text("")
        assert follower.wait(timeout=30) == 0, follower.stderr.read() if follower.stderr else ""
        out.wait_for("after the gate", timeout=5)
        assert driver.wait(timeout=60) == 0
    finally:
        for proc_ in (driver, follower):
            if proc_ is not None and proc_.poll() is None:
                proc_.kill()
        run_cli("down", stack.name, "--yes")
