"""Issue 10, defects 1-3: a killed up leaks nothing, a lost folder or state is repaired, and
liveness is health, not a pid. Real CLI, real services, checked by process tree and ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stacks.common.process import port_in_use
from tests.conftest import MLSTACK, run_cli
from tests.integration.stack_procs import kill_all, listening_ports, recorded_pids, stack_processes

pytestmark = pytest.mark.services

LIGHT = "name: {name}\nprovider: local\ncomponents:\n  tracker: none\n"


@pytest.fixture
def stack(home: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A unique light stack name and its spec file; everything of it is gone afterwards."""
    name = f"cs-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "s.yaml"
    spec.write_text(LIGHT.format(name=name))
    try:
        yield name, spec
    finally:
        run_cli("down", name, "--yes")
        kill_all(home, name)


def token_of(name: str) -> str:
    out = run_cli("outputs", name, "--json", "--show-secrets", check=True).stdout
    return str(json.loads(out)["metadata"]["token"])


def meta_url(name: str) -> str:
    return str(json.loads(run_cli("outputs", name, "--json", check=True).stdout)["metadata"]["url"])


def get(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def assert_nothing_left(home: Path, name: str, ports: set[int]) -> None:
    deadline = time.monotonic() + 5
    while (left := stack_processes(home, name)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes of {name} still run: {[p.pid for p in left]}"
    assert not [p for p in ports if port_in_use(p)], "a port of the stack still listens"


def test_killed_up_leaks_nothing(home: Path, stack: tuple[str, Path]) -> None:
    """Defect 1: kill -9 `up` once its daemons are spawned, before they are healthy."""
    name, spec = stack
    proc = subprocess.Popen([MLSTACK, "up", str(spec)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    logs = home / "stacks" / name / "logs"
    deadline = time.monotonic() + 60
    while not (logs / "metadata.log").exists() or not (logs / "deployer.log").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "up never spawned"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    orphans = stack_processes(home, name)
    assert orphans, "the killed up had spawned daemons"
    orphan_ports = listening_ports(orphans)
    run_cli("up", str(spec), check=True)
    for p in orphans:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, (
            f"daemon {p.pid} spawned by the killed up still runs next to the new one"
        )
    recorded = set(recorded_pids(home, name).values())
    assert {p.pid for p in stack_processes(home, name) if p.pid in recorded} == recorded
    ports = listening_ports(stack_processes(home, name)) | orphan_ports
    run_cli("down", name, "--yes", check=True)
    assert_nothing_left(home, name, ports)


def test_killed_up_then_down_stops_the_orphans(home: Path, stack: tuple[str, Path]) -> None:
    """Defect 1: `down` alone (no second up) stops what a killed up spawned."""
    name, spec = stack
    proc = subprocess.Popen([MLSTACK, "up", str(spec)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    log = home / "stacks" / name / "logs" / "metadata.log"
    deadline = time.monotonic() + 60
    while not log.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "up never spawned"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    ports = listening_ports(stack_processes(home, name))
    run_cli("down", name, "--yes", check=True)
    assert_nothing_left(home, name, ports)


def test_corrupted_state_hint_stops_the_daemons(home: Path, stack: tuple[str, Path]) -> None:
    """Defect 1: the corrupted-state hint names `mlstack recover NAME`, which stops the
    stack's daemons from its folder alone; then up and down work again."""
    name, spec = stack
    run_cli("up", str(spec), check=True)
    ports = listening_ports(stack_processes(home, name))
    state = home / "state.json"
    state.write_text(state.read_text()[:-40])
    broken = run_cli("status", name)
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert f"mlstack recover {name}" in broken.stderr, broken.stderr
    recovered = run_cli("recover", name)
    assert recovered.returncode == 0, recovered.stderr
    assert_nothing_left(home, name, ports)
    shutil.move(state, str(state) + ".bak")
    run_cli("up", str(spec), check=True)
    assert get(meta_url(name) + "/runs", token_of(name)) == 200
    ports = listening_ports(stack_processes(home, name))
    run_cli("down", name, "--yes", check=True)
    assert_nothing_left(home, name, ports)


def test_moved_state_then_up_does_not_orphan(home: Path, stack: tuple[str, Path]) -> None:
    """Defect 1: the old hint (move state.json aside, up again) leaves no orphan either."""
    name, spec = stack
    run_cli("up", str(spec), check=True)
    old = {p.pid for p in stack_processes(home, name)}
    shutil.move(home / "state.json", home / "state.json.bak")
    lost = run_cli("down", name, "--yes")
    assert lost.returncode == 2 and f"mlstack recover {name}" in lost.stderr, lost.stderr
    run_cli("up", str(spec), check=True)
    still = [pid for pid in old if psutil.pid_exists(pid) and pid in
             {p.pid for p in stack_processes(home, name)}]  # fmt: skip
    assert not still, f"daemons of the lost state still run: {still}"
    ports = listening_ports(stack_processes(home, name))
    run_cli("down", name, "--yes", check=True)
    assert_nothing_left(home, name, ports)


def test_deleted_folder_restarts_services_with_the_new_token(
    home: Path, stack: tuple[str, Path]
) -> None:
    """Defect 2: the token is in the metadata server's and deployer's config hash."""
    name, spec = stack
    run_cli("up", str(spec), check=True)
    before = recorded_pids(home, name)
    shutil.rmtree(home / "stacks" / name)
    again = run_cli("up", str(spec), check=True)
    assert "no changes" not in again.stdout
    after = recorded_pids(home, name)
    assert after["metadata"] != before["metadata"]
    assert after["deployer"] != before["deployer"]
    assert (
        not psutil.pid_exists(before["metadata"])
        or psutil.Process(before["metadata"]).status() == psutil.STATUS_ZOMBIE
    )
    assert get(meta_url(name) + "/runs", token_of(name)) == 200


def test_stopped_metadata_server_is_restarted(home: Path, stack: tuple[str, Path]) -> None:
    """Defect 3: a `kill -STOP`ped metadata server fails its health check, so up restarts it."""
    name, spec = stack
    run_cli("up", str(spec), check=True)
    pid = recorded_pids(home, name)["metadata"]
    os.kill(pid, signal.SIGSTOP)
    try:
        again = run_cli("up", str(spec), check=True)
        assert "no changes" not in again.stdout
        assert "metadata" in again.stdout
        new = recorded_pids(home, name)["metadata"]
        assert new != pid
        assert get(meta_url(name) + "/runs", token_of(name)) == 200
        deadline = time.monotonic() + 10
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the stopped server was left running"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


TOY = Path(__file__).resolve().parents[1] / "pipelines" / "toy.py"


def test_dead_service_shows_as_restarting(home: Path, stack: tuple[str, Path]) -> None:
    """Issue 10 (smaller): a killed service is restarted, not "stopping settings changed"."""
    name, spec = stack
    run_cli("up", str(spec), check=True)
    os.kill(recorded_pids(home, name)["metadata"], signal.SIGKILL)
    again = run_cli("up", str(spec), check=True)
    shown = again.stdout + again.stderr
    assert "metadata: restarting" in shown, shown
    assert "settings changed" not in shown


def test_cancelled_run_skips_with_cancelled_and_files_are_private(
    home: Path, stack: tuple[str, Path], tmp_path: Path
) -> None:
    """Issue 10 (smaller): after a cancel the pending step says so; the stack's folders are
    0700, its logs and database 0600."""
    name, spec = stack
    run_cli("up", str(spec), check=True)
    marker = tmp_path / "slow.pid"
    driver = subprocess.Popen(
        [MLSTACK, "run", f"{TOY}:sleepy_then", "--stack", name],
        env=dict(os.environ, MLSTACK_TEST_MARKER=str(marker)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline and driver.poll() is None, "slow never started"
            time.sleep(0.1)
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    skipped = [ln for ln in (out + err).splitlines() if ln.startswith("noop: skipped")]
    assert skipped and "cancelled" in skipped[0], out + err
    assert "upstream" not in skipped[0]

    folder = home / "stacks" / name
    checked = {"dirs": 0, "logs": 0, "db": 0}
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode == 0o700, f"{path} is {mode:o}"
            checked["dirs"] += 1
        elif path.suffix == ".log" or path.name.startswith("metadata.db"):
            assert mode == 0o600, f"{path} is {mode:o}"
            checked["logs" if path.suffix == ".log" else "db"] += 1
    assert checked["dirs"] > 5 and checked["logs"] >= 3 and checked["db"] >= 1, checked
    step_logs = list((folder / "artifacts" / "logs").rglob("*.log"))
    assert step_logs, "the run uploaded no step log"
