"""Small pipelines the runner tests use (imported by file path, like a user's pipeline)."""

from __future__ import annotations

import os
import time

from runner import get_secret, pipeline, step


@step
def numbers(n: int = 5) -> list:
    print(f"making {n} numbers")
    return list(range(n))


@step
def total(values: list) -> int:
    return sum(values)


@step
def double(values: list) -> list:
    return [v * 2 for v in values]


@step(outputs=("smallest", "largest"))
def bounds(values: list) -> tuple[int, int]:
    return min(values), max(values)


@step
def report(total_value: int, doubled: list, smallest: int, largest: int) -> dict:
    return {"total": total_value, "doubled": doubled, "range": [smallest, largest]}


@pipeline
def fan(n: int = 5) -> None:
    values = numbers(n)
    small, large = bounds(values)
    report(total(values), double(values), small, large)


@step
def explode(values: list) -> int:
    print("about to fail", flush=True)
    raise ValueError(f"cannot handle {len(values)} values")


@pipeline
def failing() -> None:
    values = numbers()
    report(explode(values), double(values), 0, 1)


@step(cache=False)
def slow(values: list, seconds: float = 60.0) -> int:
    with open(os.environ["MLSTACK_TEST_MARKER"], "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)
    return len(values)


@pipeline
def sleepy(seconds: float = 60.0) -> None:
    total(double(numbers()))
    slow(numbers(), seconds=seconds)


@step
def use_secret(name: str = "db") -> dict:
    value = get_secret(name)
    return {"length": len(value), "starts": value[:2]}


@pipeline
def secretive() -> None:
    use_secret()


@step
def noop(previous: int = 0) -> int:
    return previous + 1


@pipeline
def one_step() -> None:
    noop()


@pipeline
def chain(length: int = 20) -> None:
    value = noop()
    for _ in range(length - 1):
        value = noop(value)


@step(cache=False)
def pause(values: list, seconds: float = 1.0) -> list:
    time.sleep(seconds)
    return values


@step
def join(left: list, right: list) -> int:
    return len(left) + len(right)


@pipeline
def diamond(seconds: float = 1.0) -> None:
    values = numbers(3)
    join(pause(values, seconds), pause(values, seconds))


@pipeline
def sleepy_then(seconds: float = 60.0) -> None:
    """A slow step with a step after it (left pending when the run is cancelled)."""
    noop(slow(numbers(), seconds=seconds))


@step(cache=False)
def stubborn(values: list, seconds: float = 300.0) -> int:
    """Ignores SIGTERM and starts a child of its own: only a group SIGKILL stops both."""
    import signal
    import subprocess

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", str(seconds)])
    with open(os.environ["MLSTACK_TEST_MARKER"], "w") as fh:
        fh.write(f"{os.getpid()} {child.pid}")
    time.sleep(seconds)
    return len(values)


@pipeline
def stubborn_run(seconds: float = 300.0) -> None:
    stubborn(numbers(), seconds=seconds)
