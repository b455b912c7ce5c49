"""The artifact store: immutable, content-addressed objects on any fsspec filesystem.

Layout under the stack's artifact store URI (``file:///abs/path`` or ``s3://bucket/prefix``)::

    objects/{sha256[:2]}/{sha256}/{filename}   step outputs, code archives (never rewritten)
    logs/{run_id}/{step_name}.log              a step's log (its first attempt; a retry's
    logs/{run_id}/{step_name}.attempt-{n}.log  attempt n has its own: see ``log_uri``)
    tmp/                                       file:// only: writes in progress

An object's path is derived from the SHA-256 of its bytes, so writing an object that exists is
a no-op and the same value always has the same URI. On file:// every write goes to ``tmp/``
first and is then hard-linked (or renamed) into place, so a crash never leaves a half-written
file at a final path; on S3 a PUT is atomic by itself.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import materializers
from runner.errors import ArtifactError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object written to the store."""

    uri: str
    content_hash: str
    size: int


@dataclass(frozen=True, slots=True)
class SavedArtifact:
    """A value saved through a materializer: what the metadata server records."""

    uri: str
    content_hash: str
    size: int
    materializer: str
    type_name: str


class ArtifactStore:
    """Reads and writes artifacts, logs and code archives under one root URI.

    ``storage_options`` go to fsspec (e.g. ``{"client_kwargs": {"endpoint_url": ...}}`` for
    moto or MinIO); they never appear in ``repr``.
    """

    def __init__(
        self,
        root_uri: str,
        storage_options: dict[str, Any] | None = None,
        *,
        root_must_exist: bool = False,
    ) -> None:
        """``root_must_exist``: on file://, refuse to write once the root folder is gone (a
        stack's store, removed by ``mlstack down``) instead of creating it again."""
        from fsspec.core import url_to_fs

        try:
            fs, root = url_to_fs(root_uri.rstrip("/") or root_uri, **(storage_options or {}))
        except (ImportError, ValueError) as err:
            raise ArtifactError(
                f"cannot open the artifact store {root_uri!r}: {err}",
                "for s3:// install mlstack[aws] (s3fs); check the stack outputs",
            ) from err
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        self.fs: AbstractFileSystem = fs
        self.local = "file" in protocols
        self._root = root.rstrip("/")
        self.root_uri = f"file://{self._root}" if self.local else root_uri.rstrip("/")
        self._root_must_exist = root_must_exist

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root_uri!r})"

    # --- content-addressed objects -----------------------------------------------------------

    def put_file(self, local_path: str | os.PathLike[str], filename: str) -> StoredObject:
        """Store a local file as ``filename``; a no-op if those bytes are already stored."""
        if not self.local:
            return self._store(os.fspath(local_path), filename, *_hash_file(local_path))
        with self._staging(filename) as tmp:
            shutil.copyfile(local_path, tmp)
            return self._store(tmp, filename, *_hash_file(tmp))

    def put_bytes(self, data: bytes, filename: str) -> StoredObject:
        """Store ``data`` as ``filename``; a no-op if those bytes are already stored."""
        digest = hashlib.sha256(data).hexdigest()
        if self.local:
            with self._staging(filename) as tmp:
                Path(tmp).write_bytes(data)
                return self._store(tmp, filename, digest, len(data))
        uri = self._object_uri(digest, filename)
        with self._errors("write", uri):
            if not self.fs.exists(self._path(uri)):
                self.fs.pipe_file(self._path(uri), data)
        return StoredObject(uri, digest, len(data))

    def get_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        """Copy a stored file to ``local_path``."""
        with self._errors("read", uri):
            if self.local:
                shutil.copyfile(self._path(uri), local_path)
            else:
                self.fs.get_file(self._path(uri), os.fspath(local_path))

    def read_bytes(self, uri: str) -> bytes:
        """The bytes of a stored file."""
        with self._errors("read", uri):
            if self.local:
                return Path(self._path(uri)).read_bytes()
            return bytes(self.fs.cat_file(self._path(uri)))

    def exists(self, uri: str) -> bool:
        """Whether ``uri`` names a stored file."""
        path = self._path(uri)
        with self._errors("check", uri):
            return os.path.isfile(path) if self.local else bool(self.fs.exists(path))

    def verify(self, uri: str, content_hash: str) -> bool:
        """Re-hash the stored bytes; False if they differ from ``content_hash`` or are gone."""
        try:
            with self._errors("verify", uri), self._local_copy(uri) as path:
                return _hash_file(path)[0] == content_hash
        except ArtifactError:
            if self.exists(uri):
                raise
            return False

    # --- logs --------------------------------------------------------------------------------

    def log_uri(self, run_id: str, step_name: str, attempt: int = 1) -> str:
        """Where attempt ``attempt`` of a step's stdout/stderr is kept: the one place every
        orchestrator (local, docker, a remote one's in-container writer) derives it from."""
        suffix = "" if attempt <= 1 else f".attempt-{attempt}"
        return f"{self.root_uri}/logs/{_segment(run_id)}/{_segment(step_name)}{suffix}.log"

    def local_log_path(self, uri: str) -> Path | None:
        """The file a step appends to directly on a file:// store (created empty); None
        elsewhere (there a writer mirrors a local file with ``put_log``)."""
        if not self.local:
            return None
        path = Path(self._path(uri))
        with self._errors("write", uri):
            _private_dirs(str(path.parent))
            path.touch(mode=0o600, exist_ok=True)  # what a step prints is the user's
        return path

    def put_log(
        self,
        run_id: str,
        step_name: str,
        local_path: str | os.PathLike[str],
        attempt: int = 1,
    ) -> str:
        """Upload a local log file as attempt ``attempt`` of a step's log; returns its URI."""
        return self.write_log(self.log_uri(run_id, step_name, attempt), local_path)

    def write_log(self, uri: str, local_path: str | os.PathLike[str]) -> str:
        """Write a local log file to ``uri`` (from ``log_uri``), replacing what was there."""
        with self._errors("write", uri):
            if self.local:
                final = self._path(uri)
                if os.path.abspath(local_path) == final:
                    return uri  # the step wrote there directly
                self._check_root()
                _private_dirs(os.path.dirname(final))
                with self._staging("log") as tmp:
                    shutil.copyfile(local_path, tmp)
                    os.chmod(tmp, 0o600)  # a log may hold what a step printed: the user's
                    os.replace(tmp, final)
            else:
                self.fs.put_file(os.fspath(local_path), self._path(uri))
        return uri

    def read_log(self, uri: str, offset: int = 0) -> bytes:
        """A log's bytes from ``offset`` on (b"" when it does not exist yet)."""
        path = self._path(uri)
        with self._errors("read", uri):
            try:
                if self.local:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        return fh.read()
                return bytes(self.fs.cat_file(path, start=offset or None))
            except FileNotFoundError:
                return b""
            except OSError as err:
                if offset and err.errno == errno.EINVAL:  # S3: a range at the end (InvalidRange)
                    return b""
                raise

    def read_text(self, uri: str) -> str:
        """A stored text file (a log), decoded as UTF-8 with undecodable bytes replaced."""
        return self.read_bytes(uri).decode("utf-8", errors="replace")

    # --- code archives -----------------------------------------------------------------------

    def put_tree(
        self, directory: str | os.PathLike[str], ignore: Callable[[str], bool] | None = None
    ) -> StoredObject:
        """Store a source tree as a deterministic ``tree.tar.gz``: same files -> same hash.

        ``ignore`` gets each entry's POSIX path relative to ``directory`` (``"pkg/x.pyc"``) and
        returns True to leave it out; an ignored directory is left out with its contents.
        """
        src = Path(directory)
        if not src.is_dir():
            raise ArtifactError(f"cannot archive {src}: not a directory")
        with self._staging("tree.tar.gz") as tmp:
            _write_tree(src, tmp, ignore)
            return self._store(tmp, "tree.tar.gz", *_hash_file(tmp))

    def extract_tree(self, uri: str, dest: str | os.PathLike[str]) -> None:
        """Unpack an archive made by ``put_tree`` into ``dest``, refusing escaping members."""
        target = Path(dest).resolve()
        target.mkdir(parents=True, exist_ok=True)
        with (
            self._errors("read", uri),
            self._local_copy(uri) as path,
            tarfile.open(path, "r:gz") as tar,
        ):
            for member in tar.getmembers():
                _check_member(member, target)
            if not hasattr(tarfile, "data_filter"):
                # Python before 3.11.4 (e.g. Debian bookworm's, in step images) has no
                # extraction filters; every member was checked above.
                tar.extractall(target)
                return
            try:
                tar.extractall(target, filter="data")
            except tarfile.FilterError as err:
                raise ArtifactError(
                    f"refusing to extract {uri}: {err}", "the archive is not from put_tree"
                ) from err

    # --- values ------------------------------------------------------------------------------

    def save(self, value: Any, name: str, type_hint: Any = None) -> SavedArtifact:
        """Materialize ``value`` (output ``name`` of a step) and store it."""
        mat = materializers.materializer_for(value, type_hint)
        type_name = materializers.type_name_of(type(value))[:255]
        with self._staging(mat.filename) as tmp:
            try:
                mat.save(value, tmp)
            except ArtifactError:
                raise
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise ArtifactError(
                        f"cannot save output {name!r} ({type_name}) to {tmp}: {err}"
                    ) from err
                raise ArtifactError(
                    f"cannot save output {name!r}: no space left on the device holding"
                    f" {err.filename or tmp}",
                    "free some space there and run again",
                ) from err
            except Exception as err:
                raise ArtifactError(
                    f"cannot save output {name!r} ({type_name}) with materializer "
                    f"{mat.name!r}: {type(err).__name__}: {err}",
                    "register a materializer for this type with register_materializer",
                ) from err
            stored = self._store(tmp, mat.filename, *_hash_file(tmp))
        return SavedArtifact(stored.uri, stored.content_hash, stored.size, mat.name, type_name)

    def load(self, uri: str, materializer: str, type_name: str) -> Any:
        """Load a value saved by ``save``, given the materializer name and type it recorded."""
        mat = materializers.materializer_by_name(materializer)
        with self._errors("read", uri), self._local_copy(uri) as path:
            try:
                return mat.load(path, type_name)
            except (ArtifactError, FileNotFoundError):
                raise
            except Exception as err:
                raise ArtifactError(
                    f"cannot load {uri} with materializer {materializer!r}: "
                    f"{type(err).__name__}: {err}",
                    "was it saved with another version of the library?",
                ) from err

    # --- internals ---------------------------------------------------------------------------

    def _object_uri(self, digest: str, filename: str) -> str:
        return f"{self.root_uri}/objects/{digest[:2]}/{digest}/{_segment(filename)}"

    def path_of(self, uri: str) -> str:
        """The path of ``uri`` on :attr:`fs`; ArtifactError if it is not under the root (or
        has a ``..`` segment)."""
        return self._path(uri)

    def _path(self, uri: str) -> str:
        """The filesystem path of a URI under this store's root."""
        prefix = self.root_uri + "/"
        rest = uri[len(prefix) :] if uri.startswith(prefix) else None
        if not rest or ".." in rest.split("/"):
            raise ArtifactError(
                f"{uri!r} is not in the artifact store {self.root_uri}",
                "artifacts are read from the store of the stack that wrote them",
            )
        return f"{self._root}/{rest}"

    def _check_root(self) -> None:
        if self._root_must_exist and not os.path.isdir(self._root):
            raise ArtifactError(
                f"the artifact store folder {self._root} does not exist",
                "its stack was torn down (`mlstack down`); bring it up with `mlstack up`",
            )

    @contextmanager
    def _staging(self, filename: str) -> Iterator[str]:
        """A fresh temp file path (same filesystem as the objects on file://), removed after."""
        if self.local:
            self._check_root()
            folder = f"{self._root}/tmp"
            _private_dirs(folder)
        else:
            folder = tempfile.gettempdir()
        path = f"{folder}/{uuid.uuid4().hex}.{_segment(filename)}"
        try:
            yield path
        finally:
            with suppress(FileNotFoundError):
                os.unlink(path)

    def _store(self, tmp: str, filename: str, digest: str, size: int) -> StoredObject:
        """Put a file at its content address unless it is already there.

        On file:// ``tmp`` is a staged file, linked (or renamed) into place; else it is uploaded.
        """
        uri = self._object_uri(digest, filename)
        final = self._path(uri)
        with self._errors("write", uri):
            if not self.local:
                if not self.fs.exists(final):
                    self.fs.put_file(tmp, final)
            elif not os.path.exists(final):
                _private_dirs(os.path.dirname(final))
                os.chmod(tmp, 0o444)
                try:
                    os.link(tmp, final)  # fails if it exists: never overwrite
                except FileExistsError:
                    pass
                except OSError:  # no hard links on this filesystem
                    if not os.path.exists(final):
                        os.replace(tmp, final)
        return StoredObject(uri, digest, size)

    @contextmanager
    def _local_copy(self, uri: str) -> Iterator[str]:
        """A local path holding the object: the object itself on file://, else a download."""
        if self.local:
            path = self._path(uri)
            if not os.path.isfile(path):
                raise FileNotFoundError(path)
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="mlstack-artifact-") as folder:
            path = os.path.join(folder, uri.rsplit("/", 1)[-1])
            self.fs.get_file(self._path(uri), path)
            yield path

    @contextmanager
    def _errors(self, action: str, uri: str) -> Iterator[None]:
        """Translate filesystem errors into ArtifactError, the one place that does."""
        try:
            yield
        except FileNotFoundError as err:
            raise ArtifactError(
                f"cannot {action} {uri}: not found",
                "the artifact store may have been destroyed or the URI is stale",
            ) from err
        except PermissionError as err:
            raise ArtifactError(
                f"cannot {action} {uri}: permission denied", "check the store's credentials"
            ) from err
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ArtifactError(
                    f"cannot {action} {uri}: no space left on the device holding"
                    f" {err.filename or uri}",
                    "free some space there and run again",
                ) from err
            raise ArtifactError(f"cannot {action} {uri}: {err}") from err


def _segment(name: str) -> str:
    """One safe path segment (a file, run or step name)."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ArtifactError(f"invalid name {name!r} for the artifact store", "no '/' or '..'")
    return name


def _private_dirs(path: str) -> None:
    """``os.makedirs`` where every folder it creates is 0700 (a local store is the user's)."""
    missing = []
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        with suppress(FileExistsError):
            each.mkdir(mode=0o700)


def _hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return digest.hexdigest(), f.tell()


def _write_tree(src: Path, out: str, ignore: Callable[[str], bool] | None) -> None:
    """A tar.gz of ``src`` with sorted entries and no times, owners or umask in it."""
    entries: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(src):
        base = Path(folder)
        rel = base.relative_to(src).as_posix()
        prefix = "" if rel == "." else rel + "/"
        kept = [d for d in dirs if not (ignore and ignore(prefix + d))]
        dirs[:] = sorted(kept)
        entries += [(prefix + d, base / d) for d in dirs]
        entries += [(prefix + f, base / f) for f in files if not (ignore and ignore(prefix + f))]
    entries.sort()
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if path.is_symlink():
                link = os.readlink(path)
                if os.path.isabs(link) or not (path.parent / link).resolve().is_relative_to(
                    src.resolve()
                ):
                    raise ArtifactError(
                        f"cannot archive {path}: the symlink points outside {src}",
                        "leave it out with `ignore`",
                    )
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
                tar.addfile(info)
            elif path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif path.is_file():
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with open(path, "rb") as f:
                    info.size = os.fstat(f.fileno()).st_size
                    tar.addfile(info, f)


def _check_member(member: tarfile.TarInfo, target: Path) -> None:
    """Refuse absolute names, ``..`` and links pointing outside ``target``."""
    name = member.name
    where = Path(os.path.normpath(target / name))
    bad = name.startswith("/") or ".." in Path(name).parts or not where.is_relative_to(target)
    if member.issym() or member.islnk():
        link = member.linkname
        base = where.parent if member.issym() else target
        inside = Path(os.path.normpath(base / link)).is_relative_to(target)
        bad = bad or link.startswith("/") or not inside
    if bad or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise ArtifactError(
            f"refusing to extract archive member {name!r}: it would land outside {target}",
            "the archive is not from put_tree",
        )
