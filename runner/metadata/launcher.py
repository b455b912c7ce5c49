"""Start a metadata server as a child process: for tests, benchmarks and local tooling.

Stack engines supervise their own daemon; this is the small in-process equivalent:
``with start_server(url, token) as server: MetadataClient(server.url, token)``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from runner.errors import MetadataError
from runner.metadata import TOKEN_ENV
from runner.metadata.client import MetadataClient


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A running metadata server child process; ``stop()`` (or ``with``) ends it."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _owns_log: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._owns_log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote to stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

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
) -> ServerProcess:
    """Run ``python -m runner.metadata.server`` and return once ``/health`` answers.

    The token travels in the child's environment, never on its command line.
    """
    port = port or free_port(host)
    owns_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="mlstack-metadata-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    command = [
        sys.executable,
        "-m",
        "runner.metadata.server",
        "--database-url",
        database_url,
        "--host",
        host,
        "--port",
        str(port),
    ]
    env = {**os.environ, TOKEN_ENV: token}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    server = ServerProcess(f"http://{host}:{port}", process, log_path, owns_log)
    deadline = time.monotonic() + wait
    with MetadataClient(server.url, token, timeout=2.0) as probe:
        while not probe.health():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = server.log_tail()
                server.stop()
                why = f"exited with {process.returncode}" if process.poll() is not None else ""
                raise MetadataError(
                    f"metadata server on port {port} did not start {why}".strip(),
                    hint=tail.strip().splitlines()[-1] if tail.strip() else None,
                )
            time.sleep(0.05)
    return server
