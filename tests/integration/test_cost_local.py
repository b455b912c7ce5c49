"""TTL, budget and the reaper on real local stacks; `cost`; the teardown report.

The reaper's clock is moved with ``MLSTACK_NOW`` (only the reaper and ``cost`` read it), so an
expiry is reached without waiting. Local stacks cost $0, so a tiny budget never reaps one
(budget reaping of a priced stack: tests/unit/cost/test_example_plan_and_reaper.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.state import StateRegistry
from stacks.common.process import is_alive, port_in_use
from tests.conftest import MLSTACK, gone, run_cli

pytestmark = pytest.mark.services

LIGHT = "components:\n  tracker: none\n  deployer: none\n"


def _spec(tmp: Path, name: str, extra: str = "") -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\nprovider: local\n{extra}{LIGHT}")
    return str(path)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def stacks(home: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    names = {"ttl": "cost-ttl", "free": "cost-free", "cheap": "cost-cheap", "busy": "cost-busy"}
    specs = {
        "ttl": _spec(tmp_path, names["ttl"]),
        "free": _spec(tmp_path, names["free"]),
        "cheap": _spec(tmp_path, names["cheap"], "budget: 0.01\n"),
        "busy": _spec(tmp_path, names["busy"], "ttl: 1m\n"),
    }
    try:
        run_cli("up", specs["ttl"], "--ttl", "1m", check=True)
        for key in ("free", "cheap", "busy"):
            run_cli("up", specs[key], check=True)
        yield names
    finally:
        for name in names.values():
            run_cli("down", name, "--yes")


def _pids(name: str) -> list[tuple[int, float | None, int | None]]:
    rec = StateRegistry().get(name)
    assert rec is not None
    return [(s.pid, s.create_time, s.port) for s in rec.services.values() if s.pid]


def test_reaper_destroys_the_expired_stack_only_and_two_reapers_never_race(
    stacks: dict[str, str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl_pids = _pids(stacks["ttl"])
    others = {k: _pids(v) for k, v in stacks.items() if k != "ttl"}
    assert ttl_pids and all(others.values())

    # A holder of cost-busy's change lock stands for an `up` in progress.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from provisioner.state import StateRegistry;"
            f" cm = StateRegistry().stack_lock({stacks['busy']!r}); cm.__enter__();"
            " print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        extended = run_cli("extend", stacks["ttl"], "2h", check=True)
        assert "now expires at" in extended.stdout

        soon = datetime.now(UTC) + timedelta(hours=1)
        monkeypatch.setenv("MLSTACK_NOW", _iso(soon))
        first = run_cli("reap", check=True)
        assert f"{stacks['ttl']}: keep: expires" in first.stdout  # extended past the clock
        assert f"{stacks['busy']}: skip: an up or down is in progress" in first.stdout
        assert f"{stacks['free']}: skip: no TTL and no budget" in first.stdout
        assert f"{stacks['cheap']}: keep: spend $0.00 of $0.01" in first.stdout

        later = datetime.now(UTC) + timedelta(hours=3)
        monkeypatch.setenv("MLSTACK_NOW", _iso(later))
        dry_run = run_cli("reap", "--dry-run", check=True)
        assert f"{stacks['ttl']}: would destroy: expired at" in dry_run.stdout
        assert all(is_alive(pid, ct) for pid, ct, _ in ttl_pids)

        reapers = [
            subprocess.Popen(
                [MLSTACK, "reap"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=180) for p in reapers]
        assert [p.returncode for p in reapers] == [0, 0], outs
        both = "".join(o for o, _ in outs)
        assert both.count(f"{stacks['ttl']}: destroy: expired at") == 1, both
        assert both.count(f"{stacks['ttl']}: destroyed (") == 1, both
    finally:
        holder.kill()
        holder.wait()

    for pid, _ct, port in ttl_pids:
        assert gone(pid)
        assert port is None or not port_in_use(port)
    assert not (home / "stacks" / stacks["ttl"]).exists()
    rec = StateRegistry().get(stacks["ttl"])
    assert rec is not None and rec.status == "destroyed"
    assert rec.events[-1].kind == "reap" and rec.events[-1].message.startswith("reaped: expired")
    for key, pids in others.items():  # no TTL, $0 under budget, mid-up: all untouched
        state = StateRegistry().get(stacks[key])
        assert state is not None and state.status == "up", key
        assert all(is_alive(pid, ct) for pid, ct, _ in pids), key
    log = (home / "logs" / "reaper.log").read_text()
    assert f"{stacks['ttl']}: destroyed" in log and f"{stacks['busy']}: skip" in log


def test_cost_of_a_local_stack_is_zero_and_priced(stacks: dict[str, str]) -> None:
    data = json.loads(run_cli("cost", stacks["cheap"], "--json", check=True).stdout)
    assert len(data) == 1
    spent = data[0]
    assert spent["total"] == 0 and spent["standing_per_hour"] == 0
    assert spent["unpriced"] == [] and spent["notes"] == []  # metadata server answered
    assert spent["budget"] == 0.01 and spent["runtime"] == []
    assert set(spent["components"]) >= {"metadata", "artifact_store", "secrets"}


def test_down_ends_with_a_teardown_report(stacks: dict[str, str], home: Path) -> None:
    pids = _pids(stacks["free"])
    proc = run_cli("down", stacks["free"], "--yes", "--json", check=True)
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["leftovers"] == []
    assert report["drained"] == []  # nothing was deployed on this stack
    assert {"metadata", "artifact_store", "secrets"} <= {i["name"] for i in report["destroyed"]}
    assert report["total_spend"] == 0 and report["spend_unpriced"] == []
    assert all(gone(pid) for pid, _, _ in pids)
    text = run_cli("down", stacks["cheap"], "--yes", check=True).stdout
    assert "leftovers: none" in text and "estimated total spend: $0" in text
