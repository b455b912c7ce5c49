"""`mlstack run`'s live progress with step output (--logs): under the running step's row on a
terminal, one prefixed line each elsewhere."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from provisioner.render import LiveProgress


def rendered(progress: LiveProgress) -> str:
    out = Console(file=io.StringIO(), width=120, force_terminal=False)
    out.print(progress._table())
    return str(out.file.getvalue())  # type: ignore[attr-defined]


def terminal(progress: LiveProgress) -> LiveProgress:
    progress.console = Console(file=io.StringIO(), force_terminal=True, width=120)
    return progress


def test_on_a_terminal_the_running_steps_last_lines_show_under_its_row() -> None:
    progress = terminal(LiveProgress("run", logs=None))
    assert progress.wants_lines
    with progress:
        progress.update("train", "running")
        progress.lines("train", [f"epoch {n}" for n in range(20)])
        table = rendered(progress)
        assert "epoch 19" in table and f"epoch {19 - LiveProgress.TAIL}" not in table
        progress.update("train", "completed")
        assert "epoch 19" not in rendered(progress)  # a finished step's lines go away


def test_by_default_lines_show_only_while_one_step_runs() -> None:
    progress = terminal(LiveProgress("run", logs=None))
    with progress:
        progress.update("a", "running")
        progress.update("b", "running")
        progress.lines("a", ["from a"])
        assert "from a" not in rendered(progress)
        progress.update("b", "completed")
        assert "from a" in rendered(progress)


def test_off_a_terminal_logs_prints_each_line_prefixed(capsys: pytest.CaptureFixture[str]) -> None:
    progress = LiveProgress("run", logs=True)
    progress.update("train", "running")
    progress.lines("train", ["loss [0.5]"])  # brackets are text, not markup
    assert "train | loss [0.5]" in capsys.readouterr().err
    quiet = LiveProgress("run", logs=None)
    assert not quiet.wants_lines  # not a terminal and not asked for
    quiet.lines("train", ["hidden"])
    assert "hidden" not in capsys.readouterr().err
    assert not terminal(LiveProgress("run", logs=False)).wants_lines
