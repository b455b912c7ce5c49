"""The driver's per-step retries and timeouts, for orchestrators that do not do them natively.

An attempt that runs longer than ``step.timeout`` is killed through the launcher (its
process group, or its container) and fails with "timed out after 30m"; a timed-out attempt
is not retried (AWS Batch does the same). A failed attempt is launched again under the same
step record while ``step.retries`` allows; each attempt writes its own log
(``ArtifactStore.log_uri(run, step, attempt)``), which starts with a header naming the
attempt and why the last one failed; ``mlstack logs`` shows them in order. An orchestrator
whose :class:`Prepared` says ``native_retries`` / ``native_timeouts`` does that part itself
and the driver leaves it be.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.step_options import format_duration

if TYPE_CHECKING:
    from runner.sdk import Step
    from runner.worker import Finished


class Attempts:
    """Launches attempts, enforces their deadlines, and decides whether to retry."""

    def __init__(self, launcher: Any, *, native_retries: bool, native_timeouts: bool) -> None:
        self.launcher = launcher
        self.native_retries = native_retries
        self.native_timeouts = native_timeouts
        self.count: dict[str, int] = {}  # invocation name -> attempts started
        self._deadlines: dict[str, tuple[float, float]] = {}  # step id -> (deadline, timeout)
        self._timed_out: dict[str, float] = {}  # step id -> the timeout it went over
        try:
            params = inspect.signature(launcher.launch).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        self._pass_step = "step" in params

    def launch(self, name: str, step_id: str, step: Step, log: Path, result: Path) -> None:
        """Start one attempt of invocation ``name`` (its first, or a retry)."""
        self.count[name] = self.count.get(name, 0) + 1
        if step.timeout is not None and not self.native_timeouts:
            self._deadlines[step_id] = (time.monotonic() + step.timeout, step.timeout)
        extra = {"step": step} if self._pass_step else {}
        self.launcher.launch(step_id, log, result, **extra)

    def wait(self, running: set[str] | dict[str, Any]) -> Finished:
        """The next attempt to finish, killing any of ``running`` that passes its deadline."""
        while True:
            for stale in set(self._deadlines) - set(running):
                del self._deadlines[stale]
            if not self._deadlines:
                return self.launcher.wait()
            remaining = min(d for d, _ in self._deadlines.values()) - time.monotonic()
            if remaining > 0:
                finished = self.launcher.wait(timeout=remaining)
                if finished is not None:
                    self._deadlines.pop(finished.step_id, None)
                    return finished
            now = time.monotonic()
            for step_id, (deadline, timeout) in list(self._deadlines.items()):
                if deadline <= now:
                    del self._deadlines[step_id]
                    self._timed_out[step_id] = timeout
                    self.launcher.kill(step_id)

    def timeout_error(self, step_id: str) -> str | None:
        """ "timed out after 30m" when the attempt that just ended was killed for its timeout."""
        timeout = self._timed_out.pop(step_id, None)
        if timeout is None and self.native_timeouts and hasattr(self.launcher, "timed_out"):
            timeout = self.launcher.timed_out(step_id)  # the orchestrator stopped it
        return None if timeout is None else f"timed out after {format_duration(timeout)}"

    def retry_due(self, name: str, step: Step, timed_out: bool) -> bool:
        """Whether the driver launches invocation ``name`` again after a failed attempt."""
        if self.native_retries or timed_out:
            return False
        return self.count.get(name, 1) <= step.retries

    def attempts_of(self, name: str) -> int:
        return self.count.get(name, 0)


def start_retry_log(log: Path, attempt: int, of: int, previous_error: str) -> None:
    """Start attempt ``attempt``'s own log with why the last one failed and which this is."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n===== mlstack: attempt {attempt - 1} failed: {previous_error} =====\n")
        out.write(f"===== mlstack: attempt {attempt} of {of} =====\n")
