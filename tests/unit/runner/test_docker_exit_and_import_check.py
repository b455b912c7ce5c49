"""Pure pieces of issue 9 problems 6 and 7: a container's exit status read as a signal, and
the import check's messages and cache key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from runner.docker_launcher import exit_code
from runner.errors import PipelineDefinitionError
from runner.import_check import _failure, _top_level_imports, distribution_of
from runner.sdk import PipelineSource


def test_init_exit_status_reads_as_the_signal() -> None:
    assert exit_code(137) == -9 and exit_code(143) == -15
    assert exit_code(0) == 0 and exit_code(1) == 1 and exit_code(255) == 255


def test_missing_module_names_it_and_the_distribution_to_add() -> None:
    source = PipelineSource(module="flow", path="/src/flow.py", root="/src")
    out = json.dumps({"missing": "sklearn.linear_model", "by": "flow"})
    err = _failure(3, out + "\n", source, "reg/img:tag")
    assert isinstance(err, PipelineDefinitionError) and err.exit_code == 2
    assert "cannot import 'sklearn', which pipeline module 'flow' (/src/flow.py)" in str(err)
    assert "add scikit-learn to the pipeline's requirements" in str(err)
    other = _failure(4, json.dumps({"error": "OSError: no data", "by": "flow"}), source, "i")
    assert "importing pipeline module 'flow' (/src/flow.py) in the step image failed" in str(other)


def test_distribution_of_falls_back_to_the_module_name() -> None:
    assert distribution_of("yaml") == "PyYAML"
    assert distribution_of("not_a_module_anywhere") == "not_a_module_anywhere"


def test_top_level_imports_cover_the_modules_loaded_from_the_root(tmp_path: Path) -> None:
    (tmp_path / "tli_flow.py").write_text(
        "import os\ntry:\n    import json\nexcept ImportError:\n    pass\n"
        "def f():\n    import csv\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import tli_flow  # noqa: F401

        found = _top_level_imports(tmp_path)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tli_flow", None)
    assert {"os", "json"} <= found and "csv" not in found
