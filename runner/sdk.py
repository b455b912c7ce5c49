"""The pipeline SDK: ``@step`` and ``@pipeline``.

Calling steps inside a ``@pipeline`` function does not run them: each call records a step
invocation and returns :class:`OutputRef` placeholders, so the DAG comes from data flow.
Every mistake (a missing input, an unserialisable parameter, a step called outside a
pipeline, a cycle) is caught by :meth:`Pipeline.compile` before anything runs.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from runner.errors import PipelineDefinitionError
from runner.step_options import (
    StepResources,
    parse_duration,
    parse_resources,
    parse_retries,
)

_ACTIVE: list[_Builder] = []


@dataclass(frozen=True)
class OutputRef:
    """A placeholder for one output of one step invocation."""

    step: str
    output: str

    def __iter__(self) -> Any:
        raise PipelineDefinitionError(
            f"output {self.output!r} of step {self.step!r} is a single value and cannot be"
            " unpacked",
            "declare several outputs with @step(outputs=(...)) or a tuple[...] return type",
        )


@dataclass
class Invocation:
    """One call of a step inside a pipeline: its literal params and its upstream inputs."""

    name: str
    step: Step
    params: dict[str, Any]
    inputs: dict[str, OutputRef]
    after: list[str] = field(default_factory=list)
    # Fan-in: argument -> {"type": "list"|"tuple"|"dict", "items": [[key, input-or-value]]};
    # each output in the container is its own input edge, named like "values[0]".
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Builder:
    def __init__(self) -> None:
        self.invocations: dict[str, Invocation] = {}

    def add(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Invocation:
        name = step.name
        n = 2
        while name in self.invocations:
            name, n = f"{step.name}_{n}", n + 1
        after = [a.name if isinstance(a, Step) else str(a) for a in kwargs.pop("after", [])]
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineDefinitionError(f"step {name!r}: {exc}") from None
        bound.apply_defaults()
        params: dict[str, Any] = {}
        inputs: dict[str, OutputRef] = {}
        collections: dict[str, dict[str, Any]] = {}
        for arg, value in bound.arguments.items():
            if isinstance(value, OutputRef):
                inputs[arg] = value
            elif _holds_refs(value):
                collections[arg] = _collect(name, arg, value, inputs)
            else:
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    raise PipelineDefinitionError(
                        f"step {name!r}: parameter {arg!r} ({type(value).__name__}) is not"
                        " JSON-serialisable",
                        "parameters must be JSON values; pass data between steps as outputs",
                    ) from None
                params[arg] = value
        inv = Invocation(
            name=name, step=step, params=params, inputs=inputs, after=after,
            collections=collections,
        )  # fmt: skip
        self.invocations[name] = inv
        return inv


def _holds_refs(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return isinstance(value, list | tuple | dict) and any(isinstance(v, OutputRef) for v in items)


def _collect(name: str, arg: str, value: Any, inputs: dict[str, OutputRef]) -> dict[str, Any]:
    """Record a list/tuple/dict holding outputs as one input edge per output (fan-in)."""
    pairs = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    items: list[list[Any]] = []
    for key, item in pairs:
        if isinstance(value, dict) and not isinstance(key, str):
            raise PipelineDefinitionError(
                f"step {name!r}: argument {arg!r} is a dict with a {type(key).__name__} key",
                "a dict of step outputs needs string keys",
            )
        if isinstance(item, OutputRef):
            edge = f"{arg}[{key}]"
            inputs[edge] = item
            items.append([key, {"input": edge}])
        elif _holds_refs(item) or (
            isinstance(item, tuple) and any(isinstance(i, OutputRef) for i in item)
        ):
            raise PipelineDefinitionError(
                f"step {name!r}: argument {arg!r} nests outputs more than one level deep",
                "pass a flat list, tuple or dict of outputs",
            )
        else:
            try:
                json.dumps(item)
            except (TypeError, ValueError):
                raise PipelineDefinitionError(
                    f"step {name!r}: argument {arg!r}[{key!r}] ({type(item).__name__}) is"
                    " neither a step output nor a JSON value"
                ) from None
            items.append([key, {"value": item}])
    kind = "dict" if isinstance(value, dict) else "tuple" if isinstance(value, tuple) else "list"
    return {"type": kind, "items": items}


def rebuild_collection(spec: dict[str, Any], loaded: dict[str, Any]) -> Any:
    """The container a fan-in argument was written as, from its loaded input edges."""
    values = [
        (key, loaded[ref["input"]] if "input" in ref else ref["value"])
        for key, ref in spec["items"]
    ]
    if spec["type"] == "dict":
        return dict(values)
    items = [v for _, v in values]
    return tuple(items) if spec["type"] == "tuple" else items


_STEP_OPTIONS = ("outputs", "cache", "cache_deps", "name", "resources", "retries", "timeout")


class Step:
    """A function that runs as one isolated, cached, tracked unit of a pipeline."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        outputs: tuple[str, ...] | None = None,
        cache: bool = True,
        cache_deps: tuple[str, ...] = (),
        name: str | None = None,
        resources: StepResources | dict[str, Any] | None = None,
        retries: int = 0,
        timeout: float | str | None = None,
    ) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.name = name or func.__name__
        self.signature = inspect.signature(func)
        # Run settings (runner/step_options.py): not part of the cache key.
        self.resources: StepResources = parse_resources(self.name, resources)
        self.retries: int = parse_retries(self.name, retries)
        self.timeout: float | None = parse_duration(self.name, "timeout", timeout)
        self.cache = cache
        self.cache_deps = tuple(cache_deps)
        self.outputs = outputs or _outputs_from_annotation(func)
        self.module = func.__module__
        _REGISTRY.setdefault(self.module, {})[self.name] = self

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _ACTIVE:
            raise PipelineDefinitionError(
                f"step {self.name!r} was called outside a pipeline",
                "call steps inside a @pipeline function, or call step.func(...) to run it"
                " as plain Python",
            )
        inv = _ACTIVE[-1].add(self, args, kwargs)
        refs = tuple(OutputRef(inv.name, out) for out in self.outputs)
        return refs[0] if len(refs) == 1 else refs

    def source(self) -> str:
        """The step's source code (part of its cache key)."""
        try:
            return inspect.getsource(self.func)
        except (OSError, TypeError):
            code = self.func.__code__
            return f"{code.co_filename}:{code.co_firstlineno}:{code.co_code.hex()}"


_REGISTRY: dict[str, dict[str, Step]] = {}


def _outputs_from_annotation(func: Callable[..., Any]) -> tuple[str, ...]:
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = getattr(func, "__annotations__", {})
    ret = hints.get("return")
    if typing.get_origin(ret) is tuple:
        args = typing.get_args(ret)
        if args and args[-1] is not Ellipsis:
            return tuple(f"output_{i}" for i in range(len(args)))
    return ("output",)


def find_step(module: str, name: str) -> Step:
    """The registered step ``name`` of ``module`` (used by the step entrypoint)."""
    try:
        return _REGISTRY[module][name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY.get(module, {}))) or "none"
        raise PipelineDefinitionError(
            f"step {name!r} is not defined in module {module!r} (steps there: {known})"
        ) from None


@overload
def step(func: Callable[..., Any], /) -> Step: ...
@overload
def step(
    *,
    outputs: tuple[str, ...] | None = None,
    cache: bool = True,
    cache_deps: tuple[str, ...] = (),
    name: str | None = None,
    resources: StepResources | dict[str, Any] | None = None,
    retries: int = 0,
    timeout: float | str | None = None,
) -> Callable[[Callable[..., Any]], Step]: ...
def step(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a step: ``@step`` or ``@step(outputs=("a", "b"), cache=False)``.

    ``resources={"cpu": 2, "memory_gib": 4, "gpus": 1}``, ``retries=2`` and
    ``timeout="30m"`` (or seconds) say how each attempt runs; see runner/step_options.py.
    """
    unknown = sorted(set(options) - set(_STEP_OPTIONS))
    if unknown:
        where = f" on {func.__name__!r}" if func is not None else ""
        raise PipelineDefinitionError(
            f"@step got an unknown option {unknown[0]!r}{where}",
            f"options: {', '.join(_STEP_OPTIONS)}",
        )
    if func is not None:
        return Step(func, **options)
    return lambda f: Step(f, **options)


@dataclass
class CompiledPipeline:
    """A validated DAG: invocations in a topological order plus the parameters used."""

    name: str
    params: dict[str, Any]
    invocations: dict[str, Invocation]
    order: list[str]
    source: PipelineSource

    def upstream(self, name: str) -> set[str]:
        inv = self.invocations[name]
        return {ref.step for ref in inv.inputs.values()} | set(inv.after)

    def downstream(self, name: str) -> set[str]:
        """Every invocation that depends on ``name``, directly or not."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for other in self.invocations:
                if other not in found and current in self.upstream(other):
                    found.add(other)
                    frontier.append(other)
        return found


@dataclass(frozen=True)
class PipelineSource:
    """Where the pipeline's code lives, so a worker or container can import it again."""

    module: str
    path: str | None
    root: str | None


class Pipeline:
    """A function whose body wires steps together."""

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        requirements: list[str] | tuple[str, ...] | None = None,
        fail_fast: bool = False,
    ) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.name = name or func.__name__
        self.fail_fast = bool(fail_fast)
        self.signature = inspect.signature(func)
        if isinstance(requirements, str):
            raise PipelineDefinitionError(
                f"pipeline {self.name!r}: requirements must be a list of strings",
                'for example @pipeline(requirements=["pandas>=2", "scikit-learn"])',
            )
        # None: not declared, so packaging reads requirements.txt / pyproject.toml instead.
        self.requirements: list[str] | None = (
            None if requirements is None else [str(r) for r in requirements]
        )

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise PipelineDefinitionError(
            f"pipeline {self.name!r} is not run by calling it",
            f"use `mlstack run FILE:{self.name} --stack NAME` or runner.run({self.name}, ...)",
        )

    def compile(self, params: dict[str, Any] | None = None) -> CompiledPipeline:
        """Build and validate the DAG for ``params`` without running anything."""
        params = dict(params or {})
        unknown = set(params) - set(self.signature.parameters)
        if unknown:
            allowed = ", ".join(self.signature.parameters) or "none"
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} has no parameter {sorted(unknown)[0]!r}",
                f"parameters: {allowed}",
            )
        try:
            bound = self.signature.bind(**params)
        except TypeError as exc:
            raise PipelineDefinitionError(f"pipeline {self.name!r}: {exc}") from None
        from runner.params import coerce_params

        bound.arguments.update(coerce_params(self, dict(bound.arguments)))
        bound.apply_defaults()
        for key, value in bound.arguments.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise PipelineDefinitionError(
                    f"pipeline {self.name!r}: parameter {key!r} is not JSON-serialisable"
                ) from None
        builder = _Builder()
        _ACTIVE.append(builder)
        try:
            self.func(**bound.arguments)
        finally:
            _ACTIVE.pop()
        if not builder.invocations:
            raise PipelineDefinitionError(f"pipeline {self.name!r} calls no step")
        from runner.cache import check_dependencies

        for inv in builder.invocations.values():
            check_dependencies(inv.step)
        order = topological_order(
            {n: {r.step for r in i.inputs.values()} | set(i.after)
             for n, i in builder.invocations.items()}
        )  # fmt: skip
        return CompiledPipeline(
            name=self.name,
            params=dict(bound.arguments),
            invocations=builder.invocations,
            order=order,
            source=source_of(self.func),
        )


def topological_order(deps: dict[str, set[str]]) -> list[str]:
    """Order nodes so each comes after its dependencies; name the cycle or missing node."""
    import graphlib

    for node, needs in deps.items():
        missing = needs - set(deps)
        if missing:
            raise PipelineDefinitionError(
                f"step {node!r} depends on {sorted(missing)[0]!r}, which is not in the pipeline"
            )
    try:
        return list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise PipelineDefinitionError(f"the pipeline has a cycle: {cycle}") from None


def source_of(func: Callable[..., Any]) -> PipelineSource:
    module = func.__module__
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    root = None
    if path:
        depth = module.count(".") + 1
        root = str(Path(path).resolve().parents[depth - 1])
        if Path(path).name == "__init__.py":
            root = str(Path(path).resolve().parents[depth])
    return PipelineSource(module=module, path=path, root=root)


def steps_of_module(module: str) -> list[Step]:
    """The steps defined in ``module``."""
    return list(_REGISTRY.get(module, {}).values())


@overload
def pipeline(func: Callable[..., Any], /) -> Pipeline: ...
@overload
def pipeline(
    *,
    name: str | None = None,
    requirements: list[str] | tuple[str, ...] | None = None,
    fail_fast: bool = False,
) -> Callable[[Callable[..., Any]], Pipeline]: ...
def pipeline(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a pipeline: ``@pipeline`` or ``@pipeline(requirements=["pandas>=2"])``.

    ``requirements`` are what its image installs; without them packaging reads the
    requirements.txt or pyproject.toml next to the pipeline's code. ``fail_fast`` stops
    running sibling steps as soon as one fails.
    """
    if func is not None:
        return Pipeline(func, **options)
    return lambda f: Pipeline(f, **options)
