"""Shared fixtures: an isolated $MLSTACK_HOME and a helper to run the real `mlstack` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie not yet reaped by init counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
