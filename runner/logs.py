"""Step logs: kept in the artifact store while the step runs, followed live.

Where attempt ``n`` of a step's log lives is one function, ``ArtifactStore.log_uri(run,
step, n)``. Every step's stdout and stderr go to a file descriptor opened outside the step's
process, so what it printed survives however it ends (an exception, SIGKILL, a timeout, a
cancelled run):

- on a file:// store the step appends straight to that file (the docker orchestrator
  mounts the store at the same path): nothing to flush, nothing to lose;
- elsewhere (s3://) the step appends to a local file that a :class:`LogPump` mirrors to
  the store every ``MIRROR_SECONDS``, when the step ends and when the run stops.

The pump also hands new lines to whoever shows them live (``mlstack run --logs``), and
:func:`follow` streams a log from the store until its step ends (``mlstack logs --follow``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.artifacts import ArtifactStore

MIRROR_SECONDS = 1.0  # a remote store's copy of a running step's log is at most this old
TICK_SECONDS = 0.25  # how often live lines are read
FOLLOW_POLL_SECONDS = 0.5
TERMINAL = ("completed", "failed", "cancelled", "skipped", "cached")
_REPLACED: list[object] = []


def unbuffered_stdio() -> None:
    """Make this process's stdout/stderr write through to their descriptors (as ``python
    -u``), so a SIGKILL loses nothing already printed; child processes inherit it."""
    import io
    import sys

    os.environ["PYTHONUNBUFFERED"] = "1"
    for name, fd in (("stdout", 1), ("stderr", 2)):
        with contextlib.suppress(OSError, ValueError):
            raw = io.FileIO(fd, "w", closefd=False)
            # Kept, never closed: a forked child's old stream may hold its parent's unflushed
            # bytes, which must not land in the step's log when it is collected.
            old = getattr(sys, name)
            _REPLACED.append(old)
            encoding = getattr(old, "encoding", None) or "utf-8"
            stream = io.TextIOWrapper(
                raw, encoding=encoding, errors="backslashreplace", write_through=True
            )
            setattr(sys, name, stream)


@dataclass
class _Watched:
    name: str
    path: Path
    uri: str | None  # set when the pump mirrors ``path`` to the store (not file://)
    read: int = 0  # bytes handed out as live lines
    partial: bytes = b""
    mirrored: int = -1  # file size at the last mirror
    mirrored_at: float = 0.0


class LogPump:
    """Mirrors running steps' local log files to a remote store and reports new lines.

    ``on_lines(step_name, lines)`` (optional) receives each complete new line. Nothing runs
    in the background unless there is something to mirror or someone to show lines to.
    """

    def __init__(
        self,
        store: ArtifactStore,
        on_lines: Callable[[str, list[str]], None] | None = None,
        mirror_seconds: float = MIRROR_SECONDS,
    ) -> None:
        self.store = store
        self.on_lines = on_lines
        self.mirror_seconds = mirror_seconds
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path_for(self, uri: str, scratch: Path) -> Path:
        """The file a step attempt writes to: the store's own file on file://, else
        ``scratch`` (mirrored to ``uri`` by this pump)."""
        return self.store.local_log_path(uri) or scratch

    def watch(self, key: str, name: str, path: Path, uri: str) -> None:
        """Follow ``path`` (a step attempt's log, see ``path_for``) until ``done(key)``."""
        remote = None if self.store.local_log_path(uri) == path else uri
        if remote is None and self.on_lines is None:
            return
        with self._lock:
            self._watched[key] = _Watched(name, path, remote)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlstack-logs", daemon=True)
            self._thread.start()

    def done(self, key: str) -> None:
        """The attempt ended: its last lines out, its final copy in the store."""
        with self._lock:
            watched = self._watched.pop(key, None)
            if watched is not None:
                self._pump(watched, final=True)

    def close(self) -> None:
        """Flush every watched log (the run is stopping: cancelled, failed or done)."""
        self._stop.set()
        with self._lock:
            for watched in self._watched.values():
                self._pump(watched, final=True)
            self._watched.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                for watched in self._watched.values():
                    self._pump(watched, final=False)

    def _pump(self, w: _Watched, final: bool) -> None:
        try:
            size = w.path.stat().st_size
        except OSError:
            return
        if self.on_lines is not None and (size > w.read or (final and w.partial)):
            with open(w.path, "rb") as fh:
                fh.seek(w.read)
                data = w.partial + fh.read(size - w.read)
            w.read = size
            *lines, w.partial = data.split(b"\n")
            if final and w.partial:
                lines, w.partial = [*lines, w.partial], b""
            if lines:
                with contextlib.suppress(Exception):  # a display error never stops a run
                    self.on_lines(w.name, [ln.decode("utf-8", "replace") for ln in lines])
        due = final or time.monotonic() - w.mirrored_at >= self.mirror_seconds
        if w.uri is not None and due and size != w.mirrored:
            from runner.errors import RunnerError

            with contextlib.suppress(RunnerError, OSError):  # retried at the next tick
                self.store.write_log(w.uri, w.path)
                w.mirrored, w.mirrored_at = size, time.monotonic()


def follow(
    store: ArtifactStore,
    uri_of: Callable[[], tuple[str | None, str]],
    poll: float = FOLLOW_POLL_SECONDS,
    settle: float = 2 * MIRROR_SECONDS,
) -> Iterator[str]:
    """New text of a step's log as it grows, until its step ends.

    ``uri_of()`` returns the step's current ``(log_uri, status)``; a retry moves ``log_uri``
    to the next attempt's log, which is followed from its start. After the step ends the log
    is read once more after ``settle`` seconds (a remote store's last copy lands after the
    status).
    """
    uri, offset, ended_at = None, 0, None
    while True:
        current, status = uri_of()
        if current != uri:
            uri, offset = current, 0
        if uri is not None:
            data = store.read_log(uri, offset)
            if data:
                cut = whole_chars(data)
                offset += cut
                yield data[:cut].decode("utf-8", errors="replace")
        if status in TERMINAL:
            if ended_at is not None and time.monotonic() - ended_at >= settle:
                return
            ended_at = ended_at or time.monotonic()
            time.sleep(min(poll, settle))
            continue
        time.sleep(poll)


def whole_chars(data: bytes) -> int:
    """The length of ``data`` up to its last complete UTF-8 character (a chunk never splits one)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # ASCII or a lead byte
            need = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if need <= back else len(data) - back
    return len(data)
