"""Issue 9, problem 5: `mlstack down` refuses while runs are active on the stack, naming them;
`--force` cancels them, waits for their steps to stop, then tears down, and the cancelled
run does not re-create the stack's artifact folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import MLSTACK, gone, run_cli, stack_up
from tests.integration.test_docker_orchestrator import BASE, engine_ready

SLOW_FLOW = """
import os
import time

from runner import pipeline, step


@step(cache=False)
def slow() -> int:
    marker = os.environ.get("MLSTACK_TEST_MARKER")
    if marker and os.path.isdir(os.path.dirname(marker)):  # not mounted in a container
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
    time.sleep(300)
    return 1


@step(cache=False)
def after(x: int) -> int:
    return x


@pipeline(requirements=[])
def slowflow() -> None:
    after(slow())
"""


def start_run(tmp_path: Path, stack: str, marker: Path, **env: str) -> subprocess.Popen[str]:
    flow = tmp_path / "slow_flow.py"
    flow.write_text(SLOW_FLOW)
    return subprocess.Popen(
        [MLSTACK, "run", f"{flow}:slowflow", "--stack", stack],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, MLSTACK_TEST_MARKER=str(marker), **env),
    )  # fmt: skip


def started_step(driver: subprocess.Popen[str], marker: Path) -> psutil.Process:
    """The slow step's process, once it runs (it writes its pid to ``marker``)."""
    wait_for("the slow step to start", lambda: marker.exists() or driver.poll(), 120)
    assert driver.poll() is None, driver.communicate()
    wait_for("the step to write its pid", lambda: marker.read_text().strip() != "")
    return psutil.Process(int(marker.read_text()))


def wait_for(what: str, check: object, timeout: float = 600) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def run_id_of(stack: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        runs = json.loads(run_cli("runs", "--stack", stack, "--json", check=True).stdout)
        running = [r["run_id"] for r in runs if r["status"] == "running"]
        if running or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(running) == 1, runs
    return str(running[0])


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def check_refused_then_forced(
    stack: str, store: Path, driver: subprocess.Popen[str], tree: list[psutil.Process]
) -> None:
    """Shared by both orchestrators: the refusal, then --force and what it leaves behind."""
    run_id = run_id_of(stack)
    refused = run_cli("down", stack, "--yes")
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and run_id[:12] in lines[0] and "--force" in lines[0], refused.stderr
    assert "slowflow" in lines[0]
    assert driver.poll() is None, "down without --force stopped the run"
    status = json.loads(run_cli("status", stack, "--json", check=True).stdout)
    assert status["status"] != "destroyed"

    forced = run_cli("down", stack, "--yes", "--force", timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert f"cancelled run {run_id[:12]}" in forced.stdout + forced.stderr
    # The driver and every process of the run had stopped before teardown returned.
    assert driver.poll() is not None, "the run's driver still runs after down --force"
    assert driver.returncode == 130, driver.stderr.read() if driver.stderr else ""
    for proc in tree:
        assert gone(proc.pid), f"process {proc.pid} of the run survived down --force"
    time.sleep(3)  # whatever the cancelled run still wanted to write, it had its chance
    assert not store.exists(), f"{store} was re-created after down"


def test_down_refuses_during_a_run_and_force_cancels_it_local(
    tmp_path: Path, cleanup: list[subprocess.Popen[str]]
) -> None:
    name = "it-down-local"
    home = tmp_path / "home"
    home.mkdir()
    with stack_up(home, name, f"name: {name}\nprovider: local\n") as up:
        store = Path(up["outputs"]["artifact_store"]["uri"].removeprefix("file://"))
        marker = tmp_path / "slow.pid"
        driver = start_run(tmp_path, name, marker)
        cleanup.append(driver)
        step = started_step(driver, marker)
        tree = psutil.Process(driver.pid).children(recursive=True)
        assert step.pid in {p.pid for p in tree}
        check_refused_then_forced(name, store, driver, tree)


@pytest.mark.docker
def test_down_refuses_during_a_run_and_force_cancels_it_docker(
    tmp_path: Path, cleanup: list[subprocess.Popen[str]]
) -> None:
    reason = engine_ready()
    if reason:
        pytest.skip(reason)
    import docker

    client = docker.from_env()
    name = "it-down-docker"
    home = tmp_path / "home"
    home.mkdir()
    spec = (
        f"name: {name}\ncomponents:\n  container_registry: local\n"
        f"  orchestrator:\n    flavor: docker\n    base_image: {BASE}\n"
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLSTACK_HOME", str(home))
        run_cli("base-image", "build", "--tag", BASE, timeout=1800, check=True)
    with stack_up(home, name, spec) as up:
        store = Path(up["outputs"]["artifact_store"]["uri"].removeprefix("file://"))
        driver = start_run(tmp_path, name, tmp_path / "unused.pid")
        cleanup.append(driver)
        label = {"label": f"mlstack.stack={name}"}

        def step_container_running() -> bool:
            found = client.containers.list(filters=label, ignore_removed=True)  # check: no step
            return any(c.labels.get("mlstack.step") for c in found)

        wait_for("the step's container", lambda: step_container_running() or driver.poll())
        assert driver.poll() is None, driver.communicate()
        tree = psutil.Process(driver.pid).children(recursive=True)
        check_refused_then_forced(name, store, driver, tree)
        assert client.containers.list(all=True, filters=label) == []


def start_remote_run(tmp_path: Path, stack: str, marker: Path, host: str) -> subprocess.Popen[str]:
    """A real driver that records ``host`` as its machine (MLSTACK_HOSTNAME), beating every
    0.5 s: to this host's `down` it is a teammate's run on a shared stack."""
    return start_run(
        tmp_path, stack, marker, MLSTACK_HOSTNAME=host, MLSTACK_HEARTBEAT_SECONDS="0.5"
    )


def test_down_sees_runs_driven_from_another_host_and_force_cancels_them(
    tmp_path: Path, cleanup: list[subprocess.Popen[str]]
) -> None:
    from runner.metadata.client import MetadataClient

    name = "it-down-remote"
    home = tmp_path / "home"
    home.mkdir()
    elsewhere = f"laptop-{os.urandom(3).hex()}"
    with stack_up(home, name, f"name: {name}\nprovider: local\n") as up:
        meta = up["outputs"]["metadata"]
        client = MetadataClient(meta["url"], meta["token"])
        # A teammate's run: `down` names it and where it runs, and leaves it alone.
        first = start_remote_run(tmp_path, name, tmp_path / "first.pid", elsewhere)
        cleanup.append(first)
        started_step(first, tmp_path / "first.pid")
        first_id = run_id_of(name)
        record = client.get_run(first_id)
        assert record.host == elsewhere and record.heartbeat_seconds == 0.5
        refused = run_cli("down", name, "--yes")
        assert refused.returncode == 1, refused.stderr
        line = refused.stderr.strip()
        assert first_id[:12] in line and f"on host {elsewhere}" in line and "--force" in line
        assert first.poll() is None, "down without --force stopped the run"
        assert client.get_run(first_id).heartbeat_age < 1.5  # it keeps beating

        # Its driver dies without a word: once its heartbeat is stale the run is not active.
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        time.sleep(2.0)  # > 3 heartbeat intervals
        second = start_remote_run(tmp_path, name, tmp_path / "second.pid", elsewhere)
        cleanup.append(second)
        step = started_step(second, tmp_path / "second.pid")
        tree = psutil.Process(second.pid).children(recursive=True)
        assert step.pid in {p.pid for p in tree}
        dead = client.get_run(first_id)
        assert dead.status == "failed", dead
        assert dead.error == f"driver on {elsewhere} stopped sending heartbeats"
        second_id = next(r.id for r in client.list_runs(stack=name, status="running"))
        refused = run_cli("down", name, "--yes")
        assert refused.returncode == 1 and second_id[:12] in refused.stderr
        assert first_id[:12] not in refused.stderr

        # --force: the remote driver sees the cancel request with its heartbeat, stops its
        # steps and exits as on Ctrl-C; down waits for that, then tears down.
        forced = run_cli("down", name, "--yes", "--force", timeout=300)
        assert forced.returncode == 0, forced.stderr
        assert f"cancelled run {second_id[:12]} (slowflow, on host {elsewhere})" in forced.stderr
        assert second.poll() is not None, "the remote driver still runs after down --force"
        _, err = second.communicate(timeout=30)
        assert second.returncode == 130, err
        assert "slow: cancelled" in err and "after: skipped" in err, err
        for proc in tree:
            assert gone(proc.pid), f"process {proc.pid} of the run survived down --force"
        status = json.loads(run_cli("status", name, "--json", check=True).stdout)
        assert status["status"] == "destroyed"
