"""Terminal rendering for the CLI: rich tables and live progress. Imported only by commands."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

STYLES = {
    "healthy": "green",
    "ready": "green",
    "unchanged": "dim",
    "starting": "yellow",
    "stopping": "yellow",
    "waiting": "dim",
    "stopped": "cyan",
    "failed": "bold red",
    "unhealthy": "red",
    "missing": "red",
    "up": "green",
    "destroyed": "dim",
    "creating": "yellow",
    "destroying": "yellow",
    "degraded": "red",
    "create": "green",
    "start": "green",
    "restart": "yellow",
    "delete": "red",
}


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def styled(word: str) -> str:
    style = STYLES.get(word)
    return f"[{style}]{word}[/]" if style else word


def iso_utc(when: datetime) -> str:
    """The one timestamp format of every JSON output: ISO 8601 in UTC, ``Z`` suffix."""
    if when.tzinfo is None:  # the metadata server stores UTC without a zone
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


_ISO = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def _normalize(data: Any) -> Any:
    if isinstance(data, datetime):
        return iso_utc(data)
    if isinstance(data, str) and _ISO.match(data):
        return iso_utc(datetime.fromisoformat(data.replace("Z", "+00:00")))
    if isinstance(data, dict):
        return {k: _normalize(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_normalize(v) for v in data]
    return data


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout; every timestamp in it becomes ISO 8601 UTC."""
    sys.stdout.write(json.dumps(_normalize(data), indent=2, sort_keys=True, default=str) + "\n")


def age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return human_seconds(seconds)


def human_seconds(seconds: float) -> str:
    if seconds < 0:
        return "expired"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{(seconds % 86400) // 3600:.0f}h"


def ttl_left(expires_at: datetime | None) -> str:
    if expires_at is None:
        return "none"
    return human_seconds((expires_at - datetime.now(UTC)).total_seconds())


class LiveProgress:
    """Progress sink: one row per service (state, detail, elapsed time).

    On a terminal it is a live table; otherwise (CI logs, pipes) one line per change. Nothing
    is drawn until the first update, so an early error prints alone.

    ``logs`` shows running items' output lines (``lines``): True always (off a terminal, each
    line as ``item | line``), None on a terminal while one item runs at a time (its last
    ``TAIL`` lines under its row), False never.
    """

    TAIL = 8

    def __init__(self, title: str, logs: bool | None = False) -> None:
        self.title = title
        self.rows: dict[str, tuple[str, str, float, float | None]] = {}
        self.console = console(stderr=True)
        self.live: Live | None = None
        self.logs = logs
        self.tails: dict[str, deque[str]] = {}
        self._lock = threading.RLock()  # lines arrive from the runner's log thread

    @property
    def wants_lines(self) -> bool:
        """Whether the runner should hand this display its steps' output lines."""
        return self.logs is True or (self.logs is None and self.console.is_terminal)

    def lines(self, item: str, lines: list[str]) -> None:
        """New output lines of a running ``item``."""
        with self._lock:
            if not self.console.is_terminal:
                if self.logs:
                    for line in lines:
                        self.console.print(f"{item} | {line}", markup=False)
                return
            self.tails.setdefault(item, deque(maxlen=self.TAIL)).extend(lines)
            if self.live is not None:
                self.live.update(self._table())

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(None, None, None)

    def update(self, item: str, state: str, detail: str = "") -> None:
        with self._lock:
            self._update(item, state, detail)

    def _update(self, item: str, state: str, detail: str) -> None:
        started = self.rows.get(item, ("", "", time.monotonic(), None))[2]
        running = ("starting", "stopping", "restarting", "waiting", "running")
        if state in running[:3]:
            started = time.monotonic()
        finished = time.monotonic() if state not in running else None
        if state != "running":
            self.tails.pop(item, None)
        self.rows[item] = (state, detail, started, finished)
        if not self.console.is_terminal:
            elapsed = f" {finished - started:.1f}s" if finished is not None else ""
            self.console.print(f"{item}: {styled(state)}{elapsed} {detail}".rstrip())
            return
        if self.live is None:
            self.live = Live(console=self.console, refresh_per_second=8)
            self.live.__enter__()
        self.live.update(self._table())

    def _table(self) -> Table:
        table = Table(title=self.title, title_justify="left", box=None, pad_edge=False)
        for col in ("service", "state", "time", "detail"):
            table.add_column(col)
        running = sum(1 for state, *_ in self.rows.values() if state == "running")
        for item, (state, detail, started, finished) in self.rows.items():
            elapsed = (finished or time.monotonic()) - started
            table.add_row(item, styled(state), f"{elapsed:.1f}s", detail)
            tail = self.tails.get(item) if self.logs or running == 1 else None
            for line in tail or ():
                table.add_row("", "", "", Text(f"│ {line}", style="dim", no_wrap=True))
        return table
