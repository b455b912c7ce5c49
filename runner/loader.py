"""Load a pipeline from a reference such as ``examples/pipelines/train.py:training``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from runner.errors import PipelineDefinitionError
from runner.sdk import Pipeline, PipelineSource


def import_source(source: PipelineSource) -> None:
    """Import the pipeline's module again (in a worker or container) so its steps register."""
    if source.root and source.root not in sys.path:
        sys.path.insert(0, source.root)
    importlib.import_module(source.module)


def load_pipeline(ref: str) -> Pipeline:
    """``FILE.py:NAME`` or ``package.module:NAME`` -> the Pipeline object."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise PipelineDefinitionError(
            f"pipeline reference {ref!r} is not FILE.py:NAME or module:NAME",
            "for example examples/pipelines/train.py:training",
        )
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise PipelineDefinitionError(f"{target}: no such file", "check the pipeline path")
        root, module_name = str(path.parent), path.stem
        if root not in sys.path:
            sys.path.insert(0, root)
    else:
        module_name = target
    try:
        module = importlib.import_module(module_name)
    except PipelineDefinitionError:
        raise
    except SyntaxError as exc:
        where = f"{exc.filename or target}:{exc.lineno}" if exc.lineno else str(target)
        raise PipelineDefinitionError(
            f"{where}: syntax error: {exc.msg}",
            "fix the file; mlstack imports it on the host before running anything",
        ) from None
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing != module_name.split(".")[0]:
            raise PipelineDefinitionError(
                f"{target}: cannot import {module_name!r}: module {missing!r} is not installed"
                " on this host, and mlstack imports the pipeline file on this host before"
                " running it (the host-import rule)",
                f"install {missing} here, or move image-only imports inside the step"
                " functions that use them",
            ) from None
        raise PipelineDefinitionError(
            f"{target}: cannot import {module_name!r}: {exc}",
            "install the pipeline's requirements or fix the import",
        ) from None
    except ImportError as exc:
        raise PipelineDefinitionError(
            f"{target}: cannot import {module_name!r}: {exc}",
            "install the pipeline's requirements or fix the import",
        ) from None
    found = getattr(module, attr, None)
    if found is None:
        pipelines = [n for n, v in vars(module).items() if isinstance(v, Pipeline)]
        raise PipelineDefinitionError(
            f"{target} has no {attr!r}",
            f"pipelines there: {', '.join(pipelines) or 'none'}",
        )
    if not isinstance(found, Pipeline):
        raise PipelineDefinitionError(
            f"{target}:{attr} is a {type(found).__name__}, not a @pipeline function"
        )
    return found


def parse_params(pairs: tuple[str, ...] | list[str]) -> dict[str, object]:
    """``["alpha=0.1", "name=x"]`` -> raw text per key, typed later against the signature.

    :func:`runner.params.coerce_params` (run by ``Pipeline.compile``) turns each value into
    the parameter's annotated type.
    """
    from runner.params import RawParam

    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise PipelineDefinitionError(f"--param {pair!r} is not KEY=VALUE")
        params[key] = RawParam(raw)
    return params
