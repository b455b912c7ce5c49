"""Issue 9, problems 6 and 7 on `orchestrator: docker`: steps run under an init, and the
image holds what mlstack's runtime needs, checked in seconds before any step runs.

Each test writes a pipeline with its own name, so its image is built for the first time on
this module's fresh stack: "runs first time" is what is checked.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.test_docker_orchestrator import STACK, load_output, stack

pytestmark = pytest.mark.docker

__all__ = ["stack"]  # the module-scoped docker stack fixture, shared with its module

ROOT = Path(__file__).resolve().parents[2]


def run(ref: str, *args: str) -> tuple[int, dict, str]:
    proc = run_cli("run", ref, "--stack", STACK, "--json", *args, timeout=1800)
    out = proc.stdout.strip()
    return proc.returncode, (json.loads(out) if out.startswith("{") else {}), proc.stderr


def statuses(result: dict) -> dict[str, str]:
    return {n: s["status"] for n, s in result["steps"].items()}


# -- problem 6: a step that kills itself is failed, its downstream skipped --------------------

KILL_FLOW = """
import os
import signal

from runner import pipeline, step


@step(cache=False)
def suicide() -> int:
    os.kill(os.getpid(), signal.{sig})
    return 0


@step(cache=False)
def after(x: int) -> int:
    return x + 1


@pipeline(requirements=[])
def {name}() -> None:
    after(suicide())
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_self_killing_step_fails_and_skips_downstream(
    stack: dict, tmp_path: Path, sig: str
) -> None:
    flow = tmp_path / "kill_flow.py"
    flow.write_text(KILL_FLOW.format(sig=sig, name="killflow"))
    code, result, stderr = run(f"{flow}:killflow")
    assert code == 1, stderr
    assert statuses(result) == {"suicide": "failed", "after": "skipped"}, result
    assert f"killed by signal {sig}" in result["steps"]["suicide"]["error"], result


# -- problem 7: what mlstack's runtime needs is in the image; missing ones fail fast --------

PANDAS_FLOW = """
import pandas as pd

from runner import pipeline, step


@step
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3]})


@step
def total(df: pd.DataFrame) -> int:
    return int(df["a"].sum())


@pipeline(requirements=["pandas"])
def pandasflow() -> None:
    total(frame())
"""


def test_pandas_without_pyarrow_runs_first_time(stack: dict, tmp_path: Path) -> None:
    flow = tmp_path / "pandas_flow.py"
    flow.write_text(PANDAS_FLOW)
    code, result, stderr = run(f"{flow}:pandasflow", "--no-cache")
    assert code == 0, stderr[-3000:]
    assert statuses(result) == {"frame": "completed", "total": "completed"}
    assert load_output(stack, result["steps"]["total"]["outputs"]["output"]) == 6


MISSING_FLOW = """
import six  # installed on the host (a test dependency), not declared for the image

from runner import pipeline, step


@step
def one() -> int:
    return 1


@pipeline(requirements=[])
def missingflow() -> None:
    one()
"""


def test_missing_requirement_fails_fast_naming_the_module(stack: dict, tmp_path: Path) -> None:
    flow = tmp_path / "missing_flow.py"
    flow.write_text(MISSING_FLOW)
    # Build (or reuse) the image first with a pipeline of the same requirements, so the time
    # measured below is the check's, not the build's.
    warm = tmp_path / "warm" / "missing_flow.py"
    warm.parent.mkdir()
    warm.write_text(MISSING_FLOW.replace("import six", "import os"))
    code, _, stderr = run(f"{warm}:missingflow", "--no-cache")
    assert code == 0, stderr[-3000:]
    started = time.monotonic()
    code, _, stderr = run(f"{flow}:missingflow", "--no-cache")
    seconds = time.monotonic() - started
    print(f"missing requirement reported in {seconds:.2f}s")
    assert code == 2, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]  # after progress
    assert len(lines) == 1, stderr
    assert "'six'" in lines[0] and "missing_flow" in lines[0], lines[0]
    assert "add six to the pipeline's requirements" in lines[0], lines[0]
    assert "Traceback" not in stderr
    assert seconds < 20, f"the check took {seconds:.1f}s"
    runs = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
    assert not any(r["pipeline"] == "missingflow" and r["status"] == "failed" for r in runs), runs


def test_image_only_import_on_the_host_states_the_host_import_rule(tmp_path: Path) -> None:
    flow = tmp_path / "image_only_flow.py"
    flow.write_text(
        "import not_on_this_host_pkg\nfrom runner import pipeline, step\n"
        "@step\ndef one() -> int:\n    return 1\n@pipeline\ndef flow() -> None:\n    one()\n"
    )
    proc = run_cli("run", f"{flow}:flow", "--stack", STACK)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "not_on_this_host_pkg" in line and "imports the pipeline file on this host" in line
    assert "move image-only imports inside the step" in line, line


# -- Done means: the README's pipeline example, copied as written, runs on docker ------------


def readme_pipeline() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Pipelines", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "no python example under ## Pipelines"
    return found.group(1)


@pytest.mark.timeout(1800)  # its first image installs pandas, scikit-learn and MLflow
def test_readme_pipeline_example_runs_on_docker_first_time(stack: dict, tmp_path: Path) -> None:
    source = readme_pipeline()
    names = re.findall(r"^def (\w+)\(", source, re.M)
    pipeline_name = names[-1]
    flow = tmp_path / "readme_flow.py"
    flow.write_text(source)
    code, result, stderr = run(f"{flow}:{pipeline_name}")
    assert code == 0, stderr[-3000:]
    assert set(statuses(result).values()) == {"completed"}, result
