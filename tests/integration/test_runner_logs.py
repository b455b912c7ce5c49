"""Issue 9, problems 4 and 8 on real local stacks: kept and live step logs, run ids that
resolve across every up stack."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MLSTACK, run_cli, stack_up
from tests.integration.test_step_settings_local import LIGHT

pytestmark = pytest.mark.services

STACK, OTHER = "it-logs", "it-logs-b"

FLOW = """
import os
import signal
import sys
import time
from pathlib import Path

from runner import pipeline, step

GATE = Path(os.environ["LOGS_TEST_DIR"])


@step
def killed() -> int:
    print("before the kill: stdout line")
    print("before the kill: stderr line", file=sys.stderr)
    os.kill(os.getpid(), signal.SIGKILL)
    return 1


@step
def hangs() -> int:
    print("hanging from now on")
    (GATE / "hanging").write_text(str(os.getpid()))
    time.sleep(600)
    return 1


@step
def gated() -> int:
    print("first line, before the gate")
    (GATE / "started").write_text("")
    while not (GATE / "open").exists():
        time.sleep(0.05)
    print("after the gate")
    return 1


@step
def quick() -> int:
    print("quick step ran")
    return 1


@pipeline
def kill_flow() -> None:
    killed()


@pipeline
def hang_flow() -> None:
    hangs()


@pipeline
def gated_flow() -> None:
    gated()


@pipeline
def quick_flow() -> None:
    quick()
"""


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Two local stacks up under one $MLSTACK_HOME (run ids must resolve without --stack)."""
    home = tmp_path_factory.mktemp("logs-home")
    spec = f"name: {STACK}\nprovider: local\ncomponents:\n{LIGHT}"
    with stack_up(home, STACK, spec) as first, pytest.MonkeyPatch.context() as env:
        env.setenv("MLSTACK_HOME", str(home))
        other = home / "other.yaml"
        other.write_text(f"name: {OTHER}\nprovider: local\ncomponents:\n{LIGHT}")
        try:
            run_cli("up", str(other), check=True)
            yield first
        finally:
            run_cli("down", OTHER, "--yes")


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pipeline file; its steps meet the test through files in ``tmp_path``."""
    path = tmp_path / "logs_flow.py"
    path.write_text(FLOW)
    monkeypatch.setenv("LOGS_TEST_DIR", str(tmp_path))
    return path


def wait_for(path: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def latest_run(pipeline: str, stack: str = STACK) -> str:
    deadline = time.monotonic() + 30
    while True:
        runs = json.loads(run_cli("runs", "--stack", stack, "--json", check=True).stdout)
        found = [r for r in runs if r["pipeline"] == pipeline]
        if found:
            return str(found[0]["run_id"])
        assert time.monotonic() < deadline, f"no run of {pipeline} recorded"
        time.sleep(0.2)


class Lines:
    """Reads a process's stream on a thread, so a test can wait for one line with a timeout."""

    def __init__(self, stream: object) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never appeared in:\n{''.join(self.seen)}"
            with contextlib.suppress(queue.Empty):
                self.seen.append(self._queue.get(timeout=remaining))

    @property
    def text(self) -> str:
        while not self._queue.empty():
            self.seen.append(self._queue.get())
        return "".join(self.seen)


def shared_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MLSTACK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ),
    )  # fmt: skip


# -- problem 4: logs kept on every exit path ---------------------------------------------------


def test_a_step_killed_by_sigkill_keeps_what_it_printed(stacks: dict, flow: Path) -> None:
    proc = run_cli("run", f"{flow}:kill_flow", "--stack", STACK, "--no-cache", "--json")
    assert proc.returncode == 1, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    assert "before the kill: stdout line" in proc.stderr  # the failure's log tail
    log = run_cli("logs", run_id, "killed", check=True).stdout  # no --stack: two are up
    assert "before the kill: stdout line" in log
    assert "before the kill: stderr line" in log
    assert "(no log recorded)" not in log


def test_logs_json_gives_each_steps_attempts_and_text(stacks: dict, flow: Path) -> None:
    proc = run_cli("run", f"{flow}:kill_flow", "--stack", STACK, "--no-cache", "--json")
    assert proc.returncode == 1, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    data = json.loads(run_cli("logs", run_id[:12], "--json", check=True).stdout)
    assert data["run_id"] == run_id and data["stack"] == STACK
    [step] = data["steps"]
    assert step["name"] == "killed" and step["status"] == "failed"
    [attempt] = step["attempts"]
    assert attempt["attempt"] == 1 and attempt["source"] == "artifact_store"
    assert attempt["uri"].startswith("file://") and attempt["uri"].endswith(".log")
    assert "before the kill: stdout line" in attempt["text"]
    assert "before the kill: stderr line" in attempt["text"]
    both = run_cli("logs", run_id, "--json", "--follow")
    assert both.returncode == 2 and "--json and --follow" in both.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_step_cancelled_by_ctrl_c_on_a_hang_keeps_its_lines(
    stacks: dict, flow: Path, sig: signal.Signals
) -> None:
    driver = popen("run", f"{flow}:hang_flow", "--stack", STACK, "--no-cache")
    try:
        wait_for(flow.parent / "hanging", "the hanging step never started")
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=60)
        assert driver.returncode == 130, err
    finally:
        if driver.poll() is None:
            driver.kill()
    run_id = latest_run("hang_flow")
    log = run_cli("logs", run_id, "hangs", "--stack", STACK, check=True).stdout
    assert "hanging from now on" in log
    shown = json.loads(run_cli("run-show", run_id, "--json", check=True).stdout)
    assert shown["steps"][0]["status"] == "cancelled"
    assert shown["steps"][0]["log_uri"]


def test_logs_follow_streams_a_running_step_and_exits_when_it_ends(
    stacks: dict, flow: Path
) -> None:
    driver = popen("run", f"{flow}:gated_flow", "--stack", STACK, "--no-cache")
    follower = None
    try:
        wait_for(flow.parent / "started", "the gated step never started")
        run_id = latest_run("gated_flow")
        follower = popen("logs", run_id, "gated", "--follow")
        out = Lines(follower.stdout)
        out.wait_for("first line, before the gate", timeout=30)
        time.sleep(1.0)
        assert follower.poll() is None, "--follow exited while the step was still running"
        assert "after the gate" not in out.text
        (flow.parent / "open").write_text("")
        assert follower.wait(timeout=30) == 0, follower.stderr.read() if follower.stderr else ""
        out.wait_for("after the gate", timeout=5)
        assert driver.wait(timeout=60) == 0
    finally:
        for proc in (driver, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_run_with_logs_shows_a_running_steps_lines_live(stacks: dict, flow: Path) -> None:
    driver = popen("run", f"{flow}:gated_flow", "--stack", STACK, "--no-cache", "--logs")
    try:
        err = Lines(driver.stderr)
        # The step waits for the gate: the line can only have come while it was running.
        err.wait_for("first line, before the gate", timeout=60)
        assert driver.poll() is None
        (flow.parent / "open").write_text("")
        assert driver.wait(timeout=60) == 0, err.text
        err.wait_for("after the gate", timeout=5)
    finally:
        if driver.poll() is None:
            driver.kill()


# -- problem 8: run ids resolve across every up stack ------------------------------------------


def test_run_ids_resolve_across_up_stacks_and_stack_only_disambiguates(
    stacks: dict, flow: Path
) -> None:
    mine = json.loads(
        run_cli("run", f"{flow}:quick_flow", "--stack", OTHER, "--json", check=True).stdout
    )["run_id"]
    assert "quick step ran" in run_cli("logs", mine, check=True).stdout
    assert "quick step ran" in run_cli("logs", mine[:10], "quick", check=True).stdout
    whole = run_cli("logs", mine, "--follow", timeout=60, check=True).stdout  # ended: returns
    assert "===== quick =====" in whole and "quick step ran" in whole
    shown = json.loads(run_cli("run-show", mine[:10], "--json", check=True).stdout)
    assert (shown["id"], shown["stack"]) == (mine, OTHER)
    from runner import load

    assert load(mine, "quick") == 1  # the Python API finds it too

    # A prefix shared by a run of each stack is ambiguous; --stack picks one.
    run_cli("run", f"{flow}:quick_flow", "--stack", STACK, "--no-cache", check=True)
    theirs = [r["run_id"] for r in json.loads(run_cli("runs", "--stack", STACK, "--json").stdout)]
    prefix = max((shared_prefix(mine, r) for r in theirs), key=len)
    proc = run_cli("run-show", prefix)
    assert proc.returncode == 2, proc.stderr
    assert STACK in proc.stderr and OTHER in proc.stderr and "--stack" in proc.stderr
    assert "Traceback" not in proc.stderr
    shown = json.loads(run_cli("run-show", prefix, "--stack", OTHER, "--json", check=True).stdout)
    assert shown["id"] == mine

    proc = run_cli("logs", "0" * 32)
    assert proc.returncode == 2 and "no run" in proc.stderr, proc.stderr


def test_run_step_capture_keeps_a_killed_steps_log_for_remote_orchestrators(
    stacks: dict, flow: Path
) -> None:
    """What a remote orchestrator's container runs (`run-step --capture`): the entrypoint
    keeps the step's output in the store at log_uri(run, step, attempt) itself."""
    import sys

    from runner.metadata.client import MetadataClient
    from stacks.common.constants import OUTPUTS_ENV

    outputs = stacks["outputs"]
    meta = outputs["metadata"]
    with MetadataClient(meta["url"], meta["token"], ca_pem=meta.get("ca_pem")) as client:
        run = client.create_run(pipeline="kill_flow", stack=STACK, params={})
        spec = {
            "pipeline": "kill_flow", "function": "killed", "params": {}, "inputs": {},
            "outputs": ["output"],
            "source": {"module": "logs_flow", "path": str(flow), "root": str(flow.parent)},
        }  # fmt: skip
        step = client.create_step(run.id, "killed", spec=spec)
    env = dict(os.environ, **{OUTPUTS_ENV: json.dumps(outputs)})
    argv = [sys.executable, "-m", "runner.entrypoint", "run-step", "--step-id", step.id]
    proc = subprocess.run(
        [*argv, "--capture", "--echo"], env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 128 + signal.SIGKILL, proc.stderr
    # --echo: every line on the entrypoint's own stdout too (a Batch job's CloudWatch Logs).
    echoed = proc.stdout.splitlines()
    assert "before the kill: stdout line" in echoed and "before the kill: stderr line" in echoed
    assert "===== mlstack: its process was killed by signal SIGKILL =====" in echoed
    with MetadataClient(meta["url"], meta["token"], ca_pem=meta.get("ca_pem")) as client:
        record = client.get_step(step.id)
        client.update_run(run.id, status="failed")
    assert record.status.value == "failed" and "SIGKILL" in (record.error or "")
    root = outputs["artifact_store"]["uri"]
    assert record.log_uri == f"{root}/logs/{run.id}/killed.log"
    log = run_cli("logs", run.id, "killed", check=True).stdout
    assert "before the kill: stdout line" in log and "before the kill: stderr line" in log
