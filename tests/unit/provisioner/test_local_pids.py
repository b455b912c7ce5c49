"""The local stack's trail on disk (stacks/local/pids.py), the corrupted-state hint, and
full-disk errors naming the file. Real processes, a real full device (/dev/full)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from provisioner.state import StateRegistry
from stacks.common.errors import DiskFull, StateError, writing
from stacks.common.process import Daemon, spawn
from stacks.local import pids
from stacks.local.base import STACK_ID_ENV


def sleeper(folder: Path, stack_id: str | None, cwd: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(STACK_ID_ENV, None)
    if stack_id:
        env[STACK_ID_ENV] = stack_id
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=cwd or folder,
        env=env,
        start_new_session=True,
    )


def test_pid_file_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    me = psutil.Process()
    pids.write(tmp_path, "metadata", Daemon(me.pid, me.create_time()), port=1234)
    assert pids.read(tmp_path)["metadata"]["port"] == 1234
    assert not [p for p in (tmp_path / "pids").iterdir() if p.name.startswith(".")]
    assert (tmp_path / "pids").stat().st_mode & 0o777 == 0o700
    (tmp_path / "pids" / "broken.json").write_text("{not json")
    assert set(pids.read(tmp_path)) == {"metadata"}


def test_strays_are_found_by_marker_or_folder_and_kept_ones_survive(tmp_path: Path) -> None:
    folder = tmp_path / "stacks" / "s1"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_id = sleeper(folder, "s1-aaaaaa", cwd=elsewhere)  # our id, working elsewhere
    by_dir = sleeper(folder, "s1-old000")  # a lost state's id, in the folder
    kept = sleeper(folder, "s1-aaaaaa")
    stranger = sleeper(folder, None)  # no marker: a user's shell in the folder, say
    other = sleeper(folder, "s2-bbbbbb", cwd=elsewhere)
    procs = [by_id, by_dir, kept, stranger, other]
    try:
        found = {p.pid for p in pids.stack_processes(folder, {"s1-aaaaaa"})}
        assert found == {by_id.pid, by_dir.pid, kept.pid}
        stopped = pids.stop_strays(folder, {"s1-aaaaaa"}, keep={kept.pid}, grace=2)
        assert set(stopped) == {by_id.pid, by_dir.pid}
        for p in (by_id, by_dir):
            assert p.wait(timeout=5) is not None
        assert kept.poll() is None and stranger.poll() is None and other.poll() is None
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_spawned_daemon_is_private(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "d.log"
    daemon = spawn([sys.executable, "-c", "open('made.db', 'w').close()"], log=log, cwd=tmp_path)
    psutil.Process(daemon.pid).wait(timeout=10)
    assert log.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "made.db").stat().st_mode & 0o777 == 0o600


def test_corrupted_state_hint_names_recover_for_each_local_stack(tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        (tmp_path / "stacks" / name).mkdir(parents=True)
    (tmp_path / "state.json").write_text("{broken")
    with pytest.raises(StateError) as caught:
        StateRegistry(tmp_path).list()
    assert caught.value.hint is not None
    assert "mlstack recover alpha" in caught.value.hint
    assert "mlstack recover beta" in caught.value.hint
    assert f"mv {tmp_path / 'state.json'}" in caught.value.hint
    assert (tmp_path / "state.json").read_text() == "{broken"  # left untouched


def test_full_device_error_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "store.enc"
    with pytest.raises(DiskFull) as caught, writing(target), open("/dev/full", "wb") as fh:
        fh.write(b"x" * 10)
    assert str(target) in str(caught.value) and "no space left" in str(caught.value)
    with pytest.raises(PermissionError), writing(target):
        raise PermissionError(13, "denied")  # other errors pass through unchanged
