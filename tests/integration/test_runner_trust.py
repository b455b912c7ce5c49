"""Issue 9 on the real local stack: a cache that never goes stale, fan-in, the Python API,
fail-fast, clear failures, JSON shapes and a cached step's MLflow metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import gone, run_cli, stack_up

pytestmark = pytest.mark.services

STACK = "it-trust"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("trust-home")
    with stack_up(home, STACK, f"name: {STACK}\nprovider: local\n") as stack:
        yield stack


def run_json(ref: str, *args: str, code: int = 0) -> dict:
    proc = run_cli("run", ref, "--stack", STACK, "--json", *args, timeout=300)
    assert proc.returncode == code, proc.stderr[-3000:]
    return json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}


def load_output(stack: dict, art: dict) -> object:
    from runner.artifacts import ArtifactStore

    store = ArtifactStore(stack["outputs"]["artifact_store"]["uri"])
    return store.load(art["uri"], art["materializer"], art["type_name"])


def value_of(stack: dict, result: dict, step: str) -> object:
    return load_output(stack, result["steps"][step]["outputs"]["output"])


def statuses(result: dict) -> dict[str, str]:
    return {n: s["status"] for n, s in result["steps"].items()}


# -- problem 1: the cache never goes stale ---------------------------------------------------

STALE_FLOW = """
from runner import pipeline, step
import stale_lib

SCALE = {scale}


def helper(x):
    return x + {bump}


@step
def base() -> int:
    return 1


@step
def via_helper(x: int) -> int:
    return helper(x)


@step
def via_constant(x: int) -> int:
    return x * SCALE


@step
def via_module(x: int) -> int:
    return stale_lib.shift(x)


@pipeline
def flow() -> None:
    x = base()
    via_helper(x)
    via_constant(x)
    via_module(x)
"""


def write_stale(folder: Path, bump: int = 1, scale: int = 10, shift: int = 100) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stale_flow.py").write_text(STALE_FLOW.format(bump=bump, scale=scale))
    (folder / "stale_lib.py").write_text(f"def shift(x):\n    return x + {shift}\n")
    return f"{folder / 'stale_flow.py'}:flow"


def check_stale_cache(stack: dict, folder: Path, run: object) -> None:
    """Shared by the local and docker tests: each change reruns exactly the step it reaches."""
    assert callable(run)
    ref = write_stale(folder)
    first = run(ref, "--no-cache")
    assert [value_of(stack, first, s) for s in ("via_helper", "via_constant", "via_module")] == [
        2,
        10,
        101,
    ]
    cases = [
        ({"bump": 1000}, "via_helper", 1001, "code:stale_flow.helper"),
        ({"bump": 1000, "scale": 7}, "via_constant", 7, "const:stale_flow.SCALE"),
        ({"bump": 1000, "scale": 7, "shift": 5}, "via_module", 6, "module:stale_lib"),
    ]
    for changes, step, expected, component in cases:
        ref = write_stale(folder, **changes)
        result = run(ref)
        assert statuses(result)[step] == "completed", (changes, statuses(result))
        assert value_of(stack, result, step) == expected
        others = {s for s in ("via_helper", "via_constant", "via_module") if s != step}
        assert {statuses(result)[s] for s in others | {"base"}} == {"cached"}
        shown = json.loads(run_cli("run-show", result["run_id"], "--json", check=True).stdout)
        reasons = {s["name"]: s["cache_reason"] for s in shown["steps"]}
        assert reasons[step].startswith("miss: changed ") and component in reasons[step], reasons
        assert reasons["base"].startswith("hit: same key as run")
    table = run_cli("run-show", result["run_id"], check=True).stdout
    assert "module:stale_lib" in table


def test_stale_cache_helper_constant_and_local_module_local(stack: dict, tmp_path: Path) -> None:
    check_stale_cache(stack, tmp_path / "proj", run_json)


def test_misspelled_cache_dep_is_a_definition_error(stack: dict, tmp_path: Path) -> None:
    flow = tmp_path / "deps_flow.py"
    flow.write_text(
        "from runner import pipeline, step\n"
        "@step(cache_deps=('data/train.csvv',))\ndef one() -> int:\n    return 1\n"
        "@pipeline\ndef flow() -> None:\n    one()\n"
    )
    proc = run_cli("run", f"{flow}:flow", "--stack", STACK)
    assert proc.returncode == 2, proc.stderr
    assert "cache_deps file 'data/train.csvv' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- problem 3: fan-in ------------------------------------------------------------------------

FAN_FLOW = """
from runner import pipeline, step


@step
def work(i: int) -> int:
    return i * i


@step
def total(values: list) -> dict:
    return {"sum": sum(values), "type": type(values).__name__}


@step
def pair_up(parts: tuple) -> str:
    return type(parts).__name__ + ":" + ",".join(map(str, parts))


@step
def named(by_name: dict) -> dict:
    return by_name


@pipeline
def flow(n: int = 5) -> None:
    results = [work(i) for i in range(n)]
    total(results)
    pair_up((results[0], results[-1]))
    named({"first": results[0], "last": results[-1], "label": "squares"})
"""


def test_fan_out_then_fan_in_list_tuple_and_dict(stack: dict, tmp_path: Path) -> None:
    flow = tmp_path / "fan_in_flow.py"
    flow.write_text(FAN_FLOW)
    result = run_json(f"{flow}:flow", "--param", "n=5", "--no-cache")
    assert value_of(stack, result, "total") == {"sum": 30, "type": "list"}
    assert value_of(stack, result, "pair_up") == "tuple:0,16"
    assert value_of(stack, result, "named") == {"first": 0, "last": 16, "label": "squares"}
    shown = json.loads(run_cli("run-show", result["run_id"], "--json", check=True).stdout)
    total_id = next(s["id"] for s in shown["steps"] if s["name"] == "total")
    edges = {e["name"] for e in shown["lineage"] if e["step_id"] == total_id}
    assert {f"values[{i}]" for i in range(5)} <= edges
    again = run_json(f"{flow}:flow", "--param", "n=5")
    assert set(statuses(again).values()) == {"cached"}


# -- problem 9: the Python API ----------------------------------------------------------------

API_SCRIPT = """
import sys
import runner
from runner import run, load, RunResult
sys.path.insert(0, {folder!r})
from fan_in_flow import flow

assert callable(run), run
result = run(flow, stack={stack!r}, params={{"n": "4"}}, cache=False)
assert isinstance(result, RunResult), type(result)
print("STATUS", result.status)
print("STEPS", sorted(result.steps))
print("OUTPUT", result.output("total"))
print("LOADED", load(result.run_id, "named"))
print("CACHED", runner.run(flow, stack={stack!r}, params={{"n": 4}}).steps["total"].status)
try:
    run(flow, stack="no-such-stack")
except runner.errors.RunnerError as exc:
    print("NOSTACK", exc)
"""


def test_python_api_runs_returns_typed_result_and_loads_outputs(
    stack: dict, tmp_path: Path
) -> None:
    (tmp_path / "fan_in_flow.py").write_text(FAN_FLOW)
    script = tmp_path / "use_api.py"
    script.write_text(API_SCRIPT.format(folder=str(tmp_path), stack=STACK))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300,
        env=dict(os.environ), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "STATUS completed" in out
    assert "STEPS ['named', 'pair_up', 'total', 'work', 'work_2', 'work_3', 'work_4']" in out
    assert "OUTPUT {'sum': 14, 'type': 'list'}" in out
    assert "LOADED {'first': 0, 'label': 'squares', 'last': 9}" in out, out
    assert "CACHED cached" in out
    assert "NOSTACK stack 'no-such-stack' is not up" in out


# -- problem 10: failures, fail-fast, exit codes, JSON shapes, tracker ------------------------

FAIL_FLOW = """
import os
import signal
import time

from runner import pipeline, step


@step(cache=False)
def slow() -> int:
    with open(os.environ["MLSTACK_TEST_MARKER"], "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)
    return 1


@step(cache=False)
def boom() -> int:
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["MLSTACK_TEST_MARKER"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    raise RuntimeError("boom")


@step(cache=False)
def suicide() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@pipeline
def siblings() -> None:
    slow()
    boom()


@pipeline(fail_fast=True)
def eager() -> None:
    slow()
    boom()


@pipeline
def killed() -> None:
    suicide()
"""


@pytest.mark.parametrize(("pipeline_name", "flags"), [("siblings", ["--fail-fast"]), ("eager", [])])
def test_fail_fast_cancels_running_siblings(
    stack: dict, tmp_path: Path, pipeline_name: str, flags: list[str]
) -> None:
    flow = tmp_path / "fail_flow.py"
    flow.write_text(FAIL_FLOW)
    marker = tmp_path / "slow.pid"
    env = dict(os.environ, MLSTACK_TEST_MARKER=str(marker))
    started = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mlstack"), "run", f"{flow}:{pipeline_name}",
         "--stack", STACK, "--json", *flags],
        capture_output=True, text=True, env=env, timeout=100,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - started < 60, "the run waited for its slow sibling"
    result = json.loads(proc.stdout)
    assert statuses(result) == {"slow": "cancelled", "boom": "failed"}
    assert "step 'boom' raised RuntimeError: boom" in proc.stderr
    deadline = time.monotonic() + 15
    while not gone(int(marker.read_text())):
        assert time.monotonic() < deadline, "the cancelled sibling is still running"
        time.sleep(0.1)


def test_killed_step_reads_well_and_exit_codes_are_consistent(stack: dict, tmp_path: Path) -> None:
    flow = tmp_path / "fail_flow.py"
    flow.write_text(FAIL_FLOW)
    proc = run_cli("run", f"{flow}:killed", "--stack", STACK)
    assert proc.returncode == 1
    assert "step 'suicide' failed: its process was killed by signal SIGKILL" in proc.stderr
    broken = tmp_path / "broken_syntax_flow.py"
    broken.write_text("def flow(:\n")
    proc = run_cli("run", f"{broken}:flow", "--stack", STACK)
    assert proc.returncode == 2
    assert f"{broken}:1: syntax error" in proc.stderr


def test_runs_json_numbers_and_iso_times_and_status_object(stack: dict, tmp_path: Path) -> None:
    flow = tmp_path / "fan_in_flow.py"
    flow.write_text(FAN_FLOW)
    done = run_json(f"{flow}:flow", "--param", "n=2")
    rows = json.loads(run_cli("runs", "--stack", STACK, "--json", check=True).stdout)
    row = next(r for r in rows if r["run_id"] == done["run_id"])
    assert isinstance(row["duration_seconds"], float) and row["duration_seconds"] >= 0
    for key in ("created_at", "started_at", "ended_at"):
        assert ISO_UTC.match(row[key]), (key, row[key])
    shown = json.loads(run_cli("run-show", done["run_id"], "--json", check=True).stdout)
    assert ISO_UTC.match(shown["created_at"]) and ISO_UTC.match(shown["steps"][0]["created_at"])
    status = json.loads(run_cli("status", STACK, "--json", check=True).stdout)
    assert isinstance(status, dict) and status["name"] == STACK
    assert ISO_UTC.match(status["created_at"])


METRIC_FLOW = """
from runner import log_metrics, pipeline, step


@step
def score(seed: int = 1) -> float:
    log_metrics(accuracy=0.5 + seed / 100, loss=1.0 / seed)
    return 0.5


@pipeline
def flow(seed: int = 1) -> None:
    score(seed)
"""


def mlflow_run(stack: dict, tracker_run_id: str) -> dict:
    query = urllib.parse.urlencode({"run_id": tracker_run_id})
    url = f"{stack['outputs']['tracker']['uri']}/api/2.0/mlflow/runs/get?{query}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return dict(json.loads(resp.read())["run"]["data"])


def test_cached_step_carries_the_source_runs_metrics(stack: dict, tmp_path: Path) -> None:
    flow = tmp_path / "metric_flow.py"
    flow.write_text(METRIC_FLOW)
    first = run_json(f"{flow}:flow", "--param", "seed=7", "--no-cache")
    second = run_json(f"{flow}:flow", "--param", "seed=7")
    assert statuses(second) == {"score": "cached"}
    data = mlflow_run(stack, second["tracker_run_id"])
    metrics = {m["key"]: m["value"] for m in data.get("metrics", [])}
    assert metrics == {"accuracy": pytest.approx(0.57), "loss": pytest.approx(1 / 7)}
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert tags["mlstack.step.score.cached_from"] == first["run_id"]
