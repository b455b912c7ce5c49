"""Step logs in the store while the step runs: the location, the pump that mirrors a
growing log to S3 (a real moto server), live lines and ``follow``."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from runner.artifacts import ArtifactStore
from runner.logs import LogPump, follow
from tests.unit.runner_artifacts.test_artifact_store_s3 import Moto, moto  # noqa: F401


def test_the_log_location_is_one_function_of_run_step_and_attempt(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}")
    assert store.log_uri("r1", "train") == f"file://{tmp_path}/logs/r1/train.log"
    assert store.log_uri("r1", "train", 1) == store.log_uri("r1", "train")
    assert store.log_uri("r1", "train", 3) == f"file://{tmp_path}/logs/r1/train.attempt-3.log"
    # On file:// a step writes straight into the store: the pump has nothing to mirror.
    path = store.local_log_path(store.log_uri("r1", "train"))
    assert path == tmp_path / "logs" / "r1" / "train.log" and path.read_bytes() == b""
    s3 = ArtifactStore("s3://bucket/prefix", {"anon": True})
    assert s3.log_uri("r1", "train", 2) == "s3://bucket/prefix/logs/r1/train.attempt-2.log"
    assert s3.local_log_path(s3.log_uri("r1", "train")) is None


def test_the_pump_mirrors_a_growing_log_to_s3_and_keeps_its_end(
    moto: Moto,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = ArtifactStore(f"s3://{moto.bucket}/{uuid.uuid4().hex[:8]}", moto.options)
    seen: list[tuple[str, str]] = []
    pump = LogPump(store, on_lines=lambda name, lines: seen.extend((name, ln) for ln in lines),
                   mirror_seconds=0.2)  # fmt: skip
    uri = store.log_uri("run-1", "train")
    path = pump.path_for(uri, tmp_path / "train.log")
    assert path == tmp_path / "train.log"
    path.write_bytes(b"")
    pump.watch("step-1", "train", path, uri)
    with path.open("a") as out:
        out.write("epoch 1\n")
        out.flush()
        deadline = time.monotonic() + 10
        while store.read_log(uri) != b"epoch 1\n":  # mirrored while the step still runs
            assert time.monotonic() < deadline, store.read_log(uri)
            time.sleep(0.05)
        assert ("train", "epoch 1") in seen
        out.write("epoch 2\nno newline yet")
    pump.done("step-1")  # the step ended: its last bytes are in the store at once
    assert store.read_log(uri) == b"epoch 1\nepoch 2\nno newline yet"
    assert store.read_log(uri, offset=8) == b"epoch 2\nno newline yet"
    assert store.read_log(uri, offset=len(b"epoch 1\nepoch 2\nno newline yet")) == b""
    assert store.read_log(store.log_uri("run-1", "not-yet")) == b""
    assert [ln for _, ln in seen] == ["epoch 1", "epoch 2", "no newline yet"]
    pump.close()


def test_the_pump_hands_out_a_last_line_without_newline_when_the_step_ends(
    moto: Moto,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A line still open when a tick read it is handed out at the end, though nothing more
    was written (what a Batch job echoes to CloudWatch Logs ends with it)."""
    store = ArtifactStore(f"s3://{moto.bucket}/{uuid.uuid4().hex[:8]}", moto.options)
    seen: list[str] = []
    pump = LogPump(store, on_lines=lambda _, lines: seen.extend(lines), mirror_seconds=0.1)
    uri = store.log_uri("run-1", "train")
    path = tmp_path / "train.log"
    path.write_bytes(b"done\nthe end, no newline")
    pump.watch("step-1", "train", path, uri)
    deadline = time.monotonic() + 10
    while store.read_log(uri) != path.read_bytes():  # a tick read it all (and mirrored it)
        assert time.monotonic() < deadline, store.read_log(uri)
        time.sleep(0.05)
    assert seen == ["done"]
    pump.done("step-1")
    assert seen == ["done", "the end, no newline"]
    pump.close()


def test_follow_yields_new_text_until_the_step_ends(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}")
    uri = store.log_uri("run-1", "train")
    path = store.local_log_path(uri)
    assert path is not None
    status = {"value": "running"}

    def write() -> None:
        for n in range(3):
            with path.open("a") as out:
                out.write(f"line {n}\n")
            time.sleep(0.15)
        with path.open("ab") as out:
            out.write("done ✓\n".encode())
        status["value"] = "completed"

    got: list[str] = []
    writer = threading.Thread(target=write)
    writer.start()
    for text in follow(store, lambda: (uri, status["value"]), poll=0.05, settle=0.0):
        got.append(text)
    writer.join()
    assert "".join(got) == "line 0\nline 1\nline 2\ndone ✓\n"
    assert len(got) > 1  # streamed in pieces, not read once at the end
