"""CLI start: `mlstack --help` as a fresh process against `python -c 'import click'`.

Target: `mlstack --help` under 1.5x the time of importing click, in the same run. Also shows
`mlstack status` with no stacks and `python -c pass`, for reference. Each repetition runs the
commands back to back (interleaved), after one unrecorded warm-up of each.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchlib import MLSTACK, PYTHON, CommandFailed, Row, Section, bench_env, main, timed

TITLE = "CLI start"
REPS = 25
RATIO_TARGET = 1.5


def bench() -> Section:
    commands = {
        "pass": [PYTHON, "-c", "pass"],
        "click": [PYTHON, "-c", "import click"],
        "help": [MLSTACK, "--help"],
        "status": [MLSTACK, "status"],
    }
    samples: dict[str, list[float]] = {key: [] for key in commands}
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as home:
        env = bench_env(Path(home))
        for argv in commands.values():  # warm-up: page cache and .pyc files
            timed(argv, env=env)
        for _ in range(REPS):
            for key, argv in commands.items():
                result = timed(argv, env=env)
                if key == "status" and "no stacks" not in result.output:
                    raise CommandFailed(
                        f"`mlstack status` did not say 'no stacks':\n{result.output}"
                    )
                samples[key].append(result.seconds)
    ratios = [h / c for h, c in zip(samples["help"], samples["click"], strict=True)]
    return Section(
        title=TITLE,
        intro=(
            f"Each command as a fresh process from the venv (`.venv/bin/mlstack`,"
            f" `.venv/bin/python`), wall time, {REPS} repetitions interleaved after one"
            " unrecorded warm-up of each. The ratio is taken per repetition (`mlstack --help`"
            " over the `import click` run just before it)."
        ),
        rows=[
            Row("`mlstack --help`", samples["help"], "ms"),
            Row("`python -c 'import click'`", samples["click"], "ms"),
            Row("`mlstack --help` / `import click`", ratios, "x", RATIO_TARGET),
            Row("`mlstack status` (no stacks)", samples["status"], "ms"),
            Row("`python -c pass`", samples["pass"], "ms"),
        ],
    )


if __name__ == "__main__":
    sys.exit(main(bench))
