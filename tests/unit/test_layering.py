"""The dependency rules of docs/architecture.md, checked on every module's imports.

One direction, no exceptions per module:
- ``stacks`` imports nothing of ``provisioner`` or ``runner``;
- the shared layer (``stacks.common``, ``stacks.outputs``, ``stacks.spec``) imports no provider
  program (``stacks.local``, ``stacks.aws``, ``stacks.kubernetes``) and no Pulumi;
- ``runner`` imports from ``stacks`` only the shared layer, and never ``provisioner`` or Pulumi;
- ``provisioner`` imports ``runner`` only in the CLI's command modules and only inside
  functions (the CLI is the one place that joins both sides), never at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("stacks.common", "stacks.outputs", "stacks.spec")
PROVIDERS = ("stacks.local", "stacks.aws", "stacks.kubernetes")
PULUMI = ("pulumi", "pulumi_aws", "pulumi_kubernetes")


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def imports(source: str, filename: str = "<module>") -> tuple[set[str], set[str]]:
    """(every absolute import, the ones at module level) of one module's source."""
    tree = ast.parse(source, filename)
    found: set[str] = set()
    top: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {node.module}
        else:
            continue
        found |= names
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top.add(node.module)
        elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks are type-only
            continue
    return found, top


def violations(module: str, source: str) -> list[str]:
    """Every rule of this file that ``module`` (a dotted name) breaks."""
    found, top = imports(source, module)
    bad: list[str] = []
    if module.startswith("stacks"):
        bad += [n for n in found if _under(n, ("provisioner", "runner"))]
    if _under(module, SHARED):
        bad += [n for n in found if _under(n, PROVIDERS + PULUMI)]
    if module.startswith("runner"):
        bad += [n for n in found if _under(n, ("provisioner", *PULUMI))]
        bad += [n for n in found if _under(n, ("stacks",)) and not _under(n, SHARED)]
    if module.startswith("provisioner"):
        cli = module == "provisioner.cli" or module.startswith("provisioner.cli_")
        runner = {n for n in (top if cli else found) if _under(n, ("runner",))}
        bad += sorted(runner)
    return sorted(set(bad))


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("provisioner", "stacks", "runner"):
        for path in (ROOT / package).rglob("*.py"):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found.append((dotted.removesuffix(".__init__"), path))
    return found


def test_every_module_keeps_the_layering() -> None:
    broken = {m: v for m, p in modules() if (v := violations(m, p.read_text()))}
    assert not broken, f"forbidden imports: {broken}"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("stacks.local.tracker", "from provisioner.state import StackRecord\n"),
        ("stacks.outputs", "from stacks.local.base import LocalContext\n"),
        ("stacks.spec.aws", "import pulumi_aws\n"),
        ("runner.run", "from stacks.local.registry import binary\n"),
        ("runner.tracking", "def f():\n    from provisioner import api\n"),
        ("runner.context", "import pulumi\n"),
        ("provisioner.api", "def f():\n    import runner.secrets\n"),
        ("provisioner.cli_runs", "from runner.run import run\n"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, source: str) -> None:
    assert violations(module, source)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        (
            "runner.run",
            "from stacks.common.process import log_tail\nfrom stacks.outputs import X\n",
        ),
        ("provisioner.cli_runs", "def f():\n    from runner.run import run\n"),
        ("stacks.local.tracker", "from stacks.spec.local import LocalMlflowTracker\n"),
    ],
)
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert not violations(module, source)


def test_cli_start_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, provisioner.cli; heavy = [m for m in ('pydantic', 'rich', 'mlflow', "
        "'fastapi', 'sqlalchemy', 'tinydb', 'pulumi', 'boto3', 'yaml', 'docker') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
