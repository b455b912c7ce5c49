"""Pipeline definition mistakes are caught before anything runs, naming the step."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import pipeline, step
from runner.cache import cache_key
from runner.errors import PipelineDefinitionError
from runner.loader import load_pipeline, parse_params
from runner.sdk import topological_order

TOY = Path(__file__).resolve().parents[2] / "pipelines" / "toy.py"


@step
def make(n: int = 3) -> list:
    return list(range(n))


@step
def consume(values: list, scale: float = 1.0) -> float:
    return sum(values) * scale


@step(outputs=("a", "b"))
def pair() -> tuple[int, int]:
    return 1, 2


def test_dag_from_data_flow_with_parallel_branches_and_multiple_outputs() -> None:
    @pipeline
    def p(scale: float = 2.0) -> None:
        values = make()
        consume(values, scale=scale)
        consume(values)
        _a, _b = pair()

    compiled = p.compile({"scale": 3.0})
    assert set(compiled.invocations) == {"make", "consume", "consume_2", "pair"}
    assert compiled.order.index("make") < compiled.order.index("consume")
    assert compiled.upstream("consume_2") == {"make"}
    assert compiled.upstream("pair") == set()
    assert compiled.invocations["consume"].params == {"scale": 3.0}
    assert compiled.invocations["consume_2"].params == {"scale": 1.0}
    assert compiled.downstream("make") == {"consume", "consume_2"}
    assert pair.outputs == ("a", "b")


def test_step_called_outside_a_pipeline() -> None:
    with pytest.raises(PipelineDefinitionError, match="step 'make' was called outside a pipeline"):
        make()


def test_missing_input_names_the_step() -> None:
    @pipeline
    def p() -> None:
        consume()

    with pytest.raises(PipelineDefinitionError, match=r"step 'consume'.*values"):
        p.compile()


def test_unserialisable_parameter_names_step_and_argument() -> None:
    @pipeline
    def p() -> None:
        consume(make(), scale=object())

    with pytest.raises(PipelineDefinitionError, match=r"step 'consume'.*'scale'.*JSON"):
        p.compile()


def test_unknown_pipeline_parameter_lists_the_known_ones() -> None:
    @pipeline
    def p(alpha: float = 0.5) -> None:
        make()

    with pytest.raises(PipelineDefinitionError, match="no parameter 'beta'") as info:
        p.compile({"beta": 1})
    assert "alpha" in str(info.value)


def test_cycle_and_missing_dependency_are_named() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"cycle: .*a.*b"):
        topological_order({"a": {"b"}, "b": {"a"}, "c": set()})
    with pytest.raises(PipelineDefinitionError, match="'x' depends on 'ghost'"):
        topological_order({"x": {"ghost"}})


def test_unpacking_a_single_output_and_passing_a_tuple_are_errors() -> None:
    @pipeline
    def unpack() -> None:
        _a, _b = make()

    with pytest.raises(PipelineDefinitionError, match="single value"):
        unpack.compile()

    @pipeline
    def whole() -> None:
        consume(pair())  # a tuple of outputs is a fan-in: two input edges

    inv = whole.compile().invocations["consume"]
    assert set(inv.inputs) == {"values[0]", "values[1]"}
    assert inv.collections["values"]["type"] == "tuple"


def test_empty_pipeline_and_calling_a_pipeline() -> None:
    @pipeline
    def empty() -> None:
        pass

    with pytest.raises(PipelineDefinitionError, match="calls no step"):
        empty.compile()
    with pytest.raises(PipelineDefinitionError, match="not run by calling it"):
        empty()


def test_cache_key_covers_code_params_inputs_and_deps(tmp_path: Path) -> None:
    @pipeline
    def p(scale: float = 1.0) -> None:
        consume(make(), scale=scale)

    inv = p.compile().invocations["consume"]
    base = cache_key(inv, {"values": "h1"}).key
    assert base == cache_key(inv, {"values": "h1"}).key
    assert base != cache_key(inv, {"values": "h2"}).key
    scaled = p.compile({"scale": 2.0}).invocations["consume"]
    assert base != cache_key(scaled, {"values": "h1"}).key
    dep = tmp_path / "data.csv"
    dep.write_text("a")

    @step(cache_deps=(str(dep), "pkg:pydantic"))
    def with_deps(values: list) -> int:
        return 0

    @pipeline
    def q() -> None:
        with_deps(make())

    inv2 = q.compile().invocations["with_deps"]
    first = cache_key(inv2, {"values": "h"}).key
    dep.write_text("b")
    assert cache_key(inv2, {"values": "h"}).key != first


def test_load_pipeline_errors_are_clear(tmp_path: Path) -> None:
    assert load_pipeline(f"{TOY}:fan").name == "fan"
    with pytest.raises(PipelineDefinitionError, match="no such file"):
        load_pipeline(f"{tmp_path}/nope.py:x")
    with pytest.raises(PipelineDefinitionError, match="has no 'nothing'") as info:
        load_pipeline(f"{TOY}:nothing")
    assert "fan" in str(info.value)
    with pytest.raises(PipelineDefinitionError, match="not a @pipeline"):
        load_pipeline(f"{TOY}:noop")
    with pytest.raises(PipelineDefinitionError, match=r"FILE.py:NAME"):
        load_pipeline("no-colon")
    broken = tmp_path / "broken_pipeline_mod.py"
    broken.write_text("import not_a_real_module_xyz\n")
    with pytest.raises(PipelineDefinitionError, match="cannot import"):
        load_pipeline(f"{broken}:p")


def test_parse_params_keeps_the_text_and_unannotated_ones_become_json() -> None:
    raw = parse_params(["alpha=0.1", "name=x", "flag=true", "items=[1,2]"])
    assert raw == {"alpha": "0.1", "name": "x", "flag": "true", "items": "[1,2]"}

    @pipeline
    def loose(alpha=0, name=None, flag=None, items=None):  # type: ignore[no-untyped-def]
        make()

    assert loose.compile(raw).params == {
        "alpha": 0.1,
        "name": "x",
        "flag": True,
        "items": [1, 2],
    }
    with pytest.raises(PipelineDefinitionError, match="KEY=VALUE"):
        parse_params(["novalue"])


def test_fan_in_list_and_dict_of_outputs_are_input_edges() -> None:
    @pipeline
    def fan_in(n: int = 3) -> None:
        parts = [make(i) for i in range(n)]
        consume(parts)
        consume({"first": parts[0], "last": parts[-1], "const": 5})

    compiled = fan_in.compile()
    listed = compiled.invocations["consume"]
    assert set(listed.inputs) == {"values[0]", "values[1]", "values[2]"}
    assert compiled.upstream("consume") == {"make", "make_2", "make_3"}
    assert listed.collections["values"]["type"] == "list"
    keyed = compiled.invocations["consume_2"]
    assert set(keyed.inputs) == {"values[first]", "values[last]"}
    from runner.sdk import rebuild_collection

    shape = keyed.collections["values"]
    loaded = {"values[first]": [0], "values[last]": [0, 1, 2]}
    assert rebuild_collection(shape, loaded) == {"first": [0], "last": [0, 1, 2], "const": 5}


def test_unknown_step_option_is_a_definition_error() -> None:
    with pytest.raises(PipelineDefinitionError, match="unknown option 'priority'") as info:

        @step(priority=5)
        def slow() -> int:
            return 1

    assert "options: outputs, cache, cache_deps, name, resources, retries, timeout" in str(
        info.value
    )


def test_syntax_error_in_the_pipeline_file_names_it(tmp_path: Path) -> None:
    broken = tmp_path / "syntax_broken_mod.py"
    broken.write_text("from runner import pipeline\n\ndef oops(:\n    pass\n")
    with pytest.raises(
        PipelineDefinitionError, match=r"syntax_broken_mod\.py:3: syntax error"
    ) as e:
        load_pipeline(f"{broken}:p")
    assert e.value.exit_code == 2


def test_wrong_number_of_outputs_gives_the_counts() -> None:
    from runner.entrypoint import _split_outputs
    from runner.errors import RunnerError

    with pytest.raises(RunnerError, match=r"declares 2 outputs \(a, b\) but returned a tuple of 3"):
        _split_outputs(("a", "b"), (1, 2, 3), "pair")
    with pytest.raises(RunnerError, match="but returned one int"):
        _split_outputs(("a", "b"), 1, "pair")
