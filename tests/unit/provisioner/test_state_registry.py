"""The state registry: round trips, atomic writes, corrupted files and cross-process locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.state import Event, ServiceRecord, StackRecord, StateRegistry
from stacks.common.errors import StackLocked, StateError
from tests.conftest import local_outputs_data

MLSTACK = str(Path(sys.executable).parent / "mlstack")


def make_record(name: str, **changes: Any) -> StackRecord:
    fields: dict[str, Any] = {
        "name": name,
        "stack_id": f"{name}-0001",
        "provider": "local",
        "status": "up",
        "spec": {"name": name, "provider": "local", "components": {"tracker": {"port": 5050}}},
        "spec_hash": "0123456789abcdef",
    }
    return StackRecord(**(fields | changes))


def temp_files(home: Path) -> list[Path]:
    return sorted(home.glob(".state-*"))


@pytest.fixture
def registry(tmp_path: Path) -> StateRegistry:
    return StateRegistry(tmp_path / "home")


# --- round trips --------------------------------------------------------------------------


def test_save_get_list_round_trip(registry: StateRegistry) -> None:
    started = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    full = make_record(
        "demo",
        spec_path="/work/stack.yaml",
        outputs=local_outputs_data("demo"),
        services={
            "mlflow": ServiceRecord(
                name="mlflow",
                component="tracker",
                config_hash="abc",
                port=5050,
                pid=4242,
                create_time=1714564800.5,
                log="/tmp/mlflow.log",
                started_at=started,
            )
        },
        expires_at=started + timedelta(hours=8),
        ttl="8h",
        events=[Event(kind="up", message="stack is up", at=started)],
    )
    other = make_record("another", status="destroyed")

    registry.save(full)
    registry.save(other)

    assert registry.get("demo") == full
    assert registry.get("another") == other
    assert registry.get("missing") is None
    assert [r.name for r in registry.list()] == ["another", "demo"]
    assert registry.list() == [other, full]


def test_saving_the_same_name_replaces_the_record(registry: StateRegistry) -> None:
    record = make_record("demo", status="creating")
    registry.save(record)
    first_update = record.updated_at

    record.status = "up"
    record.log("up", "all services healthy")
    registry.save(record)

    stored = registry.get("demo")
    assert stored is not None
    assert stored.status == "up"
    assert [e.message for e in stored.events] == ["all services healthy"]
    assert stored.updated_at >= first_update
    assert len(registry.list()) == 1


def test_an_empty_home_has_no_stacks(registry: StateRegistry) -> None:
    assert registry.list() == []
    assert registry.get("demo") is None
    registry.check_readable()


def test_the_home_comes_from_mlstack_home_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSTACK_HOME", str(tmp_path / "first"))
    StateRegistry().save(make_record("demo"))
    monkeypatch.setenv("MLSTACK_HOME", str(tmp_path / "second"))

    assert StateRegistry().list() == []
    assert (tmp_path / "first" / "state.json").is_file()
    assert StateRegistry(tmp_path / "first").get("demo") is not None


def test_the_file_is_valid_json_after_every_save(registry: StateRegistry) -> None:
    for i in range(12):
        registry.save(make_record(f"stack-{i}"))

        data = json.loads(registry.path.read_text(encoding="utf-8"))
        assert isinstance(data, dict)
        names = sorted(doc["name"] for doc in data["stacks"].values())
        assert names == sorted(f"stack-{j}" for j in range(i + 1))
        assert temp_files(registry.home) == []


def test_event_log_is_capped(registry: StateRegistry) -> None:
    record = make_record("demo")
    for i in range(250):
        record.log("tick", f"event {i}")
    registry.save(record)

    stored = registry.get("demo")
    assert stored is not None
    assert len(stored.events) == 200
    assert stored.events[-1].message == "event 249"


# --- writes that fail midway --------------------------------------------------------------


@pytest.fixture
def saved(registry: StateRegistry) -> tuple[StateRegistry, bytes]:
    """A registry with two records on disk, and the file's bytes at that point."""
    registry.save(make_record("alpha"))
    registry.save(make_record("beta"))
    return registry, registry.path.read_bytes()


def test_a_failing_json_dump_leaves_the_old_file_and_no_temp_file(
    saved: tuple[StateRegistry, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, before = saved

    def dump_half_then_fail(obj: Any, fh: Any, **kwargs: Any) -> None:
        text = json.dumps(obj, **kwargs)
        fh.write(text[: len(text) // 2])
        fh.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_half_then_fail)
    with pytest.raises(StateError, match=r"No space left.*previous version is intact"):
        registry.save(make_record("gamma"))
    monkeypatch.undo()

    assert registry.path.read_bytes() == before
    assert temp_files(registry.home) == []
    assert [r.name for r in registry.list()] == ["alpha", "beta"]


def test_a_failing_rename_leaves_the_old_file_and_no_temp_file(
    saved: tuple[StateRegistry, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, before = saved

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StateError, match="Input/output error"):
        registry.save(make_record("gamma"))
    monkeypatch.undo()

    assert registry.path.read_bytes() == before
    assert temp_files(registry.home) == []
    assert registry.get("gamma") is None


def test_an_interrupt_during_fsync_leaves_the_old_file_and_no_temp_file(
    saved: tuple[StateRegistry, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, before = saved

    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        registry.save(make_record("gamma"))
    monkeypatch.undo()

    assert registry.path.read_bytes() == before
    assert temp_files(registry.home) == []


# --- corrupted state files ----------------------------------------------------------------

CORRUPT = [
    pytest.param(b"\x00\x01 this is not json }{", id="garbage"),
    pytest.param(b'{"stacks": {"1": {"name": "demo", "stat', id="truncated-json"),
    pytest.param(b'[{"name": "demo"}]', id="json-list"),
    pytest.param(b'"just a string"', id="json-string"),
    pytest.param(b"null", id="json-null"),
    pytest.param(b"", id="empty-file"),
]
OPERATIONS = {
    "list": lambda r: r.list(),
    "get": lambda r: r.get("demo"),
    "save": lambda r: r.save(make_record("demo")),
    "check_readable": lambda r: r.check_readable(),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("content", CORRUPT)
def test_a_corrupted_file_raises_state_error_and_is_never_overwritten(
    registry: StateRegistry, content: bytes, operation: str
) -> None:
    registry.home.mkdir(parents=True)
    registry.path.write_bytes(content)

    with pytest.raises(StateError) as info:
        OPERATIONS[operation](registry)

    message = str(info.value)
    assert str(registry.path) in message
    assert "corrupted" in message
    assert "\n" not in message
    assert info.value.exit_code == 1
    assert registry.path.read_bytes() == content
    assert temp_files(registry.home) == []


def test_bug_non_utf8_state_file_is_not_a_state_error(registry: StateRegistry) -> None:
    registry.home.mkdir(parents=True)
    registry.path.write_bytes(b"\xff\xfe\x00garbage\x80")

    with pytest.raises(StateError):
        registry.list()


@pytest.mark.parametrize(
    "content",
    [b'{"stacks": 5}', b'{"stacks": {"1": 5}}', b'{"stacks": {"1": {"name": "demo"}}}'],
    ids=["table-not-object", "record-not-object", "record-missing-fields"],
)
def test_bug_wrongly_shaped_state_is_not_a_state_error(
    registry: StateRegistry, content: bytes
) -> None:
    registry.home.mkdir(parents=True)
    registry.path.write_bytes(content)

    with pytest.raises(StateError):
        registry.list()


def run_status(home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MLSTACK_HOME=str(home))
    return subprocess.run(
        [MLSTACK, "status"], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def assert_status_fails_cleanly(home: Path, content: bytes) -> None:
    state = home / "state.json"
    proc = run_status(home)

    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: state file ")
    assert str(state) in lines[0]
    assert proc.returncode == 1
    assert state.read_bytes() == content


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01 this is not json }{", b'{"stacks": {"1": {"na', b"[1, 2, 3]"],
    ids=["garbage", "truncated-json", "json-list"],
)
def test_cli_status_on_a_corrupted_file_prints_one_line_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MLSTACK_HOME", str(home))
    (home / "state.json").write_bytes(content)

    assert_status_fails_cleanly(home, content)


def test_bug_cli_status_on_non_utf8_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    content = b"\xff\xfe\x00garbage\x80"
    (home / "state.json").write_bytes(content)

    assert_status_fails_cleanly(home, content)


def test_cli_status_with_no_state_says_there_are_no_stacks(tmp_path: Path) -> None:
    proc = run_status(tmp_path / "home")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no stacks")


# --- per-stack locks across processes -----------------------------------------------------

HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from provisioner.state import StateRegistry

    with StateRegistry(Path(sys.argv[1])).stack_lock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    """
)


@pytest.fixture
def lock_holder(registry: StateRegistry) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of stack 'demo' until we write a line to it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(registry.home), "demo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def release(proc: subprocess.Popen[str]) -> None:
    out, _ = proc.communicate("\n", timeout=10)
    assert out.strip() == "released"
    assert proc.returncode == 0


def test_a_lock_held_by_another_process_raises_stack_locked(
    registry: StateRegistry, lock_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(StackLocked) as info, registry.stack_lock("demo"):
        pytest.fail("acquired a lock another process holds")

    message = str(info.value)
    assert "'demo'" in message
    assert f"pid {lock_holder.pid}" in message
    assert "\n" not in message

    with registry.stack_lock("other"):  # other stacks are not blocked
        pass

    release(lock_holder)
    with registry.stack_lock("demo"):  # free again once the holder is done
        assert (
            (registry.home / "locks" / "demo.owner").read_text().startswith(f"pid {os.getpid()} ")
        )


def test_the_lock_is_released_when_the_body_raises(registry: StateRegistry) -> None:
    with pytest.raises(RuntimeError), registry.stack_lock("demo"):
        raise RuntimeError("boom")

    assert not (registry.home / "locks" / "demo.owner").exists()
    with registry.stack_lock("demo"):
        pass


# --- concurrent writers -------------------------------------------------------------------

SAVE_MANY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from provisioner.state import StackRecord, StateRegistry

    home, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    registry = StateRegistry(home)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        name = f"w{worker}-r{i:02d}"
        registry.save(StackRecord(name=name, stack_id=name, provider="local", status="up",
                                  spec={"name": name}, spec_hash=f"{i:016x}"))
    """
)


def test_concurrent_saves_from_four_processes_all_land(registry: StateRegistry) -> None:
    workers, per_worker = 4, 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SAVE_MANY, str(registry.home), str(w), str(per_worker)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    try:
        for proc in procs:  # start them together so their saves interleave
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    data = json.loads(registry.path.read_text(encoding="utf-8"))
    assert len(data["stacks"]) == workers * per_worker
    expected = sorted(f"w{w}-r{i:02d}" for w in range(workers) for i in range(per_worker))
    assert [r.name for r in registry.list()] == expected
    assert temp_files(registry.home) == []
