"""What mlstack's runtime adds to a pipeline's image (issue 9, problem 7): pyarrow for
pandas, mlflow-skinny and skops for register_model; nothing the requirements already name."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

from runner.loader import load_pipeline
from runner.packaging import runtime_pins
from runner.requirements import requirement_name, runtime_needs
from runner.sdk import steps_of_module

HELPER = """
from runner import register_model


def publish(model):
    return register_model(model, "m")
"""

FLOW = """
{imports}
from runner import pipeline, step
{extra}

@step
def one() -> int:
    return {body}


@pipeline(requirements={requirements!r})
def flow():
    one()
"""


@pytest.fixture
def load(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[str] = []

    def write(imports: str = "", extra: str = "", body: str = "1", requirements=()):  # type: ignore[no-untyped-def]
        module = f"needs_flow_{len(made)}_{tmp_path.name[-8:]}".replace("-", "_")
        folder = tmp_path / module
        folder.mkdir()
        (folder / "needs_helper.py").write_text(HELPER)
        text = FLOW.format(imports=imports, extra=extra, body=body, requirements=list(requirements))
        (folder / f"{module}.py").write_text(textwrap.dedent(text))
        made.append(module)
        pipe = load_pipeline(f"{folder / module}.py:flow")
        needs = runtime_needs(
            [str(r) for r in pipe.requirements or []], steps_of_module(pipe.func.__module__)
        )
        return {n.dist for n in needs}

    yield write
    for module in [*made, "needs_helper"]:
        sys.modules.pop(module, None)
    sys.path[:] = [p for p in sys.path if str(tmp_path) not in p]


def test_requirement_names_are_normalised() -> None:
    assert requirement_name("Pandas>=2.1") == "pandas"
    assert requirement_name("scikit_learn==1.4 ; python_version>'3'") == "scikit-learn"
    assert requirement_name("mlflow-skinny[extras]>=2") == "mlflow-skinny"


def test_pandas_declared_or_imported_brings_pyarrow(load) -> None:  # type: ignore[no-untyped-def]
    assert load(requirements=["pandas>=2"]) == {"pyarrow"}
    assert load(imports="import pandas as pd", requirements=[]) == {"pyarrow"}
    assert load(requirements=["pandas", "pyarrow<20"]) == set()
    assert load(requirements=["six"]) == set()


def test_register_model_reached_through_a_helper_brings_mlflow(load) -> None:  # type: ignore[no-untyped-def]
    found = load(extra="import needs_helper", body="needs_helper.publish(None) and 1")
    assert found == {"mlflow-skinny", "skops"}
    direct = load(extra="from runner import register_model", body="register_model(1, 'x')")
    assert direct == {"mlflow-skinny", "skops"}
    assert load(extra="import runner", body="runner.register_model(1, 'x')") == {
        "mlflow-skinny",
        "skops",
    }
    declared = load(
        extra="from runner import register_model",
        body="register_model(1, 'x')",
        requirements=["mlflow>=2", "skops"],
    )
    assert declared == set()


def test_needs_are_pinned_to_the_host_and_change_the_runtime_hash(load) -> None:  # type: ignore[no-untyped-def]
    from runner.requirements import RuntimeNeed

    pins = runtime_pins(None, [RuntimeNeed("pyarrow", "pyarrow", "pandas outputs")])
    assert f"pyarrow=={version('pyarrow')}" in pins
    skinny = runtime_pins(None, [RuntimeNeed("mlflow-skinny", "mlflow.sklearn", "x")])
    assert any(p.startswith("mlflow-skinny==") for p in skinny)
    assert sorted(pins) != sorted(runtime_pins())
