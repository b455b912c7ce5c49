"""The driver's heartbeat: how a run on a shared stack stays visible from other machines.

While a run is unfinished, its driver refreshes ``heartbeat_at`` on the metadata server
every ``heartbeat_seconds`` (``HEARTBEAT_SECONDS`` in runner/metadata/schemas.py), and reads
back whether someone asked it to cancel (``mlstack down --force`` from another machine):
then it cancels as on Ctrl-C. Each run records its driver's host (:func:`this_host`), so
``mlstack down`` knows whether to look for the driver's process here or to trust the
heartbeat (runner/active_runs.py).

Two environment variables, for tests and containers: ``MLSTACK_HOSTNAME`` names this host
instead of its hostname; ``MLSTACK_HEARTBEAT_SECONDS`` sets the interval.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from runner.errors import MetadataError
from stacks.common.errors import UsageError

if TYPE_CHECKING:
    from runner.metadata.client import MetadataClient

HOSTNAME_ENV = "MLSTACK_HOSTNAME"
INTERVAL_ENV = "MLSTACK_HEARTBEAT_SECONDS"


def this_host() -> str:
    """The name this host goes by in run records: ``$MLSTACK_HOSTNAME``, else its hostname."""
    return os.environ.get(HOSTNAME_ENV, "").strip()[:255] or socket.gethostname()


def interval() -> float:
    """Seconds between two heartbeats: ``$MLSTACK_HEARTBEAT_SECONDS``, else the default."""
    from runner.metadata.schemas import HEARTBEAT_SECONDS

    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return HEARTBEAT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 3600:
        raise UsageError(
            f"{INTERVAL_ENV}={raw!r} is not a number of seconds between 0.1 and 3600",
            f"unset it (default {HEARTBEAT_SECONDS:g}) or set e.g. {INTERVAL_ENV}=10",
        )
    return value


class Heartbeat:
    """A daemon thread beating for one run until :meth:`stop`; ``on_cancel`` runs once, on
    the first beat that finds a cancellation requested."""

    def __init__(
        self, client: MetadataClient, run_id: str, every: float, on_cancel: Callable[[], None]
    ) -> None:
        self.client, self.run_id, self.every, self.on_cancel = client, run_id, every, on_cancel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="mlstack-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (returns once no beat is in flight)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.client.timeout + 1)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                run = self.client.heartbeat(self.run_id)
            except MetadataError:
                continue  # a missed beat; the staleness window allows a few
            if run.cancel_requested_at is not None and not self._stop.is_set():
                self._stop.set()
                self.on_cancel()
