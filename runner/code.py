"""Code travels without rebuilding the image: a content-addressed archive, or a git commit.

``package_code`` turns the pipeline's source root into a :data:`CodeRef`. By default that is
the tree (minus .gitignore'd files) archived into the artifact store, addressed by its hash.
When the root sits in a git repository whose tree is clean, at a commit its remote has, and
the remote answers ``git ls-remote`` within a few seconds, it is the remote URL + commit
instead (the stack's "code repository"). ``materialize_code`` is the other end, used by the
step entrypoint in a container: it unpacks (or clones) the code once and returns the folder
to put on ``sys.path``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore
    from runner.sdk import PipelineSource

DEFAULT_IGNORE = (".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache")
_HASH = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


class CodeError(RunnerError):
    """The pipeline's code could not be packaged or brought back."""


@dataclass(frozen=True)
class ArchiveCode:
    """The source root as a ``tree.tar.gz`` in the artifact store."""

    uri: str
    content_hash: str
    why: str = field(default="", compare=False)  # why not a git reference (not serialised)
    kind: Literal["archive"] = "archive"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "uri": self.uri, "content_hash": self.content_hash}

    def describe(self) -> str:
        return f"archive:{self.content_hash[:12]}"


@dataclass(frozen=True)
class GitCode:
    """A commit of a git remote; ``subdir`` is the source root inside the repository."""

    url: str
    commit: str
    subdir: str = ""
    kind: Literal["git"] = "git"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "url": self.url, "commit": self.commit, "subdir": self.subdir}

    def describe(self) -> str:
        return f"git:{self.url}@{self.commit[:12]}" + (f"#{self.subdir}" if self.subdir else "")


CodeRef = ArchiveCode | GitCode


def code_ref_from_dict(data: Mapping[str, Any]) -> CodeRef:
    """Parse ``CodeRef.as_dict()`` (as stored in a step's spec), checking every field."""
    kind = data.get("kind")
    if kind == "archive" and _HASH.fullmatch(str(data.get("content_hash", ""))):
        return ArchiveCode(str(data["uri"]), str(data["content_hash"]))
    if kind == "git" and _COMMIT.fullmatch(str(data.get("commit", ""))) and data.get("url"):
        subdir = str(data.get("subdir") or "")
        if subdir.startswith("/") or ".." in Path(subdir).parts:
            raise CodeError(f"code reference has a bad subdir {subdir!r}")
        return GitCode(str(data["url"]), str(data["commit"]), subdir)
    raise CodeError(f"not a code reference: {dict(data)!r}", "expected kind archive or git")


# --- packaging ------------------------------------------------------------------------------


def package_code(
    source: PipelineSource, store: ArtifactStore, *, use_git: bool = True, timeout: float = 5.0
) -> CodeRef:
    """The reference the steps use to get ``source``'s code: a git commit or an archive."""
    if not source.root:
        raise CodeError(
            f"pipeline module {source.module!r} has no source folder to package",
            "define the pipeline in a .py file",
        )
    root = Path(source.root).resolve()
    why = "git references are turned off"
    if use_git:
        ref, why = _git_ref(root, timeout)
        if ref is not None:
            return ref
    stored = store.put_tree(root, ignore_for(root))
    return ArchiveCode(stored.uri, stored.content_hash, why)


def default_ignored(rel: str) -> bool:
    """Left out of every archive: VCS data, virtualenvs, caches, bytecode."""
    parts = rel.split("/")
    return any(p in DEFAULT_IGNORE for p in parts) or parts[-1].endswith(".pyc")


def ignore_for(root: Path) -> Callable[[str], bool]:
    """The ``put_tree`` filter of ``root``: .gitignore'd files too when it is in a git tree."""
    listed = _git(root, "ls-files", "-co", "--exclude-standard", "-z")
    if listed is None:
        return default_ignored
    kept = {p for p in listed.split("\0") if p}
    if not kept:  # the whole folder is .gitignore'd (a scratch folder): keep it anyway
        return default_ignored
    parents = {"/".join(p.split("/")[:i]) for p in kept for i in range(1, p.count("/") + 1)}
    gitlinks = tuple(p + "/" for p in kept if (root / p).is_dir())  # submodules: keep all

    def ignore(rel: str) -> bool:
        if default_ignored(rel):
            return True
        return not (rel in kept or rel in parents or rel.startswith(gitlinks))

    return ignore


def _git(cwd: Path, *args: str, timeout: float = 30.0) -> str | None:
    """``git args`` in ``cwd``: its stdout, or None when git fails or is missing."""
    env = dict(
        os.environ,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
        GIT_SSH_COMMAND=(f"ssh -o BatchMode=yes -o ConnectTimeout={max(1, int(timeout))}"),
    )
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_ref(root: Path, timeout: float) -> tuple[GitCode | None, str]:
    """A GitCode for ``root`` when every condition holds, else None and the reason why not."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None:
        return None, "not in a git repository"
    if _git(root, "status", "--porcelain", "--", ".") != "":
        return None, "the git tree has uncommitted or untracked changes"
    commit = (_git(root, "rev-parse", "HEAD") or "").strip()
    if not _COMMIT.fullmatch(commit):
        return None, "the git repository has no commit"
    upstream = _git(root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}") or ""
    remotes = (_git(root, "remote") or "").split()
    preferred = [upstream.split("/", 1)[0], "origin", *remotes]
    remote = next((r for r in preferred if r in remotes), None)
    if remote is None:
        return None, "the git repository has no remote"
    url = _portable_url((_git(root, "remote", "get-url", remote) or "").strip(), Path(top.strip()))
    if url is None:
        return None, f"remote {remote!r} has credentials in its URL or none at all"
    heads = _git(root, "ls-remote", url, timeout=timeout)
    if heads is None:
        return None, f"remote {remote!r} did not answer git ls-remote within {timeout:g} s"
    on_remote = commit in heads.split() or bool(
        _git(root, "for-each-ref", "--contains", commit, f"refs/remotes/{remote}")
    )
    if not on_remote:
        return None, f"commit {commit[:12]} is not pushed to remote {remote!r}"
    subdir = root.relative_to(Path(top.strip()).resolve()).as_posix()
    return GitCode(url, commit, "" if subdir == "." else subdir), ""


def _portable_url(url: str, top: Path) -> str | None:
    """The remote URL usable from elsewhere; None when empty or carrying a credential."""
    if not url:
        return None
    if "://" in url:
        parts = urlsplit(url)
        web = parts.scheme in ("http", "https")
        if (web and parts.username) or parts.password:
            return None  # a token in the URL would be recorded on the run
        return url
    if re.match(r"^[\w.-]+@[\w.-]+:", url) or re.match(r"^[\w.-]+:(?!/)", url):
        return url  # scp-like ssh: git@host:org/repo.git
    return (top / url).resolve().as_uri()  # a local path, relative to the repository


# --- materializing --------------------------------------------------------------------------


def materialize_code(
    ref: CodeRef | Mapping[str, Any], store: ArtifactStore, dest_root: str | os.PathLike[str]
) -> str:
    """Bring the code of ``ref`` into ``dest_root`` once; return the folder for ``sys.path``."""
    code = ref if isinstance(ref, ArchiveCode | GitCode) else code_ref_from_dict(ref)
    root = Path(dest_root)
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(code, ArchiveCode):
        final = root / code.content_hash
        if not final.is_dir():
            if not store.verify(code.uri, code.content_hash):
                raise CodeError(
                    f"code archive {code.uri} is missing or does not match its hash",
                    "run the pipeline again to re-upload its code",
                )
            with _staged(root, final) as tmp:
                store.extract_tree(code.uri, tmp)
        return str(final)
    final = root / f"git-{code.commit}"
    if not final.is_dir():
        if shutil.which("git") is None:
            raise CodeError(
                f"git is not installed here, so {code.describe()} cannot be checked out",
                "use a base image with git (`mlstack base-image build`)",
            )
        with _staged(root, final) as tmp:
            _clone(code, tmp)
    folder = final / code.subdir if code.subdir else final
    return str(folder)


def _clone(code: GitCode, dest: Path) -> None:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    for args in (
        ["git", "clone", "--quiet", "--no-checkout", code.url, str(dest)],
        ["git", "-C", str(dest), "checkout", "--quiet", "--detach", code.commit],
    ):
        done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CodeError(
                f"cannot check out {code.describe()}: {last[:200]}",
                "is the commit pushed and the remote reachable from here?",
            )


class _staged:
    """A temp folder next to ``final``, renamed into place on success (first writer wins)."""

    def __init__(self, root: Path, final: Path) -> None:
        self.root, self.final = root, final

    def __enter__(self) -> Path:
        self.tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            with suppress(OSError):  # another process put the same code there first
                os.rename(self.tmp, self.final)
        shutil.rmtree(self.tmp, ignore_errors=True)
