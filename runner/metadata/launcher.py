"""Start a metadata server as a child process: for tests, benchmarks and local tooling.

Stack engines supervise their own daemon; this is the small in-process equivalent:
``with start_server(url, token) as server: MetadataClient(server.url, token)``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from runner.errors import MetadataError
from runner.metadata import TOKEN_ENV
from stacks.common.process import (
    Daemon,
    DaemonFailed,
    free_port,
    log_tail,
    spawn,
    stop,
    wait_healthy,
)

__all__ = ["ServerProcess", "free_port", "start_server"]


@dataclass
class ServerProcess:
    """A running metadata server daemon; ``stop()`` (or ``with``) ends it."""

    url: str
    daemon: Daemon
    argv: list[str]
    log_path: Path
    _owns_log: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL)."""
        stop(self.daemon.pid, self.daemon.create_time, grace=timeout)
        if self._owns_log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote."""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_server(
    database_url: str,
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: Path | None = None,
    wait: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Run ``python -m runner.metadata.server`` and return once ``/health`` answers.

    The token travels in the child's environment, never on its command line; ``env`` adds
    more (e.g. ``MLSTACK_METADATA_ARTIFACT_ROOT``) to the environment it inherits.
    """
    port = port or free_port()
    owns_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="mlstack-metadata-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    argv = [
        sys.executable, "-m", "runner.metadata.server", "--database-url", database_url,
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    daemon = spawn(argv, log=log_path, cwd=Path.cwd(), env={**(env or {}), TOKEN_ENV: token})
    server = ServerProcess(f"http://{host}:{port}", daemon, argv, log_path, owns_log)
    try:
        wait_healthy("metadata server", daemon, f"{server.url}/health", log_path, wait)
    except DaemonFailed as exc:
        server.stop()
        lines = exc.headline.splitlines()
        raise MetadataError(lines[0], hint=lines[-1]) from None
    return server
