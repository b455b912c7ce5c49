"""What the benchmarks share: time whole commands, summarize, render, update docs/benchmarks.md.

Each ``bench_*.py`` script runs alone (prints its table, exits 1 when a command it times
fails, prints MISSED for a target it misses) and, with ``--json PATH``, also writes its result
for ``benchmarks/run.py``, which renders it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PYTHON = BIN / "python"
MLSTACK = BIN / "mlstack"
LOCAL_SPEC = "examples/stacks/local.yaml"
DOC = ROOT / "docs" / "benchmarks.md"

# Proxy-free: a health check of a local server must never go through an HTTP proxy.
_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CommandFailed(Exception):
    """A timed command failed (or said something other than expected): no numbers from it."""


@dataclass(frozen=True)
class Timed:
    seconds: float
    output: str


def bench_env(home: Path | str) -> dict[str, str]:
    """This process's environment without any MLSTACK_* setting, and MLSTACK_HOME=home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSTACK_")}
    env["MLSTACK_HOME"] = str(home)
    return env


def timed(argv: Sequence[object], *, env: Mapping[str, str], timeout: float = 120.0) -> Timed:
    """Run ``argv`` as a fresh process from the repo root; its wall time and stdout+stderr."""
    args = [str(a) for a in argv]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            args,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"`{shlex.join(args)}` did not finish in {timeout:.0f}s") from exc
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise CommandFailed(f"`{shlex.join(args)}` exited {proc.returncode}:\n{tail}")
    return Timed(seconds, output)


def best_effort(argv: Sequence[object], *, env: Mapping[str, str], timeout: float = 60.0) -> None:
    """Run a clean-up command; report but never raise if it fails."""
    try:
        timed(argv, env=env, timeout=timeout)
    except CommandFailed as exc:
        print(f"clean-up: {exc}", file=sys.stderr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _LOCAL_HTTP.open(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop the process group led by ``proc``: SIGTERM, wait for all of it, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if _group_gone(proc, grace):
            break
    proc.wait(timeout=grace)


def _group_gone(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader: a zombie leader keeps the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# --- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One measured quantity: its samples (seconds, or a plain ratio for unit "x")."""

    what: str
    samples: list[float]
    unit: str = "s"  # how to print: "s", "ms" or "x"
    target: float | None = None  # passes when the median is below it

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.median < self.target

    def fmt(self, value: float) -> str:
        if self.unit == "ms":
            return f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"
        if self.unit == "x":
            return f"{value:.2f}x"
        return f"{value:.2f} s"

    def target_text(self) -> str:
        return "" if self.target is None else f"< {self.fmt(self.target)}"

    def verdict(self) -> str:
        return {None: "reference", True: "pass", False: "**MISSED**"}[self.passed]


@dataclass
class Section:
    """One benchmark's result: a section of docs/benchmarks.md."""

    title: str
    intro: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    machine: str = ""
    date: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Section:
        data = json.loads(text)
        data["rows"] = [Row(**row) for row in data["rows"]]
        return cls(**data)

    def missed(self) -> list[Row]:
        return [row for row in self.rows if row.passed is False]

    def markdown(self) -> str:
        lines = [
            f"## {self.title}",
            "",
            self.intro,
            "",
            f"Machine: {self.machine}. Measured {self.date}.",
            "",
            "| what | median | min | max | target | result |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.what} | {row.fmt(row.median)} | {row.fmt(min(row.samples))}"
                f" | {row.fmt(max(row.samples))} | {row.target_text()} | {row.verdict()} |"
            )
        if self.notes:
            lines.append("")
            lines.extend(self.notes)
        return "\n".join(lines) + "\n"


def _first_line(argv: Sequence[object]) -> str:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def machine() -> str:
    """nproc, total memory, CPU model and the venv's Python version, as one line."""
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = "unknown CPU"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = " ".join(line.split(":", 1)[1].split())
                break
    python = _first_line([PYTHON, "-c", "import platform; print(platform.python_version())"])
    return (
        f"{_first_line(['nproc'])} CPUs (`nproc`), {mem_kib / 2**20:.1f} GiB RAM, {model},"
        f" Python {python}"
    )


def _load_average() -> str:
    with open("/proc/loadavg") as fh:
        return " / ".join(fh.read().split()[:3])


def main(bench: Callable[[], Section]) -> int:
    """Run one benchmark as a script: print the table, MISSED lines, optionally write JSON."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "")[:200])
    parser.add_argument("--json", type=Path, help="also write the result here (for run.py)")
    args = parser.parse_args()
    load = _load_average()
    try:
        section = bench()
    except CommandFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    section.machine = f"{machine()}; load average {load} (1/5/15 min) at the start"
    section.date = _first_line(["date", "-u"])
    print(section.markdown())
    for row in section.missed():
        print(f"MISSED: {row.what}: median {row.fmt(row.median)}, {row.target_text()}")
    if args.json:
        args.json.write_text(section.to_json())
    return 0


# --- docs/benchmarks.md ----------------------------------------------------------------------


def split_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The text before the first ``## `` heading, then (title, exact text) per section."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((line[3:].strip(), [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return "".join(preamble), [(title, "".join(body)) for title, body in sections]


def update_doc(preamble: str, owned: Mapping[str, str | None], path: Path = DOC) -> None:
    """Rewrite ``path``'s preamble and the sections in ``owned``; keep every other byte.

    ``owned`` maps a title to its new text, or to None to leave that section as it is (a
    benchmark that failed this time). Sections not there yet are appended at the end.
    """
    text = ""
    if path.exists():  # read right before writing; newline="" keeps line endings as they are
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    _, sections = split_sections(text)
    pieces = [(preamble, True)]  # (text, ours)
    for title, body in sections:
        new = owned.get(title)
        pieces.append((body, False) if new is None else (new, True))
    seen = {title for title, _ in sections}
    pieces += [(body, True) for title, body in owned.items() if body and title not in seen]
    out, last_ours = "", True
    for piece, ours in pieces:
        # A blank line between sections, added only next to a section of ours.
        if out and (ours or last_ours) and not out.endswith("\n\n"):
            out += "\n" if out.endswith("\n") else "\n\n"
        out += piece
        last_ours = ours
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(out)
    os.replace(tmp, path)
