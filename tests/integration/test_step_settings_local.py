"""@step retries, timeout and resources on the local orchestrator (a real local stack)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_cli, stack_up

pytestmark = pytest.mark.services

STACK = "it-step-settings"
LIGHT = "  tracker:\n    flavor: none\n  deployer:\n    flavor: none\n"  # metadata + store only

HEADER = """
import os
import subprocess
import time

from runner import pipeline, step
from runner.context import current


def attempt() -> int:
    ctx = current()
    return int(ctx.metadata.get_step(ctx.step_id).spec["attempt"])
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A local stack with only the metadata server and the artifact store."""
    home = tmp_path_factory.mktemp("settings-home")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        spec = f"name: {STACK}\nprovider: local\ncomponents:\n{LIGHT}"
        with stack_up(home, STACK, spec) as stack:
            yield stack


def write(folder: Path, body: str, header: str = HEADER) -> str:
    """A pipeline file ``flow.py`` in ``folder`` (``header`` + ``body``); its reference."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow.py").write_text(header + textwrap.dedent(body))
    return f"{folder / 'flow.py'}:flow"


def run(ref: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = run_cli("run", ref, "--stack", STACK, "--json", "--no-cache", timeout=300)
    data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc, data


def shown(run_id: str) -> dict[str, dict]:
    data = json.loads(run_cli("run-show", run_id, "--stack", STACK, "--json", check=True).stdout)
    return {s["name"]: s for s in data["steps"]}


def wide_table(run_id: str) -> str:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COLUMNS", "250")  # one table row per line
        return run_cli("run-show", run_id, "--stack", STACK, check=True).stdout


def load(stack: dict, art: dict) -> object:
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(stack["outputs"]["artifact_store"]["uri"])
    return store.load(art["uri"], art["materializer"], art["type_name"])


def test_a_step_failing_once_with_retries_1_succeeds_and_keeps_both_logs(
    stack: dict, tmp_path: Path
) -> None:
    ref = write(
        tmp_path,
        """
        @step(retries=1)
        def flaky() -> int:
            n = attempt()
            print(f"flaky attempt {n} starts")
            if n == 1:
                raise RuntimeError("the first attempt fails")
            return 10 * n

        @step
        def double(x: int) -> int:
            return 2 * x

        @pipeline
        def flow() -> None:
            double(flaky())
        """,
    )
    proc, result = run(ref)
    assert proc.returncode == 0, proc.stderr
    steps = result["steps"]
    assert steps["flaky"]["status"] == "completed"
    assert steps["flaky"]["attempts"] == 2
    assert load(stack, steps["flaky"]["outputs"]["output"]) == 20
    assert load(stack, steps["double"]["outputs"]["output"]) == 40
    assert steps["double"]["attempts"] == 1

    recorded = shown(result["run_id"])
    assert recorded["flaky"]["attempts"] == 2
    assert recorded["flaky"]["status"] == "completed"
    assert recorded["flaky"]["error"] is None  # the first attempt's error is not left behind
    assert recorded["flaky"]["ended_at"] >= recorded["flaky"]["started_at"]
    assert recorded["flaky"]["spec"]["settings"]["retries"] == 1

    log = run_cli("logs", result["run_id"], "flaky", "--stack", STACK, check=True).stdout
    assert "flaky attempt 1 starts" in log
    assert "RuntimeError: the first attempt fails" in log
    assert "attempt 2 of 2" in log
    assert log.index("flaky attempt 1 starts") < log.index("flaky attempt 2 starts")
    table = wide_table(result["run_id"])
    assert "completed (2 attempts)" in next(ln for ln in table.splitlines() if "flaky" in ln)


def test_retries_run_out_and_no_retries_means_one_attempt(stack: dict, tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        """
        @step(retries=2)
        def hopeless() -> int:
            print(f"hopeless attempt {attempt()}")
            raise ValueError("always")

        @step
        def once() -> int:
            raise ValueError("no retries")

        @pipeline
        def flow() -> None:
            hopeless()
            once()
        """,
    )
    proc, result = run(ref)
    assert proc.returncode == 1, proc.stderr
    steps = result["steps"]
    assert (steps["hopeless"]["status"], steps["hopeless"]["attempts"]) == ("failed", 3)
    assert steps["hopeless"]["error"] == "ValueError: always"
    assert (steps["once"]["status"], steps["once"]["attempts"]) == ("failed", 1)
    recorded = shown(result["run_id"])
    assert (recorded["hopeless"]["attempts"], recorded["once"]["attempts"]) == (3, 1)
    assert recorded["hopeless"]["error"] == "ValueError: always"
    log = run_cli("logs", result["run_id"], "hopeless", "--stack", STACK, check=True).stdout
    assert [f"hopeless attempt {n}" in log for n in (1, 2, 3)] == [True, True, True]
    table = wide_table(result["run_id"])
    assert "failed (3 attempts)" in next(ln for ln in table.splitlines() if "hopeless" in ln)


def test_a_step_over_its_timeout_is_killed_with_its_children_and_skips_downstream(
    stack: dict, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    ref = write(
        tmp_path / "proj",
        f"""
        @step(timeout=1.5, retries=1)
        def slow() -> int:
            child = subprocess.Popen(["sleep", "300"])
            open({str(pid_file)!r}, "w").write(str(child.pid))
            print("slow step waiting", flush=True)
            time.sleep(300)
            return 1

        @step
        def after(x: int) -> int:
            return x

        @step
        def quick() -> int:
            return 5

        @pipeline
        def flow() -> None:
            after(slow())
            quick()
        """,
    )
    proc, result = run(ref)
    assert proc.returncode == 1, proc.stderr
    steps = result["steps"]
    assert steps["slow"]["status"] == "failed"
    assert steps["slow"]["error"] == "timed out after 1.5s"
    assert steps["slow"]["attempts"] == 1  # a timed-out attempt is not retried
    assert steps["after"]["status"] == "skipped"
    assert steps["quick"]["status"] == "completed"
    assert "step 'slow' failed: timed out after 1.5s" in proc.stderr
    assert result["seconds"] < 120  # killed, not waited for (the step sleeps 300 s)

    grandchild = int(pid_file.read_text())
    assert not psutil.pid_exists(grandchild) or (
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    ), "the step's own child survived: the process group was not killed"

    recorded = shown(result["run_id"])
    assert recorded["slow"]["status"] == "failed"
    assert recorded["slow"]["error"] == "timed out after 1.5s"
    log = run_cli("logs", result["run_id"], "slow", "--stack", STACK, check=True).stdout
    assert "slow step waiting" in log
    assert "timed out after 1.5s" in log


def test_gpu_request_is_cuda_visible_devices_and_cpu_memory_warn_once(
    stack: dict, tmp_path: Path
) -> None:
    ref = write(
        tmp_path,
        """
        @step(resources={"gpus": 2, "cpu": 1})
        def two_gpus() -> str:
            return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")

        @step(resources={"memory_gib": 0.5})
        def no_gpu() -> str:
            return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")

        @pipeline
        def flow() -> None:
            two_gpus()
            no_gpu()
        """,
    )
    proc, result = run(ref)
    assert proc.returncode == 0, proc.stderr
    steps = result["steps"]
    assert load(stack, steps["two_gpus"]["outputs"]["output"]) == "0,1"
    assert load(stack, steps["no_gpu"]["outputs"]["output"]) == "unset"
    warnings = [line for line in proc.stderr.splitlines() if "does not enforce" in line]
    assert len(warnings) == 1, proc.stderr
    assert "no_gpu, two_gpus" in warnings[0]


def test_invalid_settings_stop_the_run_before_anything_runs(stack: dict, tmp_path: Path) -> None:
    before = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
    for option, expected in [
        ('timeout="soon"', "step 'bad': timeout 'soon' is not a duration"),
        ('resources={"cpu": 0}', "step 'bad': resources[\"cpu\"] must be greater than 0"),
        ('resources={"vram": 8}', "step 'bad': resources has an unknown key 'vram'"),
        ("retries=-1", "step 'bad': retries must be a whole number >= 0, not -1"),
    ]:
        ref = write(
            tmp_path / option.split("=")[0],
            f"""
            @step({option})
            def bad() -> int:
                return 1

            @pipeline
            def flow() -> None:
                bad()
            """,
        )
        proc = run_cli("run", ref, "--stack", STACK)
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr
        assert "Traceback" not in proc.stderr
    after = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
    assert len(after) == len(before)
