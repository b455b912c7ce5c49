"""Local drain: an endpoint (a backend behind a stable front) is stopped and reported once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil
import pytest

from provisioner.cost.drain import drain_local, local_leftovers
from provisioner.state import StackRecord
from stacks.common.process import is_alive, spawn, stop
from stacks.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "stacks"


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def update(self, item: str, state: str, detail: str = "") -> None:
        self.lines.append((item, state))


@pytest.fixture
def stack_dir(tmp_path: Path):
    folder = tmp_path / "stack"
    (folder / "deployments").mkdir(parents=True)
    started = []
    yield folder, started
    for daemon in started:  # whatever the test left running
        stop(daemon.pid, daemon.create_time)


def _record() -> StackRecord:
    spec = load_spec(EXAMPLES / "local.yaml")
    return StackRecord(
        name=spec.name, stack_id="s-test", provider="local", status="up", spec=spec, spec_hash="h"
    )


def _sleeper(folder: Path, started: list, name: str, role: str, record_id: str) -> int:
    daemon = spawn([sys.executable, "-c", "import time; time.sleep(600)"],
                   log=folder / f"{record_id}.log", cwd=folder)  # fmt: skip
    started.append(daemon)
    marker = folder / "deployments" / f"{record_id}.json"
    marker.write_text(json.dumps({"name": name, "role": role, "pid": daemon.pid,
                                  "create_time": daemon.create_time}))  # fmt: skip
    return daemon.pid


def test_backend_and_front_are_one_drained_endpoint(stack_dir) -> None:
    folder, started = stack_dir
    backend = _sleeper(folder, started, "ridge", "model", "0123abcd")
    front = _sleeper(folder, started, "ridge", "front", "front-ridge")
    other = _sleeper(folder, started, "lasso", "model", "4567ef01")
    progress = Lines()

    drained = drain_local(_record(), folder, progress)

    assert sorted((i.kind, i.name) for i in drained) == [
        ("endpoint", "lasso"),
        ("endpoint", "ridge"),
    ]
    ridge = next(i for i in drained if i.name == "ridge")
    assert f"model pid {backend}" in ridge.detail and f"front pid {front}" in ridge.detail
    for pid in (backend, front, other):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert list((folder / "deployments").glob("*.json")) == []
    assert ("endpoint ridge", "stopped") in progress.lines
    assert local_leftovers(_record(), folder, "drain") == []


def test_a_record_whose_process_is_gone_is_drained_without_signalling(stack_dir) -> None:
    folder, started = stack_dir
    pid = _sleeper(folder, started, "ridge", "model", "0123abcd")
    stop(pid, started[0].create_time)
    assert not is_alive(pid, started[0].create_time)
    drained = drain_local(_record(), folder, Lines())
    assert [(i.kind, i.name) for i in drained] == [("endpoint", "ridge")]
