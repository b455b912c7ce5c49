"""The file:// artifact store: content addressing, immutability, logs, code archives."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.artifacts import ArtifactStore, SavedArtifact
from runner.errors import ArtifactError
from runner.materializers import Materializer, register_materializer


def object_path(store: ArtifactStore, uri: str) -> Path:
    assert uri.startswith(store.root_uri + "/objects/")
    return Path(uri.removeprefix("file://"))


def test_root_uri_is_normalized(tmp_path: Path) -> None:
    assert ArtifactStore(f"file://{tmp_path}/s/").root_uri == f"file://{tmp_path}/s"
    assert ArtifactStore(str(tmp_path / "plain")).root_uri == f"file://{tmp_path}/plain"
    assert repr(ArtifactStore(f"file://{tmp_path}")) == f"ArtifactStore('file://{tmp_path}')"


def test_save_and_load_a_value(store: ArtifactStore) -> None:
    saved = store.save({"acc": 0.9, "labels": ["a", "b"]}, "metrics")
    assert isinstance(saved, SavedArtifact)
    assert (saved.materializer, saved.type_name) == ("json", "builtins.dict")
    digest = saved.content_hash
    assert len(digest) == 64
    assert saved.uri == f"{store.root_uri}/objects/{digest[:2]}/{digest}/data.json"
    assert saved.size == object_path(store, saved.uri).stat().st_size
    loaded = store.load(saved.uri, saved.materializer, saved.type_name)
    assert loaded == {"acc": 0.9, "labels": ["a", "b"]}


def test_same_value_same_uri_different_value_different_uri(store: ArtifactStore) -> None:
    first = store.save({"a": 1, "b": 2}, "x")
    again = store.save({"b": 2, "a": 1}, "other-output-name")
    different = store.save({"a": 1, "b": 3}, "x")
    assert first == again
    assert different.uri != first.uri and different.content_hash != first.content_hash


def test_existing_object_is_never_rewritten(store: ArtifactStore) -> None:
    saved = store.save([1, 2, 3], "x")
    path = object_path(store, saved.uri)
    before = path.stat()
    time.sleep(0.01)
    assert store.save([1, 2, 3], "x") == saved
    assert store.put_bytes(b"[1,2,3]", "data.json").uri == saved.uri
    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # stored read-only
    assert oct(after.st_mode & 0o777) == oct(0o444)


def test_writes_leave_nothing_in_staging(store: ArtifactStore, tmp_path: Path) -> None:
    for i in range(3):
        store.save({"i": i}, "x")
    src = tmp_path / "f.txt"
    src.write_text("hello")
    store.put_file(src, "f.txt")
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_failed_save_leaves_no_object(store: ArtifactStore, tmp_path: Path) -> None:
    """A materializer dying mid-write (a crash, as far as the store knows) publishes nothing."""
    with pytest.raises(ArtifactError, match=r"cannot save output 'mixed'.*pandas"):
        store.save(pd.DataFrame({"a": [1, "x"]}, dtype=object), "mixed")
    assert not (tmp_path / "store" / "objects").exists()
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_crash_mid_write_leaves_only_staging(
    store: ArtifactStore, tmp_path: Path, registry: None
) -> None:
    class Half(Materializer):
        name = "half"
        types = (bytes,)

        def save(self, value: Any, path: str) -> None:
            Path(path).write_bytes(value[:2])
            raise KeyboardInterrupt  # not translated: a real interrupt must propagate

    register_materializer(Half, priority=500)
    with pytest.raises(KeyboardInterrupt):
        store.save(b"abcdef", "x")
    assert not (tmp_path / "store" / "objects").exists()


def test_put_bytes_read_bytes_get_file_exists(store: ArtifactStore, tmp_path: Path) -> None:
    stored = store.put_bytes(b"payload", "blob.bin")
    assert stored.size == 7 and store.exists(stored.uri)
    assert store.read_bytes(stored.uri) == b"payload"
    store.get_file(stored.uri, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == b"payload"
    src = tmp_path / "blob.bin"
    src.write_bytes(b"payload")
    assert store.put_file(src, "blob.bin") == stored
    missing = stored.uri.replace("blob.bin", "other.bin")
    assert not store.exists(missing)
    with pytest.raises(ArtifactError, match="not found"):
        store.read_bytes(missing)
    with pytest.raises(ArtifactError, match="not found"):
        store.load(missing, "bytes", "builtins.bytes")


def test_verify_detects_a_corrupted_object(store: ArtifactStore) -> None:
    saved = store.save({"weights": [0.1, 0.2]}, "model")
    assert store.verify(saved.uri, saved.content_hash)
    path = object_path(store, saved.uri)
    path.chmod(0o644)
    path.write_text('{"weights":[0.1,0.3]}')
    assert not store.verify(saved.uri, saved.content_hash)
    path.unlink()
    assert not store.verify(saved.uri, saved.content_hash)


@pytest.mark.parametrize(
    "uri",
    ["file:///etc/passwd", "s3://bucket/objects/x", "{root}/../outside", "{root}", "{root}/"],
)
def test_uris_outside_the_store_are_refused(store: ArtifactStore, uri: str) -> None:
    with pytest.raises(ArtifactError, match="is not in the artifact store"):
        store.read_bytes(uri.format(root=store.root_uri))


def test_bad_names_are_refused(store: ArtifactStore, tmp_path: Path) -> None:
    for filename in ("", "..", "a/b", "a\\b"):
        with pytest.raises(ArtifactError, match="invalid name"):
            store.put_bytes(b"x", filename)
    with pytest.raises(ArtifactError, match="invalid name"):
        store.put_log("run-1", "../escape", tmp_path / "nothing.log")


def test_logs_round_trip_and_a_retry_replaces_the_log(store: ArtifactStore, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("epoch 1 loss 0.5\n", encoding="utf-8")
    uri = store.put_log("run-42", "train", log)
    assert uri == f"{store.root_uri}/logs/run-42/train.log"
    assert store.read_text(uri) == "epoch 1 loss 0.5\n"
    log.write_bytes("retry ✓\n".encode() + b"\xff")
    assert store.put_log("run-42", "train", log) == uri
    assert store.read_text(uri) == "retry ✓\n\ufffd"


def test_saving_a_small_value_is_fast(store: ArtifactStore) -> None:
    """Pipelines run many tiny steps: one save must stay well under 5 ms."""
    store.save({"warm": True}, "x")
    n = 50
    start = time.perf_counter()
    for i in range(n):
        saved = store.save({"step": i, "metrics": {"acc": 0.5}}, "out")
    save_ms = (time.perf_counter() - start) * 1000 / n
    start = time.perf_counter()
    for _ in range(n):
        store.load(saved.uri, saved.materializer, saved.type_name)
    load_ms = (time.perf_counter() - start) * 1000 / n
    assert save_ms < 5 and load_ms < 5, (save_ms, load_ms)


# --- code archives --------------------------------------------------------------------------


def make_tree(root: Path, mtime: int) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "train.py").write_text("print('train')\n")
    (root / "pkg" / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "train.cpython-311.pyc").write_bytes(os.urandom(16))
    (root / "empty").mkdir()
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    (root / "link.py").symlink_to("pkg/train.py")
    for path in root.rglob("*"):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def no_pycache(rel: str) -> bool:
    return rel.rsplit("/", 1)[-1] == "__pycache__"


def test_put_tree_is_deterministic(store: ArtifactStore, tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one", mtime=1_000_000)
    two = make_tree(tmp_path / "two", mtime=2_000_000)
    (two / "pkg" / "sub" / "data.csv").chmod(0o600)  # a different umask must not matter
    first = store.put_tree(one, ignore=no_pycache)
    assert first.uri.endswith("/tree.tar.gz")
    assert store.put_tree(two, ignore=no_pycache).content_hash == first.content_hash
    assert store.put_tree(one).content_hash != first.content_hash  # the .pyc is in now

    (two / "pkg" / "train.py").write_text("print('changed')\n")
    assert store.put_tree(two, ignore=no_pycache).content_hash != first.content_hash


def test_extract_tree_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    tree = store.put_tree(make_tree(tmp_path / "src", mtime=1), ignore=no_pycache)
    dest = tmp_path / "dest"
    store.extract_tree(tree.uri, dest)
    assert (dest / "pkg" / "train.py").read_text() == "print('train')\n"
    assert (dest / "pkg" / "sub" / "data.csv").read_text() == "a,b\n1,2\n"
    assert (dest / "empty").is_dir() and not (dest / "pkg" / "__pycache__").exists()
    assert os.access(dest / "run.sh", os.X_OK)
    assert (dest / "link.py").is_symlink() and (dest / "link.py").read_text() == "print('train')\n"


def test_put_tree_refuses_a_symlink_leaving_the_tree(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "python").symlink_to("/usr/bin/python3")
    with pytest.raises(ArtifactError, match="points outside"):
        store.put_tree(src)
    assert store.put_tree(src, ignore=lambda rel: rel == "python").size > 0


def evil_archive(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../evil.txt"),
        tarfile.TarInfo("pkg/../../evil.txt"),
        tarfile.TarInfo("/tmp/evil.txt"),
        symlink("link", "../outside"),
        symlink("link", "/etc"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "relative-link", "absolute-link"],
)
def test_extract_refuses_members_escaping_dest(
    store: ArtifactStore, tmp_path: Path, member: tarfile.TarInfo
) -> None:
    data = b"" if member.issym() else b"evil"
    stored = store.put_bytes(evil_archive(member, data), "tree.tar.gz")
    dest = tmp_path / "work" / "dest"
    with pytest.raises(ArtifactError, match="refusing to extract"):
        store.extract_tree(stored.uri, dest)
    assert not (tmp_path / "work" / "evil.txt").exists()
    assert not (dest / "fine.txt").exists()  # checked before anything is written
