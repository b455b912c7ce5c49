"""Code travels without the image: archives that honour .gitignore, and git references."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore
from runner.code import (
    ArchiveCode,
    CodeError,
    GitCode,
    code_ref_from_dict,
    materialize_code,
    package_code,
)
from runner.sdk import PipelineSource


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(f"file://{tmp_path / 'store'}")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def write_tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "flow.py").write_text("VALUE = 1\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "helpers.py").write_text("def h():\n    return 2\n")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "helpers.cpython-311.pyc").write_bytes(b"\0")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "big.so").write_bytes(b"\0" * 10)
    (root / "data").mkdir()
    (root / "data" / "huge.csv").write_text("a,b\n")
    (root / "notes.log").write_text("log\n")


def members(store: ArtifactStore, ref: ArchiveCode) -> set[str]:
    path = store._path(ref.uri)
    with tarfile.open(path, "r:gz") as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def source(root: Path) -> PipelineSource:
    return PipelineSource(module="flow", path=str(root / "flow.py"), root=str(root))


def test_archive_without_git_uses_the_default_ignore(tmp_path: Path, store: ArtifactStore) -> None:
    root = tmp_path / "code"
    write_tree(root)
    ref = package_code(source(root), store)
    assert isinstance(ref, ArchiveCode) and ref.why == "not in a git repository"
    assert members(store, ref) == {
        "flow.py", "pkg/__init__.py", "pkg/helpers.py", "data/huge.csv", "notes.log",
    }  # fmt: skip
    # Content-addressed: the same tree gives the same archive and hash.
    assert package_code(source(root), store) == ref
    (root / "flow.py").write_text("VALUE = 2\n")
    assert package_code(source(root), store).content_hash != ref.content_hash


def test_archive_in_a_git_tree_honours_gitignore(tmp_path: Path, store: ArtifactStore) -> None:
    repo = tmp_path / "repo"
    root = repo / "pipelines"
    write_tree(root)
    (repo / ".gitignore").write_text("data/\n*.log\n")
    (repo / "outside.py").write_text("")
    git(repo, "init", "-q")
    git(repo, "add", "pipelines/flow.py")
    git(repo, "commit", "-qm", "one")
    (root / "untracked.py").write_text("X = 1\n")  # not ignored: it travels
    ref = package_code(source(root), store)
    assert isinstance(ref, ArchiveCode)
    assert ref.why == "the git tree has uncommitted or untracked changes"
    assert members(store, ref) == {
        "flow.py", "pkg/__init__.py", "pkg/helpers.py", "untracked.py",
    }  # fmt: skip


def test_materialize_archive_once(tmp_path: Path, store: ArtifactStore) -> None:
    root = tmp_path / "code"
    write_tree(root)
    ref = package_code(source(root), store)
    dest = tmp_path / "dest"
    folder = materialize_code(ref.as_dict(), store, dest)
    assert folder == str(dest / ref.content_hash)
    assert (Path(folder) / "pkg" / "helpers.py").read_text() == "def h():\n    return 2\n"
    (Path(folder) / "marker").write_text("kept")
    assert materialize_code(ref, store, dest) == folder
    assert (Path(folder) / "marker").exists()  # not extracted again
    assert not [p for p in dest.iterdir() if p.name.startswith(".tmp-")]
    script = f"import sys; sys.path.insert(0, {folder!r}); import pkg.helpers as h; print(h.h())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.strip() == "2"


def test_materialize_refuses_a_tampered_archive(tmp_path: Path, store: ArtifactStore) -> None:
    root = tmp_path / "code"
    write_tree(root)
    ref = package_code(source(root), store)
    assert isinstance(ref, ArchiveCode)
    path = Path(store._path(ref.uri))
    path.chmod(0o644)
    path.write_bytes(b"not the archive")
    with pytest.raises(CodeError, match="missing or does not match its hash"):
        materialize_code(ref, store, tmp_path / "dest")


# --- git references -------------------------------------------------------------------------


@pytest.fixture
def pushed_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A work tree with a clean, pushed commit and a bare remote reached by file:// URL."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    repo = tmp_path / "work"
    root = repo / "pipelines"
    root.mkdir(parents=True)
    (root / "flow.py").write_text("VALUE = 'from git'\n")
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    git(repo, "remote", "add", "origin", remote.as_uri())
    git(repo, "push", "-q", "-u", "origin", "main")
    return repo, remote


def test_clean_pushed_tree_is_a_git_reference(
    pushed_repo: tuple[Path, Path], store: ArtifactStore, tmp_path: Path
) -> None:
    repo, remote = pushed_repo
    commit = git(repo, "rev-parse", "HEAD")
    ref = package_code(source(repo / "pipelines"), store)
    assert ref == GitCode(remote.as_uri(), commit, "pipelines")
    assert ref.as_dict() == {
        "kind": "git", "url": remote.as_uri(), "commit": commit, "subdir": "pipelines",
    }  # fmt: skip
    assert not (tmp_path / "store").exists()  # nothing was archived
    folder = materialize_code(ref.as_dict(), store, tmp_path / "dest")
    assert folder == str(tmp_path / "dest" / f"git-{commit}" / "pipelines")
    assert (Path(folder) / "flow.py").read_text() == "VALUE = 'from git'\n"
    assert materialize_code(ref, store, tmp_path / "dest") == folder


def test_git_reference_only_when_every_condition_holds(
    pushed_repo: tuple[Path, Path], store: ArtifactStore
) -> None:
    repo, remote = pushed_repo
    root = repo / "pipelines"
    (root / "flow.py").write_text("VALUE = 'edited'\n")
    dirty = package_code(source(root), store)
    assert isinstance(dirty, ArchiveCode) and "uncommitted" in dirty.why

    git(repo, "commit", "-qam", "two")  # committed, not pushed
    unpushed = package_code(source(root), store)
    assert isinstance(unpushed, ArchiveCode) and "is not pushed to remote 'origin'" in unpushed.why

    git(repo, "push", "-q")
    assert isinstance(package_code(source(root), store), GitCode)
    assert isinstance(package_code(source(root), store, use_git=False), ArchiveCode)

    git(repo, "remote", "set-url", "origin", (remote.parent / "gone.git").as_uri())
    gone = package_code(source(root), store)
    assert isinstance(gone, ArchiveCode) and "did not answer git ls-remote" in gone.why


def test_a_credential_in_the_remote_url_is_never_recorded(
    pushed_repo: tuple[Path, Path], store: ArtifactStore
) -> None:
    repo, _ = pushed_repo
    git(repo, "remote", "set-url", "origin", "https://user:s3cret@git.example.com/r.git")
    ref = package_code(source(repo / "pipelines"), store)
    assert isinstance(ref, ArchiveCode) and "credentials" in ref.why


def test_a_relative_path_remote_becomes_a_file_url(
    pushed_repo: tuple[Path, Path], store: ArtifactStore
) -> None:
    repo, remote = pushed_repo
    git(repo, "remote", "set-url", "origin", "../remote.git")
    ref = package_code(source(repo / "pipelines"), store)
    assert isinstance(ref, GitCode) and ref.url == remote.as_uri()


def test_git_checkout_failure_is_one_line(tmp_path: Path, store: ArtifactStore) -> None:
    ref = GitCode((tmp_path / "nowhere.git").as_uri(), "a" * 40)
    with pytest.raises(CodeError) as caught:
        materialize_code(ref, store, tmp_path / "dest")
    assert str(caught.value).startswith(f"cannot check out {ref.describe()}: ")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "dest" / f"git-{'a' * 40}").exists()


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "archive", "uri": "file:///x", "content_hash": "nothex"},
        {"kind": "git", "url": "file:///x", "commit": "abc"},
        {"kind": "git", "url": "file:///x", "commit": "a" * 40, "subdir": "../up"},
        {"kind": "zip"},
    ],
)
def test_bad_code_references_are_refused(data: dict[str, str]) -> None:
    with pytest.raises(CodeError):
        code_ref_from_dict(data)


def test_a_module_without_a_folder_cannot_be_packaged(store: ArtifactStore) -> None:
    with pytest.raises(CodeError, match="has no source folder"):
        package_code(PipelineSource(module="__main__", path=None, root=None), store)
