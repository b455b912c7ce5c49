"""Byte ranges of step logs, read by the metadata server from the stack's artifact store.

The store is named by one setting, ``$MLSTACK_METADATA_ARTIFACT_ROOT``: the artifact store's
root URI (``file:///abs/folder``, ``s3://bucket/prefix``) or a plain folder path. Only logs
under ``<root>/logs/`` (where :meth:`runner.artifacts.ArtifactStore.log_uri` puts them) are
read: a URI anywhere else, with a ``.``/``..`` segment, or in another bucket is
:class:`LogNotFound`, as is a log that does not exist (yet).

S3 is reached with the server's own AWS environment (on ECS its task role) through s3fs,
imported only when an s3:// root is used; ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``,
points it at another endpoint (MinIO, moto). A store that refuses or does not answer is
:class:`StoreUnavailable`, never an unhandled error.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore

ROOT_ENV = "MLSTACK_METADATA_ARTIFACT_ROOT"
SCHEMES = ("file", "s3")
# The dashboard polls every 2 s: an unreachable endpoint should be told in seconds, not minutes.
_S3_CONFIG = {"connect_timeout": 5, "read_timeout": 15, "retries": {"max_attempts": 2}}
_DENIED_HINT = {
    True: "the metadata server's user needs read access to",
    False: "the metadata server's AWS identity needs s3:GetObject and s3:ListBucket on",
}


class LogNotFound(Exception):
    """No log the server may read at that URI (the message says why)."""


class StoreUnavailable(Exception):
    """The artifact store refused the read or did not answer (the message says which)."""


@dataclass(frozen=True)
class LogRange:
    """Bytes ``offset``..``offset + len(data)`` of a log whose current length is ``size``."""

    data: bytes
    offset: int
    size: int


def artifact_root(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured artifact root as a URI (None when unset); ValueError if malformed."""
    raw = (os.environ if environ is None else environ).get(ROOT_ENV, "").strip()
    if not raw:
        return None
    if "://" not in raw:
        if not os.path.isabs(raw):
            raise ValueError(f"{ROOT_ENV}={raw!r} is not an absolute folder or a URI")
        return Path(raw).as_uri()
    scheme, rest = raw.split("://", 1)
    if scheme not in SCHEMES or not rest.strip("/"):
        raise ValueError(f"{ROOT_ENV}={raw!r}: expected file:///abs/folder or s3://bucket[/prefix]")
    return raw.rstrip("/")


def read_log(log_uri: str | None, offset: int, limit: int) -> LogRange:
    """Up to ``limit`` bytes of the log at ``log_uri`` from byte ``offset``, and its size."""
    if not log_uri:
        raise LogNotFound("the step has no log yet")
    try:
        root = artifact_root()
    except ValueError as err:
        raise StoreUnavailable(f"the metadata server is misconfigured: {err}") from None
    if root is None:
        raise LogNotFound(
            f"the metadata server cannot read step logs ({ROOT_ENV} is not set); use `mlstack logs`"
        )
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    store = _open(root, endpoint or None)
    path = _path_under_logs(store, log_uri)
    try:
        return _read(store, path, offset, limit)
    except FileNotFoundError:
        raise LogNotFound("the step's log is not in the artifact store (yet)") from None
    except PermissionError:
        raise StoreUnavailable(
            f"the artifact store refused to read {log_uri} (access denied);"
            f" {_DENIED_HINT[store.local]} {store.root_uri}/logs/"
        ) from None
    except Exception as err:
        if not _is_store_error(err):
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StoreUnavailable(
            f"the artifact store at {store.root_uri} cannot be read now: {reason}"
        ) from None


def _read(store: ArtifactStore, path: str, offset: int, limit: int) -> LogRange:
    fs = store.fs
    fs.invalidate_cache(path)  # a growing log: never answer from a cached listing
    info = fs.info(path)
    if info.get("type") != "file":
        raise FileNotFoundError(path)  # a folder (or an S3 prefix) is no log
    size = int(info["size"])
    start = min(offset, size)
    end = min(start + limit, size)
    data = b""
    if end > start:
        try:
            data = bytes(fs.cat_file(path, start=start, end=end))
        except OSError as err:
            if err.errno != errno.EINVAL:  # S3's InvalidRange: it shrank since (replaced)
                raise
    return LogRange(data=data, offset=start, size=size)


def _path_under_logs(store: ArtifactStore, log_uri: str) -> str:
    """The store path of ``log_uri``, which must name a file under ``<root>/logs/``."""
    from runner.errors import ArtifactError

    prefix = f"{store.root_uri}/logs/"
    rest = log_uri[len(prefix) :] if log_uri.startswith(prefix) else ""
    parts = rest.split("/")
    if not rest or any(part in ("", ".", "..") for part in parts):
        raise LogNotFound("the step's log is outside the artifact store's logs")
    try:
        path = store.path_of(log_uri)
    except ArtifactError:
        raise LogNotFound("the step's log is outside the artifact store's logs") from None
    if store.local:
        # A symlink inside the folder must not lead out of it.
        base = Path(store.root_uri.removeprefix("file://"), "logs").resolve()
        if not Path(path).resolve().is_relative_to(base):
            raise LogNotFound("the step's log is outside the artifact store's logs")
    return path


@functools.lru_cache(maxsize=8)
def _open(root: str, endpoint: str | None) -> ArtifactStore:
    """The store at ``root``, one per root and endpoint for every request thread: building
    an S3 client costs tens of milliseconds (fsspec's own cache keeps one per thread)."""
    from runner.artifacts import ArtifactStore
    from runner.errors import ArtifactError

    options: dict[str, Any] | None = None
    if root.startswith("s3://"):
        client = {"endpoint_url": endpoint} if endpoint else {}
        options = {"client_kwargs": client, "config_kwargs": _S3_CONFIG}
    try:
        return ArtifactStore(root, options)
    except ArtifactError as err:
        raise StoreUnavailable(f"the metadata server cannot open {root}: {err}") from None


def _is_store_error(err: Exception) -> bool:
    """Whether ``err`` is the store (or the network to it) failing, not a bug of ours."""
    if isinstance(err, OSError | TimeoutError):
        return True
    module = type(err).__module__.split(".")[0]
    return module in ("botocore", "aiobotocore", "aiohttp", "s3fs")
