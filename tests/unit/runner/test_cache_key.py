"""The cache key covers what the step's code can see: helpers, constants, local modules."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner.cache import CacheKey, cache_key, explain
from runner.errors import PipelineDefinitionError
from runner.loader import load_pipeline

PIPELINE = """
from runner import pipeline, step
import {mod}_lib
from {mod}_lib import tools_scale, Scaler

OFFSET = {offset}
NAMES = {{"a": [1, 2], "b": ("x",)}}


def helper(x):
    return deeper(x) + 1


def deeper(x):
    return x * {deep}


@step
def uses_helper() -> int:
    return helper(1)


@step
def uses_constant() -> int:
    return OFFSET + len(NAMES)


@step
def uses_module() -> int:
    return {mod}_lib.value()


@step
def uses_imported_function() -> int:
    return tools_scale(2)


@step
def uses_class() -> int:
    return Scaler().run()


@step
def plain() -> int:
    return 7


@pipeline
def flow() -> None:
    uses_helper()
    uses_constant()
    uses_module()
    uses_imported_function()
    uses_class()
    plain()
"""

LIB = """
import {mod}_deep

FACTOR = {factor}


def value():
    return {value}


def tools_scale(x):
    return x * FACTOR + {mod}_deep.extra()


class Scaler:
    def run(self):
        return {method}
"""

DEEP = """
def extra():
    return {extra}
"""

BASE = {"offset": 1, "deep": 2, "factor": 3, "value": 4, "method": 5, "extra": 6}


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Callable[..., dict[str, CacheKey]]]:
    """Write the pipeline with some values changed, import it fresh, key every step."""
    mod = f"ck_{uuid.uuid4().hex[:8]}"
    names = (mod, f"{mod}_lib", f"{mod}_deep")

    def build(**changes: int) -> dict[str, CacheKey]:
        values = {**BASE, **changes, "mod": mod}
        folder = tmp_path / uuid.uuid4().hex[:6]
        folder.mkdir()
        (folder / f"{mod}.py").write_text(PIPELINE.format(**values))
        (folder / f"{mod}_lib.py").write_text(LIB.format(**values))
        (folder / f"{mod}_deep.py").write_text(DEEP.format(**values))
        for name in names:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        compiled = load_pipeline(f"{folder / (mod + '.py')}:flow").compile()
        sys.path.remove(str(folder))
        return {n: cache_key(inv, {}) for n, inv in compiled.invocations.items()}

    yield build
    for name in names:
        sys.modules.pop(name, None)


def changed(before: dict[str, CacheKey], after: dict[str, CacheKey]) -> set[str]:
    return {n for n in before if before[n].key != after[n].key}


def test_same_code_same_keys(keys: Callable[..., dict[str, CacheKey]]) -> None:
    first, second = keys(), keys()
    assert changed(first, second) == set()
    assert all(not k.warnings for k in first.values())


def test_a_helper_function_it_calls_transitively_is_in_the_key(
    keys: Callable[..., dict[str, CacheKey]],
) -> None:
    before = keys()
    after = keys(deep=1000)  # deeper() is reached only through helper()
    assert changed(before, after) == {"uses_helper"}
    component = next(k for k in after["uses_helper"].components if k.endswith(".deeper"))
    assert "changed " + component in explain(
        after["uses_helper"].as_dict(), before["uses_helper"].as_dict()
    )


def test_a_module_constant_it_reads_is_in_the_key(
    keys: Callable[..., dict[str, CacheKey]],
) -> None:
    before = keys()
    assert changed(before, keys(offset=2)) == {"uses_constant"}
    # A constant of a user module, read by an imported function, counts too.
    assert "uses_imported_function" in changed(before, keys(factor=30))


def test_a_local_module_it_imports_is_in_the_key(
    keys: Callable[..., dict[str, CacheKey]],
) -> None:
    before = keys()
    assert changed(before, keys(value=40)) >= {"uses_module"}
    # What the imported function reaches in another local module, and a class's methods.
    assert "uses_imported_function" in changed(before, keys(extra=60))
    assert changed(before, keys(method=50)) >= {"uses_class"}
    assert "plain" not in changed(before, keys(value=40, extra=60, method=50, offset=9))


def test_what_cannot_be_hashed_is_named_in_a_warning(tmp_path: Path) -> None:
    mod = f"ck_warn_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(
        "from runner import pipeline, step\n"
        "class Opaque:\n    pass\n"
        "THING = Opaque()\n"
        "@step\ndef reads() -> int:\n    return id(THING)\n"
        "@pipeline\ndef flow() -> None:\n    reads()\n"
    )
    try:
        compiled = load_pipeline(f"{tmp_path / (mod + '.py')}:flow").compile()
        key = cache_key(compiled.invocations["reads"], {})
    finally:
        sys.modules.pop(mod, None)
        sys.path.remove(str(tmp_path))
    assert len(key.warnings) == 1
    assert f"{mod}.THING (Opaque) cannot be hashed" in key.warnings[0]


def test_missing_cache_deps_file_and_unknown_package_are_definition_errors(
    tmp_path: Path,
) -> None:
    from runner import pipeline, step

    @step(cache_deps=(str(tmp_path / "no-such.csv"),))
    def missing_file() -> int:
        return 0

    @step(cache_deps=("pkg:not-a-real-package-xyz",))
    def missing_pkg() -> int:
        return 0

    @pipeline
    def a() -> None:
        missing_file()

    @pipeline
    def b() -> None:
        missing_pkg()

    with pytest.raises(
        PipelineDefinitionError, match=r"cache_deps file .*no-such\.csv.* not exist"
    ):
        a.compile()
    with pytest.raises(PipelineDefinitionError, match=r"'not-a-real-package-xyz'.* not installed"):
        b.compile()
