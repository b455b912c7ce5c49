"""The provisioner's exception tree.

Foreign errors (Pulumi, boto3, OS) are translated into these in exactly one place per
engine; the CLI prints ``str(err)`` as one line and exits with ``exit_code``.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path


class MlstackError(Exception):
    """Base of every error mlstack raises on purpose: a headline plus an optional hint."""

    exit_code = 1

    def __init__(self, headline: str, hint: str | None = None) -> None:
        super().__init__(headline)
        self.headline = headline
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.headline} ({self.hint})" if self.hint else self.headline


class SpecError(MlstackError):
    """The stack spec file is missing, unreadable or invalid."""

    exit_code = 2


class UsageError(MlstackError):
    """The command was given something it cannot act on (unknown stack, bad argument)."""

    exit_code = 2


class StateError(MlstackError):
    """The state registry is unreadable or corrupted."""


class StackLocked(MlstackError):
    """Another mlstack process is changing the same stack."""


class ServiceFailed(MlstackError):
    """A local service did not start or did not become healthy."""


class EngineError(MlstackError):
    """An engine failed to converge or destroy a stack."""


class SecretsError(MlstackError):
    """The secrets backend refused an operation or a secret is missing."""


class DiskFull(MlstackError):
    """A write failed because the device holding a file is full; the headline names it."""


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a full-disk ``OSError`` while writing ``path`` into one line naming the file."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFull(
            f"no space left on the device holding {exc.filename or path}",
            "free some space there and run the command again",
        ) from None
