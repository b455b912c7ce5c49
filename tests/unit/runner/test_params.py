"""--param values are validated and coerced against the pipeline's annotations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import pipeline, step
from runner.errors import PipelineDefinitionError
from runner.loader import parse_params


@step
def echo(flag: bool, n: int, s: str, rate: float, sizes: list[int]) -> dict:
    return {"flag": flag, "n": n, "s": s, "rate": rate, "sizes": sizes}


@pipeline
def typed(
    flag: bool = True, n: int = 1, s: str = "a", rate: float = 0.5, sizes: list[int] | None = None
) -> None:
    echo(flag, n, s, rate, sizes or [])


def test_cli_text_becomes_the_annotated_type() -> None:
    raw = parse_params(["flag=False", "n=3", "s=123", "rate=1e-3", "sizes=[1, 2]"])
    params = typed.compile(raw).params
    assert params == {"flag": False, "n": 3, "s": "123", "rate": 0.001, "sizes": [1, 2]}
    assert type(params["s"]) is str and params["flag"] is False
    assert typed.compile(parse_params(["flag=no"])).params["flag"] is False


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("n=abc", r"parameter 'n': 'abc' is not a valid int"),
        ("flag=maybe", r"parameter 'flag': 'maybe' is not a valid bool"),
        ('sizes=[1, "x"]', r"parameter 'sizes': '\[1, \"x\"\]' is not a valid"),
    ],
)
def test_a_bad_value_names_parameter_value_and_type(pair: str, expected: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=expected) as info:
        typed.compile(parse_params([pair]))
    assert info.value.exit_code == 2


def test_python_values_are_validated_too() -> None:
    assert typed.compile({"n": "4"}).params["n"] == 4
    with pytest.raises(PipelineDefinitionError, match="parameter 'rate'"):
        typed.compile({"rate": "fast"})


def test_the_cli_exits_2_before_anything_runs(tmp_path: Path) -> None:
    flow = tmp_path / "typed_flow.py"
    flow.write_text(
        "from runner import pipeline, step\n"
        "@step\ndef one(n: int) -> int:\n    return n\n"
        "@pipeline\ndef flow(n: int = 1) -> None:\n    one(n)\n"
    )
    mlstack = str(Path(sys.executable).parent / "mlstack")
    env = dict(os.environ, MLSTACK_HOME=str(tmp_path / "home"))
    env.pop("MLSTACK_STACK", None)
    # No stack is up here: a bad parameter must be reported first, with exit code 2.
    proc = subprocess.run(
        [mlstack, "run", f"{flow}:flow", "--param", "n=abc"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "parameter 'n': 'abc' is not a valid int" in proc.stderr
    assert "Traceback" not in proc.stderr
