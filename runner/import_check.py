"""Before any step runs in a pipeline's image: can the image import the pipeline's module?

One short container (no network, the source tree mounted read-only at its host path) runs
``import MODULE`` and the modules mlstack's runtime needs for the pipeline (pyarrow for
pandas outputs, mlflow for ``register_model``). A missing requirement then fails the run in
seconds, naming the module and the fix, instead of in the first step after a long build.
A passed check is remembered per image and set of top-level imports, so reruns skip it.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from runner.errors import PipelineDefinitionError, RunnerError
from runner.sdk import PipelineSource

# Run by the image's python: exit 3 with {"missing", "by"} when a module is not installed.
CHECK = """
import importlib, json, sys, traceback
root, names = sys.argv[1], sys.argv[2:]
sys.path.insert(0, root)
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        print(json.dumps({"missing": exc.name or "", "by": name}))
        sys.exit(3)
    except BaseException as exc:
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        print(json.dumps({"error": last, "by": name}))
        sys.exit(4)
"""


def check_imports(
    client: Any,
    image: str,
    source: PipelineSource,
    runtime_modules: Iterable[str] = (),
    labels: dict[str, str] | None = None,
) -> bool:
    """Import the pipeline's module (then ``runtime_modules``) in ``image``; True if it ran.

    Raises PipelineDefinitionError naming the missing module and the requirement to add;
    any other import failure is a warning (the module may need what this container lacks).
    """
    if not source.root:
        return False  # an installed package, not a source tree: nothing to mount
    modules = [source.module, *runtime_modules]
    marker = _marker(image, source, modules)
    if marker.exists():
        return False
    from docker.errors import APIError

    container = None
    try:
        container = client.containers.create(
            image,
            command=["python", "-c", CHECK, source.root, *modules],
            network_mode="none",
            init=True,
            volumes={source.root: {"bind": source.root, "mode": "ro"}},
            working_dir=source.root,
            labels={**(labels or {}), "mlstack.purpose": "import-check"},  # sweep finds it
        )
        container.start()
        code = int(container.wait(timeout=300).get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
    except APIError as exc:
        raise RunnerError(
            f"cannot start the import check of {image}: {exc.explanation or exc}",
            "check the Docker Engine with `docker info`",
        ) from None
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
    if code != 0:
        failure = _failure(code, out, source, image)
        if code == 3 and f"cannot import {source.module.split('.')[0]!r}" not in str(failure):
            raise failure
        # Anything but a missing module may be the module's own business (it reads a file
        # or the network at import, which this container has not): say so, do not stop.
        print(f"warning: {failure}", file=sys.stderr)
        return True
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(image + "\n")
    return True


def _failure(code: int, out: str, source: PipelineSource, image: str) -> RunnerError:
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    data: dict[str, str] = json.loads(lines[-1]) if lines else {}
    where = source.path or source.module
    by = data.get("by", source.module)
    what = f"pipeline module {source.module!r} ({where})" if by == source.module else by
    if code == 3 and data.get("missing"):
        missing = data["missing"].split(".")[0]
        return PipelineDefinitionError(
            f"the step image cannot import {missing!r}, which {what} imports",
            f"add {distribution_of(missing)} to the pipeline's requirements"
            " (@pipeline(requirements=[...]), or requirements.txt / pyproject.toml beside it)",
        )
    detail = data.get("error") or (out.strip().splitlines() or [f"exit code {code}"])[-1]
    return PipelineDefinitionError(
        f"importing {what} in the step image failed: {detail}",
        f"fix the pipeline's requirements; reproduce with `docker run --rm {image} python -c"
        f" 'import {by}'`",
    )


def distribution_of(module: str) -> str:
    """The distribution that provides top-level ``module`` on this host (sklearn ->
    scikit-learn), else the module's own name."""
    from importlib.metadata import packages_distributions

    found = packages_distributions().get(module)
    return found[0] if found else module


def _marker(image: str, source: PipelineSource, modules: list[str]) -> Path:
    """A file per image and set of top-level imports of the pipeline's user modules."""
    from runner.base_image import cache_dir

    digest = hashlib.sha256()
    for name in [image, *modules, *sorted(_top_level_imports(Path(source.root or ".")))]:
        digest.update(name.encode() + b"\0")
    return cache_dir("import-checks") / digest.hexdigest()[:32]


def _top_level_imports(root: Path) -> set[str]:
    """Module-level imports of every module loaded from ``root`` (what importing runs)."""
    found: set[str] = set()
    prefix = str(root.resolve()) + "/"
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if not path or not str(Path(path).resolve()).startswith(prefix):
            continue
        try:
            tree = ast.parse(Path(path).read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        found.add(f"file:{path}")
        for node in _module_level(tree.body):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                found.add(f"{'.' * node.level}{node.module or ''}")
    return found


def _module_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements run at import: the module body, and inside its if / try / with blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            inner = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                inner += handler.body
            yield from _module_level(inner)
