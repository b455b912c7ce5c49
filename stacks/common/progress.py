"""Progress reporting from long work (engines, runs, image builds) to whoever is watching."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives one line of news per item (a service or a cloud resource)."""

    def update(self, item: str, state: str, detail: str = "") -> None:
        """``state`` is one of: waiting, starting, healthy, stopping, stopped, unchanged, failed."""


class NullProgress:
    """Progress that goes nowhere (library use without a terminal)."""

    def update(self, item: str, state: str, detail: str = "") -> None:
        return None
