"""Pipelines for the AWS Batch tests: a step that fails once, a step over its timeout."""

from __future__ import annotations

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
