"""Issue 10 (smaller): on a full disk every command says which file it could not write.

A real full filesystem: a small tmpfs holding $MLSTACK_HOME, filled up after ``up``. Mounting
needs root (CAP_SYS_ADMIN); where that is refused the test skips (it starts no service of
its own that CI must have, so it is not marked ``services``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.stack_procs import kill_all

TOY = Path(__file__).resolve().parents[1] / "pipelines" / "toy.py"


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    monkeypatch.setenv("MLSTACK_HOME", str(disk / "home"))
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def one_line_naming(proc: subprocess.CompletedProcess[str], where: Path) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no space left" in lines[0] and str(where) in lines[0], lines[0]
    assert "Errno 28" not in lines[0]
    return lines[0]


def test_full_disk_errors_name_the_file(small_disk: Path, tmp_path: Path) -> None:
    name = f"df-{uuid.uuid4().hex[:6]}"
    home = small_disk / "home"
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: {name}\ncomponents:\n  tracker: none\n  deployer: none\n")
    run_cli("up", str(spec), check=True)
    filler = fill(small_disk)
    try:
        secret = run_cli("secret", "set", name, "db", "value")
        one_line_naming(secret, home / "stacks" / name / "secrets" / "store.enc")
        run = run_cli("run", f"{TOY}:fan", "--stack", name, "--no-cache", timeout=120)
        assert run.returncode != 0
        assert "no space left" in run.stderr and str(home) in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and "Errno 28" not in run.stderr
        spec.write_text(spec.read_text() + "ttl: 2h\n")
        one_line_naming(run_cli("up", str(spec)), home)
        one_line_naming(run_cli("down", name, "--yes"), home)

        # A step's output that does not fit names the file, not a materializer to register.
        from runner.artifacts import ArtifactStore
        from runner.errors import ArtifactError

        store = ArtifactStore((small_disk / "store").as_uri())
        with pytest.raises(ArtifactError) as caught:
            store.save(list(range(200_000)), "big")
        assert "no space left" in str(caught.value)
        assert str(small_disk / "store") in str(caught.value)
        assert "register_materializer" not in str(caught.value)
    finally:
        os.unlink(filler)
        run_cli("down", name, "--yes")
        kill_all(home, name)
