"""Offline plan: `mlstack plan examples/stacks/aws.yaml` as a whole process (target < 5 s).

The plan runs the AWS stack program under Pulumi's mocks: no Pulumi CLI, no credentials.
5 repetitions after one unrecorded warm-up; the Kubernetes example and `--json` are shown for
reference. Prints the section and writes it into docs/benchmarks.md under its own heading
(every other byte of the file is kept); `--no-write` only prints.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import (
    DOC,
    MLSTACK,
    CommandFailed,
    Row,
    Section,
    bench_env,
    machine,
    split_sections,
    timed,
    update_doc,
)

TITLE = "Offline plan (AWS stack)"
REPS = 5
TARGET = 5.0
AWS = "examples/stacks/aws.yaml"
K8S = "examples/stacks/kubernetes.yaml"


def bench() -> Section:
    commands = {
        "aws": [MLSTACK, "plan", AWS],
        "aws-json": [MLSTACK, "plan", AWS, "--json"],
        "k8s": [MLSTACK, "plan", K8S],
    }
    samples: dict[str, list[float]] = {key: [] for key in commands}
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as home:
        env = bench_env(Path(home))
        for argv in commands.values():  # warm-up: page cache and .pyc files
            timed(argv, env=env)
        for _ in range(REPS):
            for key, argv in commands.items():
                result = timed(argv, env=env)
                if key != "aws-json" and "to create." not in result.output:
                    raise CommandFailed(f"`mlstack plan` printed no plan:\n{result.output}")
                samples[key].append(result.seconds)
    return Section(
        title=TITLE,
        intro=(
            f"`mlstack plan` of the example stacks as a fresh process (`.venv/bin/mlstack`),"
            f" wall time, {REPS} repetitions interleaved after one unrecorded warm-up. The plan"
            " runs the stack program under Pulumi's own mocks (no Pulumi CLI, no credentials):"
            " 48 AWS resources, 24 Kubernetes objects."
        ),
        rows=[
            Row(f"`mlstack plan {AWS}`", samples["aws"], "s", TARGET),
            Row(f"`mlstack plan {AWS} --json`", samples["aws-json"], "s"),
            Row(f"`mlstack plan {K8S}`", samples["k8s"], "s"),
        ],
    )


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; keep the doc")
    args = parser.parse_args()
    with open("/proc/loadavg") as fh:
        load = " / ".join(fh.read().split()[:3])
    try:
        section = bench()
    except CommandFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    mem = next(ln for ln in _out(["free", "-g"]).splitlines() if ln.startswith("Mem:"))
    section.machine = (
        f"{machine()}; `free -g`: {mem.split()[1]} GiB total;"
        f" load average {load} (1/5/15 min) at the start"
    )
    section.date = _out(["date", "-u"])
    text = section.markdown()
    print(text)
    for row in section.missed():
        print(f"MISSED: {row.what}: median {row.fmt(row.median)}, {row.target_text()}")
    if not args.no_write:
        preamble = ""
        if DOC.exists():
            preamble, _ = split_sections(DOC.read_text(encoding="utf-8"))
        update_doc(preamble or "# Benchmarks\n", {TITLE: text})
        print(f"wrote section {TITLE!r} of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
