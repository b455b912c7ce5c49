"""Pipelines for the AWS Batch tests: a step that fails once, a step over its timeout, steps
stopped mid-step, a step that prints a lot."""

from __future__ import annotations

import sys
import time

from runner import pipeline, step
from runner.context import current


@step(retries=1, cache=False)
def flaky(tag: str = "x") -> str:
    """Fails on its first attempt: a marker in the artifact store says it ran before."""
    from runner.artifact_stores import open_store

    store = open_store(current().outputs)
    marker = f"{store.root_uri}/markers/{current().step_id}-{tag}"
    path = marker.removeprefix("s3://")
    if not store.fs.exists(path):
        store.fs.pipe_file(path, b"attempt 1")
        print("first attempt: failing on purpose", flush=True)
        raise RuntimeError("flaky: first attempt fails")
    print("second attempt: succeeding", flush=True)
    return f"ok-{tag}"


@pipeline
def retried(tag: str = "x") -> None:
    flaky(tag)


@step(timeout="4s", cache=False)
def overrun(seconds: float = 120.0) -> float:
    print("sleeping past my timeout", flush=True)
    time.sleep(seconds)
    return seconds


@pipeline
def too_slow(seconds: float = 120.0) -> None:
    overrun(seconds)


@step(cache=False)
def linger(seconds: float = 300.0) -> float:
    print("lingering", flush=True)
    time.sleep(seconds)
    return seconds


@pipeline
def lingering(seconds: float = 300.0) -> None:
    linger(seconds)


@step(timeout="60s", cache=False)
def overrun_long(seconds: float = 300.0) -> float:
    print("sleeping past a timeout Batch enforces itself", flush=True)
    time.sleep(seconds)
    return seconds


@pipeline
def too_slow_for_batch(seconds: float = 300.0) -> None:
    overrun_long(seconds)


def _print_then_sleep(label: str, lines: int, seconds: float) -> float:
    for n in range(lines):
        print(f"{label}: line {n} before the stop", flush=True)
    time.sleep(seconds)
    return seconds


@step(cache=False)
def sigtermed(lines: int = 3, seconds: float = 300.0) -> float:
    return _print_then_sleep("sigtermed", lines, seconds)


@step(cache=False)
def terminated(lines: int = 3, seconds: float = 300.0) -> float:
    return _print_then_sleep("terminated", lines, seconds)


@pipeline
def stopped_midway(lines: int = 3, seconds: float = 300.0) -> None:
    """Two steps that print, then sleep until their jobs are stopped from outside."""
    sigtermed(lines, seconds)
    terminated(lines, seconds)


@step(cache=False)
def chatty(lines: int = 300) -> int:
    """Many lines on stdout and stderr, the last one without its newline."""
    for n in range(lines):
        stream = sys.stderr if n % 3 == 0 else sys.stdout
        print(f"chatty {'err' if stream is sys.stderr else 'out'} line {n}", file=stream)
    sys.stdout.write("chatty: the end, no newline")
    sys.stdout.flush()
    return lines


@pipeline
def talkative(lines: int = 300) -> None:
    chatty(lines)
