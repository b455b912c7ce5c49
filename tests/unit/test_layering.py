"""The dependency rules of docs/architecture.md, checked on every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_runner_never_imports_provisioner_or_pulumi() -> None:
    for module, names in imports_of("runner").items():
        bad = {n for n in names if n.split(".")[0] in ("provisioner", "pulumi", "pulumi_aws")}
        stacks = {
            n
            for n in names
            if n.startswith("stacks")
            and n
            not in (
                "stacks.outputs",
                "stacks.common.fernet",
                "stacks.local.supervisor",
                "stacks.state_reader",
            )
        }
        assert not bad and not stacks, f"{module} imports {bad | stacks}"


def test_provisioner_never_imports_runner() -> None:
    for module, names in imports_of("provisioner").items():
        bad = {n for n in names if n.split(".")[0] == "runner"}
        if module == "provisioner/cli.py" or module.startswith("provisioner/cli_"):
            continue  # the one command module may import runner, lazily
        assert not bad, f"{module} imports {bad}"


def test_stacks_import_only_the_spec_from_provisioner() -> None:
    for module, names in imports_of("stacks").items():
        bad = {
            n
            for n in names
            if n.split(".")[0] == "runner"
            or (n.startswith("provisioner") and n not in ("stacks.spec",))
        }
        assert not bad, f"{module} imports {bad}"


def test_cli_start_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, provisioner.cli; heavy = [m for m in ('pydantic', 'rich', 'mlflow', "
        "'fastapi', 'sqlalchemy', 'tinydb', 'pulumi', 'boto3', 'yaml') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
