"""Local stack: `mlstack up` and `mlstack down` wall time against MLflow's own start-to-healthy.

Per repetition, back to back: start an MLflow tracking server by hand exactly as the local
stack starts it (own session, fresh SQLite file, MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false),
poll GET /health every 50 ms, then kill its process group; then `mlstack up` the local stack
in a fresh MLSTACK_HOME, `up` it again (a no-op), and `down` it.

Targets: `up` within 2 s of MLflow's own start-to-healthy; `down` under 3 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    LOCAL_SPEC,
    MLSTACK,
    PYTHON,
    CommandFailed,
    Row,
    Section,
    bench_env,
    best_effort,
    free_port,
    http_ok,
    kill_group,
    main,
    timed,
)

TITLE = "Local stack up/down"
REPS = 3
UP_OVER_MLFLOW_TARGET = 2.0
DOWN_TARGET = 3.0
START_TIMEOUT = 90.0
TRACKER_HEALTHY = re.compile(r"tracker: healthy ([\d.]+)s")


def mlflow_start_to_healthy() -> float:
    """Seconds from starting an MLflow server to its first healthy answer."""
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-mlflow-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "art").mkdir()
        port = free_port()
        argv = [
            str(PYTHON), "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
            "--artifacts-destination", (tmp / "art").as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        log_path = tmp / "mlflow.log"
        with open(log_path, "wb") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            while True:
                if http_ok(f"http://127.0.0.1:{port}/health"):
                    return time.perf_counter() - start
                elapsed = time.perf_counter() - start
                if proc.poll() is not None or elapsed > START_TIMEOUT:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                    why = f"exited {proc.returncode}" if proc.returncode is not None else "hung"
                    raise CommandFailed(f"MLflow server {why} after {elapsed:.1f}s:\n{tail}")
                time.sleep(0.05)
        finally:
            kill_group(proc)


def stack_cycle() -> tuple[float, float, float, float]:
    """(up, tracker healthy within up, second up, down) seconds, in a fresh MLSTACK_HOME."""
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as home:
        env = bench_env(Path(home))
        down_done = False
        try:
            up = timed([MLSTACK, "up", LOCAL_SPEC], env=env, timeout=START_TIMEOUT)
            tracker = TRACKER_HEALTHY.search(up.output)
            if not tracker:
                raise CommandFailed(f"`mlstack up` did not report tracker healthy:\n{up.output}")
            again = timed([MLSTACK, "up", LOCAL_SPEC], env=env, timeout=START_TIMEOUT)
            if "starting" in again.output or "unchanged" not in again.output:
                raise CommandFailed(f"the second `mlstack up` was not a no-op:\n{again.output}")
            down = timed([MLSTACK, "down", "local", "--yes"], env=env)
            down_done = True
        finally:
            if not down_done:
                best_effort([MLSTACK, "down", "local", "--yes"], env=env)
    return up.seconds, float(tracker[1]), again.seconds, down.seconds


def bench() -> Section:
    mlflow_start_to_healthy()  # warm-up, not recorded: page cache and .pyc files
    mlflow: list[float] = []
    ups: list[float] = []
    trackers: list[float] = []
    agains: list[float] = []
    downs: list[float] = []
    for _ in range(REPS):
        mlflow.append(mlflow_start_to_healthy())
        up, tracker, again, down = stack_cycle()
        ups.append(up)
        trackers.append(tracker)
        agains.append(again)
        downs.append(down)
        print(f"mlflow {mlflow[-1]:.2f}s  up {up:.2f}s  up again {again:.2f}s  down {down:.2f}s")
    over = [u - m for u, m in zip(ups, mlflow, strict=True)]
    return Section(
        title=TITLE,
        intro=(
            f"{REPS} repetitions after one unrecorded warm-up start of MLflow. Each repetition"
            " first starts an MLflow tracking server by hand the way the local stack does"
            " (`python -m mlflow server` on a fresh SQLite file, `--workers 1`,"
            " `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`, own session; GET `/health` polled"
            " every 50 ms; then its process group is killed), then runs `mlstack up"
            f" {LOCAL_SPEC}` in a fresh `MLSTACK_HOME`, the same `up` again (a no-op), and"
            " `mlstack down local --yes`. The difference row is taken per repetition. The row"
            " inside `up` is the tracker's start-to-healthy as `up` reports it: there MLflow"
            " starts in parallel with the stack's other daemons."
        ),
        rows=[
            Row("`mlstack up` (new local stack)", ups),
            Row("MLflow server start-to-healthy (by hand)", mlflow),
            Row("`mlstack up` - MLflow start-to-healthy", over, target=UP_OVER_MLFLOW_TARGET),
            Row("MLflow start-to-healthy inside `up` (its progress line, 0.1 s steps)", trackers),
            Row("second `mlstack up` (no-op)", agains),
            Row("`mlstack down`", downs, target=DOWN_TARGET),
        ],
    )


if __name__ == "__main__":
    sys.exit(main(bench))
