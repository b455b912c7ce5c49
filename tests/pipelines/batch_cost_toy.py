"""Two differently sized steps that print a line: Batch job hours in `cost`, `logs`."""

from __future__ import annotations

import time

from runner import pipeline, step


@step(resources={"cpu": 0.5, "memory_gib": 1}, cache=False)
def small(seconds: float = 2.0) -> float:
    print(f"small: sleeping {seconds} s", flush=True)
    time.sleep(seconds)
    return seconds


@step(resources={"cpu": 2, "memory_gib": 4}, cache=False)
def large(before: float, seconds: float = 2.0) -> float:
    print(f"large: sleeping {seconds} s after {before}", flush=True)
    time.sleep(seconds)
    return before + seconds


@pipeline
def sized(seconds: float = 2.0) -> None:
    large(small(seconds), seconds)
