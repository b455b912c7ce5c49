"""Run every benchmark and rewrite the sections of docs/benchmarks.md that they own.

`make bench` calls this. Each benchmark runs as its own process; a benchmark whose timed
command fails leaves its old section as it was and makes this script exit 1. Sections this
script does not own (e.g. "Offline plan (AWS stack)") are kept byte for byte.
`benchmarks/bench_plan_aws.py`, when present, is run too (it keeps its own section).
`run.py bench_cli_start.py ...` runs only the named scripts; the other sections stay as they are.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DOC, ROOT, Section, update_doc

HERE = Path(__file__).resolve().parent
OWNED = {  # script -> the title of the section it owns
    "bench_cli_start.py": "CLI start",
    "bench_local_stack.py": "Local stack up/down",
    "bench_runs.py": "Pipeline runs",
    "bench_metadata.py": "Metadata server writes",
    "bench_dashboard.py": "Dashboard at scale",
}
OTHERS = ["bench_plan_aws.py"]  # run when present; they keep their own sections
SCRIPT_TIMEOUT = 300.0

PREAMBLE = """\
# Benchmarks

How to reproduce: `make bench` (it runs `.venv/bin/python benchmarks/run.py`, about four
minutes). That runs each `benchmarks/bench_*.py` script and rewrites the sections below that
they own; each script also runs alone, e.g. `.venv/bin/python benchmarks/bench_runs.py`.

How: every command is a fresh process started from the repository root with `MLSTACK_HOME`
set to a new temporary folder, timed by wall clock (`time.perf_counter` around
`subprocess.run`). Tables show the median over the repetitions with min and max; a target
passes when the median is under it. Rows that compare two commands (a ratio, a difference)
are computed per repetition from commands run back to back, then summarized. A script exits
non-zero when a command it times fails, and prints MISSED for a target it misses. The
machine line of each section gives the load average when it started: these machines are
shared, and a busy machine widens the min-max spread.
"""


def run_script(script: str, json_out: Path | None) -> bool:
    argv = [sys.executable, str(HERE / script)]
    if json_out is not None:
        argv += ["--json", str(json_out)]
    print(f"=== {script}", flush=True)
    start = time.perf_counter()
    try:
        code = subprocess.run(argv, cwd=ROOT, timeout=SCRIPT_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        print(f"FAILED: {script} took over {SCRIPT_TIMEOUT:.0f}s", file=sys.stderr)
        return False
    print(f"=== {script}: exit {code} in {time.perf_counter() - start:.0f}s\n", flush=True)
    return code == 0


def main(only: list[str]) -> int:
    unknown = [name for name in only if name not in OWNED and name not in OTHERS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}: one of {', '.join([*OWNED, *OTHERS])}")
        return 2
    sections: dict[str, str | None] = dict.fromkeys(OWNED.values())
    failed: list[str] = []
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-results-") as tmp:
        for script, title in OWNED.items():
            if only and script not in only:
                continue
            json_out = Path(tmp) / f"{script}.json"
            if not run_script(script, json_out):
                failed.append(script)
                continue
            section = Section.from_json(json_out.read_text())
            assert section.title == title, (section.title, title)
            sections[title] = section.markdown()
            missed += [f"{title}: {row.what} (median {row.fmt(row.median)})" for row in
                       section.missed()]  # fmt: skip
    for script in OTHERS:
        if only and script not in only:
            continue
        if (HERE / script).exists() and not run_script(script, None):
            failed.append(script)
    update_doc(PREAMBLE, sections)
    print(f"updated {DOC.relative_to(ROOT)}: {', '.join(t for t, s in sections.items() if s)}")
    for line in missed:
        print(f"MISSED: {line}")
    for script in failed:
        print(f"FAILED: {script} (its section, if any, left as it was)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
