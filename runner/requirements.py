"""The requirements a pipeline's image installs, and their wheels, resolved on the host.

Requirements come from ``@pipeline(requirements=...)``, else ``requirements.txt``, else
``pyproject.toml`` beside the pipeline. Wheels are resolved once per distinct set with
``pip wheel`` on the host (where a TLS-inspecting proxy's CA bundle is trusted: it never enters
the image) into a shared cache folder, so a rebuild has the same context and hits the layer cache.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runner.base_image import BaseImageError, ImageError, Progress, cache_dir


@dataclass(frozen=True)
class Requirements:
    """What the image installs for the pipeline, and where that list came from.

    ``specs`` are requirement specifiers (sorted, part of the tag); ``options`` are pip options
    from a requirements file (index URLs, constraints) used only when resolving wheels.
    """

    specs: tuple[str, ...]
    options: tuple[str, ...] = ()
    origin: str = "none"


def discover_requirements(declared: list[str] | None, root: str | None) -> Requirements:
    """``@pipeline(requirements=...)``, else requirements.txt, else pyproject.toml, else none."""
    if declared is not None:
        return Requirements(_normalise(declared), (), "declared on the pipeline")
    folder = Path(root) if root else None
    if folder is not None and (folder / "requirements.txt").is_file():
        specs, options = _read_requirements_file(folder / "requirements.txt", set())
        return Requirements(_normalise(specs), tuple(options), str(folder / "requirements.txt"))
    if folder is not None and (folder / "pyproject.toml").is_file():
        import tomllib

        path = folder / "pyproject.toml"
        try:
            deps = tomllib.loads(path.read_text()).get("project", {}).get("dependencies", [])
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ImageError(f"cannot read {path}: {err}", "fix its TOML syntax") from None
        return Requirements(_normalise(deps), (), f"{path} [project].dependencies")
    return Requirements(())


def _normalise(specs: Iterable[str]) -> tuple[str, ...]:
    found = {" ".join(str(s).split("#", 1)[0].split()) for s in specs}
    for spec in found:
        if spec.startswith(("-e ", "--editable")):
            raise ImageError(
                f"requirement {spec!r} is editable and cannot be installed in an image",
                "list the package by name and version instead",
            )
    return tuple(sorted((s for s in found if s), key=str.lower))


def _read_requirements_file(path: Path, seen: set[Path]) -> tuple[list[str], list[str]]:
    """Specifiers and pip options of a requirements file, following ``-r`` includes."""
    if path.resolve() in seen:
        return [], []
    seen.add(path.resolve())
    try:
        text = path.read_text().replace("\\\n", " ")
    except OSError as err:
        raise ImageError(f"cannot read {path}: {err.strerror}") from None
    specs: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        flag, _, value = (
            line.replace("=", " ", 1).partition(" ") if line[0] == "-" else ("", "", "")
        )
        if flag in ("-r", "--requirement"):
            more, opts = _read_requirements_file(path.parent / value.strip(), seen)
            specs, options = specs + more, options + opts
        elif flag in ("-c", "--constraint"):
            options.append(f"{flag} {(path.parent / value.strip()).resolve()}")
        elif flag in ("-e", "--editable"):
            specs.append(line)  # refused by _normalise with a clear message
        elif flag:
            options.append(line)
        else:
            specs.append(line)
    return specs, options


# --- resolving wheels on the host -----------------------------------------------------------


def resolve_wheels(
    lines: list[str], options: list[str], ca_bundle: str | None, progress: Progress
) -> Path:
    """``pip wheel`` the requirements once per distinct set; later builds reuse the folder."""
    key = json.dumps({"lines": lines, "options": options, "python": _host_python()})
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    folder = cache_dir("wheels") / digest
    if (folder / "requirements.txt").exists():
        progress.update("image", "building", f"wheels cached ({len(lines)} requirements)")
        return folder
    tmp = Path(tempfile.mkdtemp(prefix=f"{digest}.tmp-", dir=folder.parent))
    (tmp / "requirements.in").write_text("\n".join([*options, *lines]) + "\n")
    pip = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input"]
    cmd = [*pip, "-w", str(tmp), "-r", str(tmp / "requirements.in")]
    if ca_bundle:  # the host's trust only: the bundle never enters the build context
        if not Path(ca_bundle).is_file():
            raise ImageError(f"CA bundle {ca_bundle} does not exist", "check MLSTACK_CA_BUNDLE")
        cmd += ["--cert", ca_bundle]
    progress.update("image", "building", f"resolving {len(lines)} requirements with pip wheel")
    log = cache_dir("wheels") / f"{digest}.log"
    with open(log, "w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        text = log.read_text(errors="replace").splitlines()
        errors = [ln.strip() for ln in text if ln.startswith("ERROR")] or text[-1:] or ["?"]
        raise ImageError(
            f"cannot resolve the image's requirements on this host: {errors[-1][:240]}",
            f"check the pipeline's requirements; pip's output: {log}",
        )
    (tmp / "requirements.in").rename(tmp / "requirements.txt")  # marks the folder complete
    try:
        tmp.rename(folder)
    except OSError:  # another process finished the same folder first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _host_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def _check_compatible(base_ref: str, python: str, machine: str) -> None:
    if sys.platform != "linux" or machine != platform.machine() or python != _host_python():
        raise BaseImageError(
            f"base image {base_ref!r} runs Python {python} on {machine}, but wheels are"
            f" resolved on this host for Python {_host_python()} on {platform.machine()}",
            f"use a base image with Python {_host_python()} (python:{_host_python()}-slim or"
            " `mlstack base-image build`)",
        )


# --- what mlstack's own runtime needs for this pipeline ---------------------------------------


@dataclass(frozen=True)
class RuntimeNeed:
    """A package mlstack's runtime imports for a pipeline: the distribution, the module the
    image must import, and why (the materializer or tracker call that needs it)."""

    dist: str
    module: str
    why: str


def requirement_name(spec: str) -> str:
    """The normalised distribution name of a requirement specifier (``Pandas>=2`` -> pandas)."""
    import re

    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return re.sub(r"[-_.]+", "-", found.group(1)).lower() if found else ""


def runtime_needs(specs: Iterable[str], steps: Iterable[object]) -> list[RuntimeNeed]:
    """What the image needs beyond the pipeline's requirements so mlstack's runtime works.

    pandas outputs are stored as parquet (pyarrow); ``register_model`` logs a scikit-learn
    model with MLflow's client (mlflow-skinny), which serializes it with skops. Packages the
    requirements name already are not added again.
    """
    names = {requirement_name(s) for s in specs}
    funcs = [getattr(s, "func", s) for s in steps]
    needs: list[RuntimeNeed] = []
    if "pandas" in names or _uses_module(funcs, "pandas"):
        needs.append(RuntimeNeed("pyarrow", "pyarrow", "pandas outputs are stored as parquet"))
    if _calls(funcs, "register_model"):
        why = "register_model logs the model with MLflow"
        needs.append(RuntimeNeed("mlflow-skinny", "mlflow.sklearn", why))
        needs.append(
            RuntimeNeed("skops", "skops.io", "MLflow saves scikit-learn models with skops")
        )
    return [
        n
        for n in needs
        if n.dist not in names and not (n.dist == "mlflow-skinny" and "mlflow" in names)
    ]


def _uses_module(funcs: list[object], top: str) -> bool:
    """Whether a step's module holds ``top`` (the module or anything from it) as a global."""
    import types

    for func in funcs:
        for value in list(getattr(func, "__globals__", {}).values()):
            owner = (
                value.__name__
                if isinstance(value, types.ModuleType)
                else getattr(value, "__module__", None)
            )
            if isinstance(owner, str) and (owner == top or owner.startswith(top + ".")):
                return True
    return False


def _calls(funcs: list[object], name: str) -> bool:
    """Whether a step (or a function of a user module it reaches) uses runner's ``name``."""
    import types

    from runner.fingerprint import Fingerprinter, _names_used

    user = Fingerprinter().is_user_module
    todo, seen = list(funcs), set()
    while todo:
        func = todo.pop()
        code = getattr(func, "__code__", None)
        if id(func) in seen or not isinstance(code, types.CodeType):
            continue
        seen.add(id(func))
        scope = getattr(func, "__globals__", {})
        names = _names_used(code)
        if name in names and any(  # runner.register_model(...), runner imported as a module
            isinstance(v, types.ModuleType) and v.__name__.split(".")[0] == "runner"
            for v in scope.values()
        ):
            return True
        for used in names:
            value = scope.get(used)
            if value is None:
                continue
            if getattr(value, "__name__", None) == name and str(
                getattr(value, "__module__", "")
            ).startswith("runner"):
                return True
            if isinstance(value, types.FunctionType) and user(value.__module__):
                todo.append(value)
            elif isinstance(value, types.ModuleType) and user(value.__name__):
                todo.extend(v for v in vars(value).values() if isinstance(v, types.FunctionType))
    return False
