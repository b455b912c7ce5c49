"""Fault test (issue 10): kill -9 ``mlstack up`` and ``mlstack down`` at points spread over
their measured duration; after each kill the next ``up`` converges, ``down`` leaves no
process of the stack (process trees rooted at the recorded pids, every process whose
environment, working directory or open files point at the stack, and its ports), and
state.json is valid JSON throughout. The same after state.json is corrupted and the
recovery hint of the error is followed.

The stack is light (metadata server and deployer; the registry too where it is not killed
30 times) so that 30 kills of ``up`` take about two minutes; MLflow, whose uvicorn worker
was the orphan most often found, gets its own kills at the two moments that leaked it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stacks.common.process import port_in_use
from tests.conftest import MLSTACK, run_cli
from tests.integration.stack_procs import (
    kill_all,
    listening_ports,
    recorded_pids,
    stack_processes,
    tree,
)

pytestmark = pytest.mark.services

UP_POINTS = 10
UP_REPEATS = 3
DOWN_POINTS = 5


def light_spec(name: str, with_registry: bool = True) -> str:
    """Metadata server and deployer; the registry too when installed (its ``down`` also
    cleans Docker, ~1 s more, so the 30 kills of ``up`` go without it)."""
    registry = with_registry and shutil.which("docker-registry") is not None
    extra = "  container_registry: local\n" if registry else ""
    return f"name: {name}\nprovider: local\ncomponents:\n  tracker: none\n{extra}"


@pytest.fixture
def stack(home: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"cm-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "s.yaml"
    spec.write_text(light_spec(name))
    try:
        yield name, spec
    finally:
        run_cli("down", name, "--yes")
        kill_all(home, name)


def state_valid(home: Path) -> None:
    """state.json is absent or valid JSON (never half-written)."""
    path = home / "state.json"
    if path.exists():
        json.loads(path.read_text())


def killed(argv: list[str], after: float) -> None:
    """Run ``mlstack ARGV`` and SIGKILL it ``after`` seconds later (if still running)."""
    proc = subprocess.Popen([MLSTACK, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def converged(home: Path, name: str, spec: Path, check_plan: bool = False) -> set[int]:
    """``up`` succeeds and the stack's processes are exactly the recorded daemons' trees;
    the ports they listen on."""
    state_valid(home)
    run_cli("up", str(spec), check=True)
    state_valid(home)
    recorded = recorded_pids(home, name)
    assert recorded, "up recorded no daemon"
    owned: set[int] = set()
    for pid in recorded.values():
        assert tree(pid), f"recorded pid {pid} is not running"
        owned |= tree(pid)
    procs = stack_processes(home, name)
    extra = {p.pid for p in procs} - owned
    assert not extra, f"processes of the stack no record owns: {sorted(extra)}"
    if check_plan:
        plan = json.loads(run_cli("plan", str(spec), "--json", check=True).stdout)
        assert {c["action"] for c in plan["changes"]} == {"unchanged"}, plan
    return listening_ports(procs)


def torn_down(home: Path, name: str, ports: set[int], pids: set[int]) -> None:
    """``down`` succeeds and leaves no process, port or folder of the stack."""
    run_cli("down", name, "--yes", check=True)
    state_valid(home)
    deadline = time.monotonic() + 5
    while (left := stack_processes(home, name)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes of {name} left after down: {[p.pid for p in left]}"
    alive = [p for p in pids if running(p)]
    assert not alive, f"recorded processes left after down: {alive}"
    assert not [p for p in ports if port_in_use(p)], "a port of the stack still listens"
    assert not (home / "stacks" / name).exists()


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def measured(argv: list[str]) -> float:
    started = time.monotonic()
    run_cli(*argv, check=True)
    return time.monotonic() - started


def stack_pids(home: Path, name: str) -> set[int]:
    return {p.pid for p in stack_processes(home, name)}


def test_kill_up_at_ten_points(home: Path, stack: tuple[str, Path]) -> None:
    name, spec = stack
    spec.write_text(light_spec(name, with_registry=False))
    duration = measured(["up", str(spec)])
    ports, pids = listening_ports(stack_processes(home, name)), stack_pids(home, name)
    torn_down(home, name, ports, pids)
    points = [duration * (i + 0.5) / UP_POINTS for i in range(UP_POINTS)]
    for point in points:
        for rep in range(UP_REPEATS):
            killed(["up", str(spec)], point)
            state_valid(home)
            seen = stack_pids(home, name)  # what the killed up left running
            ports = converged(home, name, spec, check_plan=rep == 0)
            now = stack_pids(home, name)
            assert not [p for p in seen if p not in now and running(p)], "an orphan survived up"
            torn_down(home, name, ports, seen | stack_pids(home, name))


def test_kill_down_at_five_points(home: Path, stack: tuple[str, Path]) -> None:
    name, spec = stack
    run_cli("up", str(spec), check=True)
    ports, pids = listening_ports(stack_processes(home, name)), stack_pids(home, name)
    duration = measured(["down", name, "--yes"])
    torn_down_after_kill = []
    for i in range(DOWN_POINTS):
        run_cli("up", str(spec), check=True)
        pids = stack_pids(home, name)
        killed(["down", name, "--yes"], duration * (i + 0.5) / DOWN_POINTS)
        state_valid(home)
        ports = converged(home, name, spec) | ports
        torn_down(home, name, ports, pids | stack_pids(home, name))
        torn_down_after_kill.append(i)
    assert len(torn_down_after_kill) == DOWN_POINTS


def test_kill_up_then_corrupt_state_and_follow_the_hint(
    home: Path, stack: tuple[str, Path]
) -> None:
    name, spec = stack
    duration = measured(["up", str(spec)])
    run_cli("down", name, "--yes", check=True)
    for fraction in (0.3, 0.7, 1.5):  # mid-way, late, and after a complete up
        killed(["up", str(spec)], duration * fraction)
        seen = stack_pids(home, name)
        ports = listening_ports(stack_processes(home, name))
        state = home / "state.json"
        assert state.exists(), "up records the stack before it starts anything"
        state.write_text(state.read_text()[: len(state.read_text()) // 2])
        broken = run_cli("status")
        assert broken.returncode == 1 and "Traceback" not in broken.stderr
        assert len(broken.stderr.strip().splitlines()) == 1, broken.stderr
        hint = broken.stderr
        # Follow the hint as written: each `mlstack recover NAME`, then the mv it names.
        for other in re.findall(r"mlstack recover ([\w.-]+)", hint):
            run_cli("recover", other, check=True)
        assert not stack_processes(home, name), "recover left daemons running"
        move = re.search(r"mv (\S+) (\S+?)\)? to start over", hint)
        assert move, hint
        shutil.move(move.group(1), move.group(2))
        ports |= converged(home, name, spec)
        torn_down(home, name, ports, seen | stack_pids(home, name))


def test_kill_up_with_mlflow(home: Path, tmp_path: Path) -> None:
    """The MLflow tracker: killed while it migrates its database, and once its uvicorn
    worker runs (the orphan the issue found most); the next up must not race it."""
    name = f"cm-{uuid.uuid4().hex[:6]}"
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: {name}\nprovider: local\n")
    logs = home / "stacks" / name / "logs"
    try:
        for moment in ("migrating", "worker"):
            proc = subprocess.Popen([MLSTACK, "up", str(spec)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                pid_file = home / "stacks" / name / "pids" / "tracker.json"
                if moment == "migrating" and (logs / "tracker.log").exists():
                    time.sleep(1.0)
                    break
                if moment == "worker" and pid_file.exists():
                    pid = json.loads(pid_file.read_text())["pid"]
                    if len(tree(pid)) > 1:
                        break
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            state_valid(home)
            seen = stack_pids(home, name)
            assert seen, f"the up killed at {moment} had spawned nothing"
            ports = converged(home, name, spec)
            torn_down(home, name, ports, seen | stack_pids(home, name))
    finally:
        run_cli("down", name, "--yes")
        kill_all(home, name)
